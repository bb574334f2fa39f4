"""Users: the registry's entries, the signup webhook, and waiting for the workflows."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import requests
from botocore.exceptions import ClientError
from fleet import models, registry, signing
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from sandboxctl.controlplane.aws import Poller
from sandboxctl.controlplane.base import (
    ROLLOUT_FINAL,
    ROLLOUT_STATUSES,
    USER_STATUSES,
    WEBHOOK_PATH,
    WEBHOOK_TIMEOUT_S,
    Base,
)
from sandboxctl.controlplane.errors import (
    SandboxctlError,
    UsageError,
    UserNotFoundError,
    WaitFailedError,
    WaitTimeoutError,
)
from sandboxctl.controlplane.inputs import (
    checked_notice,
    signup_notice,
    validate_uid,
    webhook_body,
)


class Users(Base):
    """Reads of the registry, signups and deletions through the webhook, and their waits."""

    # registry ----------------------------------------------------------------------------
    def _read(self, pk: str) -> dict[str, Any] | None:
        return registry.read_item(self.client("dynamodb"), self.output("RegistryTableName"), pk)

    def get_user(self, uid: str) -> dict[str, Any] | None:
        return self._read(registry.USER_PREFIX + uid)

    def require_user(self, uid: str) -> dict[str, Any]:
        user = self.get_user(uid)
        if user is None:
            raise UserNotFoundError(f"no user {uid!r} in the registry (sign them up first)")
        return user

    def _query_status(self, status: str, prefix: str) -> list[dict[str, Any]]:
        """Items in one status whose key starts with `prefix`, through the ByStatus index."""
        return list(
            registry.query_status(
                self.client("dynamodb"), self.output("RegistryTableName"), status, prefix
            )
        )

    def list_users(self, status: str | None = None) -> list[dict[str, Any]]:
        """Every user entry, or those in one status (ByStatus index, never a table scan)."""
        if status is not None and status not in USER_STATUSES:
            raise UsageError(f"status must be one of {', '.join(USER_STATUSES)}")
        users = [
            u
            for s in ([status] if status else USER_STATUSES)
            for u in self._query_status(s, registry.USER_PREFIX)
        ]
        return sorted(users, key=lambda u: (str(u.get("created_at", "")), str(u.get("uid", ""))))

    def list_rollouts(self) -> list[dict[str, Any]]:
        """Every rollout, newest first."""
        rollouts = [
            r for s in ROLLOUT_STATUSES for r in self._query_status(s, registry.ROLLOUT_PREFIX)
        ]
        for r in rollouts:
            r.setdefault("rollout_id", str(r["pk"]).removeprefix(registry.ROLLOUT_PREFIX))
        return sorted(rollouts, key=lambda r: str(r.get("started_at", "")), reverse=True)

    def get_rollout(self, image_digest: str) -> dict[str, Any] | None:
        """The rollout of one digest: its id is the digest's hex (one rollout per digest)."""
        key = registry.rollout_key(image_digest)
        rollout = self._read(key)
        if rollout is not None:
            rollout.setdefault("rollout_id", key.removeprefix(registry.ROLLOUT_PREFIX))
        return rollout

    def desired_image(self) -> dict[str, Any] | None:
        return self._read(registry.DESIRED_IMAGE_KEY)

    # waiting -----------------------------------------------------------------------------
    def wait_for_user(
        self,
        uid: str,
        final: set[str],
        timeout_s: float,
        on_tick: Callable[[str, float], None] | None = None,
        gone_is_final: bool = False,
        baseline: dict[str, Any] | None = None,
    ) -> dict[str, Any] | None:
        """Poll the registry until the user's status is in `final` (or the item is gone).

        `baseline` is the entry read before the request was sent: until a workflow touches the
        entry again, its old status is not an answer. The workflow that owns the entry is in
        `claimed_by`; once it has ended with the status still not final, waiting longer cannot
        help, so this fails at once with its reason.
        """
        base = baseline or {}
        base_owner = str(base.get("claimed_by") or "")
        in_progress = base.get("status") in {"PROVISIONING", "DELETING"}
        status = "?"
        checked_at = -1.0
        for elapsed in Poller(timeout_s):
            user = self.get_user(uid)
            if user is None and gone_is_final:
                return None
            status = str(user.get("status")) if user else "NOT REGISTERED"
            if on_tick:
                on_tick(status, elapsed)
            if user is None:
                continue
            owner = str(user.get("claimed_by") or "")
            touched = (
                baseline is None
                or owner != base_owner
                or user.get("updated_at") != base.get("updated_at")
            )
            if touched and status in final:
                return user
            watch = owner != base_owner or in_progress
            if watch and owner.startswith("arn:") and elapsed - checked_at >= 1.0:
                checked_at = elapsed
                ended = self._ended_without(owner, uid, user)
                if ended:
                    raise WaitFailedError(ended)
        raise WaitTimeoutError(
            f"user {uid!r} still {status} after {timeout_s:.0f}s (waiting for {'/'.join(final)})"
        )

    def _ended_without(self, execution_arn: str, uid: str, user: dict[str, Any]) -> str:
        """Why the owning execution ended while the entry is unchanged ('' if still running)."""
        try:
            desc = self.client("stepfunctions").describe_execution(executionArn=execution_arn)
        except ClientError:
            return ""
        if desc.get("status") == "RUNNING":
            return ""
        # The registry write and the execution's end are not atomic: read the entry once more.
        again = self.get_user(uid)
        if again is None or again.get("updated_at") != user.get("updated_at"):
            return ""
        reason = user.get("last_error") or " ".join(
            f"{desc.get('error') or ''} {desc.get('cause') or ''}".split()
        )
        reason = reason or "no reason recorded (see `sandboxctl executions`)"
        name = execution_arn.rsplit(":", 1)[-1]
        text = f"user {uid!r} is still {user.get('status')}: {name} {desc.get('status')}: {reason}"
        return text[:500]

    def wait_for_rollout(
        self,
        image_digest: str,
        timeout_s: float,
        on_tick: Callable[[str, float], None] | None = None,
    ) -> dict[str, Any]:
        """Poll until the rollout of `image_digest` reaches a final status."""
        status = "NOT STARTED"
        for elapsed in Poller(timeout_s, cap=0.5):
            rollout = self.get_rollout(image_digest)
            if rollout is not None:
                status = str(rollout.get("status"))
                if status in ROLLOUT_FINAL:
                    return rollout
            if on_tick:
                on_tick(status, elapsed)
        raise WaitTimeoutError(f"rollout of {image_digest} still {status} after {timeout_s:.0f}s")

    # signup webhook ------------------------------------------------------------------------
    def webhook_secret(self) -> str:
        """The current HMAC key, shared with the Firebase function (never printed)."""
        resp = self.client("secretsmanager").get_secret_value(
            SecretId=self.output("WebhookSecretArn")
        )
        try:
            current = json.loads(resp["SecretString"])["current"]
        except (KeyError, TypeError, ValueError) as exc:
            raise SandboxctlError(
                "the webhook secret is not JSON with a 'current' key (see template.yaml)"
            ) from exc
        if not current:
            raise SandboxctlError("the webhook secret's 'current' key is empty")
        return str(current)

    def call_webhook(self, notice: dict[str, Any]) -> dict[str, Any]:
        """POST the notice to the HTTP API's `/hooks/firebase`, as the Firebase function does.

        The body is serialised and signed exactly as firebase/main.py signs it (`fleet.signing`),
        so the request takes the public path a real signup takes. A 429 or 5xx is retried with
        backoff (the webhook is idempotent on the notice's event_id).
        """
        body = webhook_body(notice)
        headers = {"content-type": "application/json", **signing.sign(self.webhook_secret(), body)}
        url = self.api_url() + WEBHOOK_PATH
        try:
            reply = self._http_session().post(
                url, data=body, headers=headers, timeout=WEBHOOK_TIMEOUT_S
            )
        except requests.RequestException as exc:
            raise SandboxctlError(f"could not reach the webhook at {url}: {exc}") from exc
        if not 200 <= reply.status_code < 300:
            raise SandboxctlError(
                f"the webhook refused the request: HTTP {reply.status_code} {reply.text}"
            )
        try:
            parsed = reply.json() if reply.text else None
        except ValueError:
            parsed = reply.text
        return {"status_code": reply.status_code, "response": parsed, "sent": notice}

    def _http_session(self) -> Any:
        if self._http is None:
            retry = Retry(
                total=4,
                backoff_factor=0.5,
                status_forcelist=(429, 500, 502, 503, 504),
                allowed_methods=frozenset({"POST"}),
                respect_retry_after_header=True,
                raise_on_status=False,
            )
            session = requests.Session()
            session.mount("https://", HTTPAdapter(max_retries=retry))
            session.mount("http://", HTTPAdapter(max_retries=retry))
            self._http = session
        return self._http

    def signup(self, uid: str, email: str | None = None) -> dict[str, Any]:
        """Report a new Firebase user, as the `before_user_created` function does."""
        validate_uid(uid)
        notice = signup_notice(uid, email, str(uuid.uuid4()), datetime.now(UTC))
        return self.call_webhook(checked_notice(models.UserCreatedNotice, notice))

    def delete_user(self, uid: str) -> dict[str, Any]:
        """Report a Firebase user deletion to the same webhook.

        Only for a user the registry knows: an operator's typo would otherwise leave a
        tombstone (DELETED) that silently blocks that UID's later signups. Firebase's own
        deletion notices go through the webhook, which keeps tombstoning unknown users.
        """
        validate_uid(uid)
        self.require_user(uid)
        notice = {
            "type": "user.deleted",
            "uid": uid,
            "event_id": str(uuid.uuid4()),
            "deleted_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        }
        return self.call_webhook(checked_notice(models.UserDeletedNotice, notice))
