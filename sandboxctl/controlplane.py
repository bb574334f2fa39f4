"""What sandboxctl does, as plain methods over boto3 clients: the CLI and the demo share it.

Every resource is found from the control-plane stack's outputs (the contract in
docs/architecture.md), so the same code runs against real AWS and against the local cloud.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import requests
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError
from fleet import models, naming, registry, signing
from pydantic import BaseModel, ValidationError
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

DEFAULT_STACK = "sandbox-fleet-dev"
DEFAULT_REGION = "us-east-1"

# The outputs docs/architecture.md promises; `status` reports any that are missing.
REQUIRED_OUTPUTS = (
    "EventBusName",
    "RegistryTableName",
    "DataBucketName",
    "TemplatesBucketName",
    "UserTemplateKey",
    "SandboxRepositoryName",
    "SandboxRepositoryUri",
    "ProvisionUserStateMachineArn",
    "DeprovisionUserStateMachineArn",
    "RolloutImageStateMachineArn",
    "ReconcileStateMachineArn",
    "SignupWebhookFunctionName",
    "RunCodeFunctionName",
    "HttpApiUrl",
    "WebhookSecretArn",
    "Stage",
)
STATE_MACHINE_OUTPUTS = {
    "ProvisionUser": "ProvisionUserStateMachineArn",
    "DeprovisionUser": "DeprovisionUserStateMachineArn",
    "RolloutImage": "RolloutImageStateMachineArn",
    "Reconcile": "ReconcileStateMachineArn",
}
USER_STATUSES = registry.USER_STATUSES
ROLLOUT_STATUSES = registry.ROLLOUT_STATUSES
ROLLOUT_FINAL = {"COMPLETED", "HALTED", "SUPERSEDED"}
# ECR's own tag rule.
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAX_DATASET_NAME = 512
WEBHOOK_PATH = "/hooks/firebase"
# API Gateway gives an integration 30 s; a little more so the gateway's own 503 arrives first.
WEBHOOK_TIMEOUT_S = 35.0
# The sandbox can run for up to Lambda's 15 minutes; a shorter read timeout would retry the run.
INVOKE_READ_TIMEOUT_S = 910


class SandboxctlError(Exception):
    """A failure worth one clear line on stderr and exit status 1."""


class UsageError(SandboxctlError):
    """The operator asked for something malformed; nothing was sent (exit status 2)."""


class OutputMissingError(SandboxctlError):
    """The control-plane stack lacks an output: that part is not deployed (yet)."""

    def __init__(self, key: str, stack: str) -> None:
        super().__init__(f"stack {stack} has no output {key}: that part is not deployed")
        self.key = key


class UserNotFoundError(SandboxctlError):
    """No registry entry for the UID."""


class WaitTimeoutError(SandboxctlError):
    """A --wait ran past its deadline."""


class WaitFailedError(SandboxctlError):
    """The workflow a --wait follows ended without reaching the awaited status."""


@dataclass(frozen=True)
class Target:
    """Where the control plane lives. ``endpoint`` None means real AWS."""

    stack: str = DEFAULT_STACK
    region: str = DEFAULT_REGION
    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)  # never in logs or errors

    @property
    def on_aws(self) -> bool:
        return self.endpoint is None


def local_connection(endpoint: str) -> dict[str, Any] | None:
    """Connection details `sandboxctl local up` left for the local cloud at `endpoint`, if any."""
    from sandboxctl.localcloud.server import LocalCloudError, load_connection

    try:
        return load_connection(endpoint)
    except LocalCloudError:
        return None
    except (OSError, ValueError) as exc:
        raise SandboxctlError(f"cannot read the local cloud's connection file: {exc}") from exc


def resolve_target(
    endpoint: str | None,
    stack: str | None,
    region: str | None,
    connection: Callable[[str], dict[str, Any] | None] = local_connection,
) -> Target:
    """Combine flags, environment and a local cloud's connection file into a Target.

    A local cloud's operator keys come from the file `sandboxctl local up` writes for its port;
    without one, the default credential chain applies (real AWS, or keys set by the caller).
    """
    endpoint = endpoint or os.environ.get("SANDBOXCTL_ENDPOINT") or None
    stack = stack or os.environ.get("SANDBOXCTL_STACK") or None
    keys: tuple[str | None, str | None] = (None, None)
    if endpoint:
        if not re.match(r"^https?://[^\s/]+$", endpoint.rstrip("/")):
            raise UsageError(
                f"--endpoint must be an http(s) URL such as http://127.0.0.1:PORT, got {endpoint!r}"
            )
        endpoint = endpoint.rstrip("/")
        info = connection(endpoint)
        if info:
            keys = (info.get("aws_access_key_id"), info.get("aws_secret_access_key"))
            stack = stack or info.get("stack_name")
            region = region or info.get("region")
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    return Target(
        stack=stack or DEFAULT_STACK,
        region=region or DEFAULT_REGION,
        endpoint=endpoint,
        access_key_id=keys[0],
        secret_access_key=keys[1],
    )


plain = registry.plain


def validate_uid(uid: str) -> str:
    """Firebase's rule (1 to 128 characters), the one the webhook and workflows apply."""
    try:
        return naming.validate_uid(uid)
    except naming.InvalidUid as exc:
        raise UsageError(f"not a Firebase UID: {exc}") from None


def validate_dataset_name(name: str) -> str:
    """A key relative to the user's prefix: no absolute path, no `..`, no empty segment."""
    if not name or len(name) > MAX_DATASET_NAME:
        raise UsageError(f"a dataset name is 1 to {MAX_DATASET_NAME} characters")
    if name.startswith("/") or "\\" in name or any(ord(c) < 32 for c in name):
        raise UsageError(f"dataset name {name!r} must be a relative key without backslashes")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise UsageError(f"dataset name {name!r} must not contain empty, '.' or '..' segments")
    return name


def validate_image_tag(tag: str) -> str:
    if not IMAGE_TAG.match(tag):
        raise UsageError(
            f"image tag {tag!r} is invalid: 1-128 of letters, digits, '_', '.', '-' "
            "(not starting with '.' or '-')"
        )
    return tag


def describe_client_error(exc: ClientError | BotoCoreError) -> str:
    """`Code: message` for a botocore error, on one line."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or "Error"
        message = (err.get("Message") or str(exc)).replace("\n", " ")
        return f"{code}: {message}"
    return str(exc).replace("\n", " ")


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_access_denied(exc: ClientError) -> bool:
    """An IAM denial: `AccessDenied` (XML services: S3, IAM, STS) or `AccessDeniedException`."""
    return error_code(exc) in {"AccessDenied", "AccessDeniedException"}


@dataclass
class Poller:
    """Poll with a deadline, backing off from `start` to `cap` seconds between checks."""

    timeout_s: float
    start: float = 0.1
    cap: float = 1.0
    _clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __iter__(self) -> Iterator[float]:
        begin = self._clock()
        delay = self.start
        while True:
            elapsed = self._clock() - begin
            yield elapsed
            if elapsed >= self.timeout_s:
                return
            self._sleep(min(delay, max(0.0, self.timeout_s - elapsed)))
            delay = min(self.cap, delay * 1.5)


def docker_manifest(tag: str) -> str:
    """A fresh image manifest (new config and layer digests) so each push is a new image."""
    config = secrets.token_hex(32)
    layer = secrets.token_hex(32)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1469,
            "digest": f"sha256:{config}",
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 3_370_628,
                "digest": f"sha256:{layer}",
            }
        ],
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    return json.dumps(manifest, separators=(",", ":"))


def signup_notice(
    uid: str, email: str | None, event_id: str, created_at: datetime
) -> dict[str, Any]:
    """The notice firebase/main.py sends, field for field and in the same order."""
    return {
        "type": "user.created",
        "uid": uid,
        "email": email,
        "event_id": event_id,
        "created_at": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


def webhook_body(notice: dict[str, Any]) -> bytes:
    """Serialised as firebase/main.py does (compact, ASCII-escaped): the same bytes get signed."""
    return json.dumps(notice, separators=(",", ":")).encode("utf-8")


def checked_notice(model: type[BaseModel], notice: dict[str, Any]) -> dict[str, Any]:
    """Validate with the webhook's own model, so a bad value fails here and nothing is sent."""
    try:
        model.model_validate(notice)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field_name = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"invalid {field_name}: {first['msg']}") from exc
    return notice


def console_url(region: str, arn: str, kind: str = "execution") -> str:
    """The Step Functions console page for an execution or state machine ARN."""
    base = f"https://{region}.console.aws.amazon.com/states/home?region={region}#"
    if kind == "execution":
        return f"{base}/v2/executions/details/{arn}"
    return f"{base}/statemachines/view/{arn}"


class ControlPlane:
    """The operator's handle on one deployed control plane."""

    def __init__(
        self,
        target: Target,
        client_factory: Callable[[str], Any] | None = None,
        outputs: dict[str, str] | None = None,
        http: Any | None = None,
    ) -> None:
        self.target = target
        self._factory = client_factory or self._boto_client
        # What posts to the HTTP API (a requests.Session); by default one that retries.
        self._http = http
        self._clients: dict[str, Any] = {}
        self._outputs = dict(outputs) if outputs is not None else None
        self._session: boto3.Session | None = None

    @classmethod
    def from_local_cloud(cls, cloud: Any) -> ControlPlane:
        """A ControlPlane over an embedded LocalCloud, using its admin clients."""
        target = Target(
            stack=cloud.stack_name,
            region=getattr(cloud, "region", DEFAULT_REGION),
            endpoint=cloud.endpoint,
        )
        return cls(target, client_factory=cloud.client, outputs=dict(cloud.outputs))

    # clients and outputs -----------------------------------------------------------------
    def _boto_client(self, service: str) -> Any:
        if self._session is None:
            kwargs: dict[str, Any] = {"region_name": self.target.region}
            if self.target.access_key_id and self.target.secret_access_key:
                kwargs["aws_access_key_id"] = self.target.access_key_id
                kwargs["aws_secret_access_key"] = self.target.secret_access_key
            self._session = boto3.Session(**kwargs)
        read_timeout = INVOKE_READ_TIMEOUT_S if service == "lambda" else 60
        config = Config(
            retries={"mode": "standard", "max_attempts": 8},
            read_timeout=read_timeout,
            connect_timeout=10,
        )
        return self._session.client(service, endpoint_url=self.target.endpoint, config=config)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._factory(service)
        return self._clients[service]

    def describe_stack(self) -> dict[str, Any]:
        try:
            stacks = self.client("cloudformation").describe_stacks(StackName=self.target.stack)
        except ClientError as exc:
            if "does not exist" in describe_client_error(exc):
                raise SandboxctlError(
                    f"stack {self.target.stack} not found in {self.target.region}"
                    + (f" at {self.target.endpoint}" if self.target.endpoint else "")
                    + " (use --stack / --endpoint)"
                ) from exc
            raise
        return dict(stacks["Stacks"][0])

    @property
    def outputs(self) -> dict[str, str]:
        if self._outputs is None:
            stack = self.describe_stack()
            self._outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        return self._outputs

    def has(self, key: str) -> bool:
        return bool(self.outputs.get(key))

    def api_url(self) -> str:
        """The HTTP API's base URL: the stack output on AWS, the local cloud's own route locally."""
        deployed = self.output("HttpApiUrl").rstrip("/")
        if self.target.on_aws:
            return deployed
        from sandboxctl.localcloud.httpapi import api_url

        api_id = deployed.split("//", 1)[-1].split(".", 1)[0]
        return api_url(str(self.target.endpoint), api_id)

    def output(self, key: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise OutputMissingError(key, self.target.stack)
        return value

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

    # operations --------------------------------------------------------------------------
    def upload(
        self,
        uid: str,
        path: Path,
        name: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Put a data file under the user's prefix; the digest comes from the registry.

        A name `run` would refuse (its type) is refused here, before a byte is sent;
        `progress` is called with each chunk's byte count.
        """
        validate_uid(uid)
        name = validate_dataset_name(name or path.name)
        if not name.lower().endswith(models.DATASET_SUFFIXES):
            raise UsageError(
                f"{name!r} is not a type the sandbox reads; use one of "
                + ", ".join(models.DATASET_SUFFIXES)
            )
        if not path.is_file():
            raise UsageError(f"{path} is not a readable file")
        user = self.require_user(uid)
        if user.get("status") in {"DELETING", "DELETED"}:
            raise SandboxctlError(f"user {uid!r} is {user['status']}; not uploading")
        digest = user.get("user_digest")
        if not digest:
            raise SandboxctlError(f"registry entry for {uid!r} has no user_digest")
        bucket = self.output("DataBucketName")
        key = naming.user_prefix(str(digest)) + name
        s3 = self.client("s3")
        # Managed transfer: multipart for large files, streamed from disk.
        s3.upload_file(str(path), bucket, key, Callback=progress)
        head = s3.head_object(Bucket=bucket, Key=key)
        return {
            "uid": uid,
            "bucket": bucket,
            "key": key,
            "dataset": name,
            "bytes": int(head["ContentLength"]),
            "etag": str(head.get("ETag", "")).strip('"'),
        }

    def run(
        self,
        uid: str,
        dataset: str,
        code: str,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Invoke the user's own sandbox function and return its envelope.

        The dataset name is passed as given: the runtime is what confines it to the prefix.
        """
        validate_uid(uid)
        if not dataset:
            raise UsageError("--dataset must not be empty")
        if not code.strip():
            raise UsageError("the code to run is empty")
        user = self.require_user(uid)
        if user.get("status") != "READY":
            raise SandboxctlError(f"user {uid!r} is {user.get('status')}, not READY")
        function = user.get("function_name") or user.get("function_arn")
        if not function:
            raise SandboxctlError(f"registry entry for {uid!r} names no function")
        event: dict[str, Any] = {
            "code": code,
            "dataset": dataset,
            "request_id": str(uuid.uuid4()),
        }
        if timeout_s is not None:
            event["timeout_s"] = timeout_s
        resp = self.client("lambda").invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
        raw = resp["Payload"].read()
        try:
            payload = json.loads(raw or b"null")
        except ValueError as exc:
            raise SandboxctlError(f"{function} returned non-JSON: {raw[:200]!r}") from exc
        if resp.get("FunctionError"):
            message = payload.get("errorMessage") if isinstance(payload, dict) else payload
            raise SandboxctlError(f"{function} failed ({resp['FunctionError']}): {message}")
        if not isinstance(payload, dict) or "status" not in payload:
            raise SandboxctlError(f"{function} returned no envelope: {str(payload)[:200]}")
        return payload

    def start_reconcile(self, dry_run: bool = False) -> str:
        """Start the Reconcile workflow now (as its schedule does); returns the execution ARN."""
        request = {"dry_run": True} if dry_run else {}
        started = self.client("stepfunctions").start_execution(
            stateMachineArn=self.output("ReconcileStateMachineArn"),
            name=f"sandboxctl-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
            input=json.dumps(request),
        )
        return str(started["executionArn"])

    def wait_for_execution(
        self,
        execution_arn: str,
        timeout_s: float,
        on_tick: Callable[[str, float], None] | None = None,
    ) -> dict[str, Any]:
        """The execution once it is no longer RUNNING: status, output (parsed) and cause."""
        sfn = self.client("stepfunctions")
        for elapsed in Poller(timeout_s, cap=2.0):
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                try:
                    output = json.loads(described.get("output") or "null")
                except ValueError:
                    output = described.get("output")
                return {
                    "execution_arn": execution_arn,
                    "status": described["status"],
                    "report": output,
                    "error": described.get("error"),
                    "cause": described.get("cause"),
                }
            if on_tick:
                on_tick("RUNNING", elapsed)
        raise WaitTimeoutError(f"{execution_arn} still RUNNING after {timeout_s:.0f}s")

    def logs(self, uid: str, limit: int = 50) -> list[dict[str, Any]]:
        """The user function's most recent log events (oldest first), from CloudWatch Logs."""
        if limit < 1:
            raise UsageError("--limit must be at least 1")
        user = self.require_user(uid)
        function = user.get("function_name")
        if not function:
            raise SandboxctlError(f"user {uid!r} has no function yet ({user.get('status')})")
        group = f"/aws/lambda/{function}"
        logs = self.client("logs")
        events: list[dict[str, Any]] = []
        try:
            for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
                events.extend(page.get("events", []))
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return []  # never invoked: Lambda creates the stream on the first run
            raise
        events.sort(key=lambda e: (e.get("timestamp", 0), e.get("eventId", "")))
        return [
            {
                "time": datetime.fromtimestamp(e["timestamp"] / 1000, UTC).isoformat(),
                "stream": e.get("logStreamName"),
                "message": str(e.get("message", "")).rstrip("\n"),
            }
            for e in events[-limit:]
        ]

    def push_image(self, tag: str) -> dict[str, Any]:
        """Local cloud only: PutImage a new manifest, which emits the ECR push event."""
        validate_image_tag(tag)
        if self.target.on_aws:
            raise UsageError(
                "push-image works against a local cloud (--endpoint); on AWS, CI pushes the "
                "real image with docker push"
            )
        repo = self.output("SandboxRepositoryName")
        manifest = docker_manifest(tag)
        try:
            resp = self.client("ecr").put_image(
                repositoryName=repo,
                imageManifest=manifest,
                imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json",
                imageTag=tag,
            )
        except ClientError as exc:
            if error_code(exc) in {"ImageTagAlreadyExistsException", "ImageAlreadyExistsException"}:
                raise SandboxctlError(
                    f"tag {tag!r} already exists in {repo} (tags are immutable)"
                ) from exc
            raise
        digest = resp["image"]["imageId"]["imageDigest"]
        return {
            "repository": repo,
            "tag": tag,
            "image_digest": digest,
            "image_uri": f"{self.outputs.get('SandboxRepositoryUri', repo)}@{digest}",
        }

    def executions(
        self, machine: str | None = None, limit: int = 20, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Recent executions of the fleet's workflows, newest first."""
        if limit < 1:
            raise UsageError("--limit must be at least 1")
        names = [machine] if machine else list(STATE_MACHINE_OUTPUTS)
        for name in names:
            if name not in STATE_MACHINE_OUTPUTS:
                raise UsageError(f"--machine must be one of {', '.join(STATE_MACHINE_OUTPUTS)}")
        sfn = self.client("stepfunctions")
        rows: list[dict[str, Any]] = []
        for name in names:
            arn = self.outputs.get(STATE_MACHINE_OUTPUTS[name])
            if not arn:
                continue
            kwargs: dict[str, Any] = {"stateMachineArn": arn, "maxResults": limit}
            if status:
                kwargs["statusFilter"] = status
            for ex in sfn.list_executions(**kwargs).get("executions", []):
                row = {
                    "workflow": name,
                    "name": ex["name"],
                    "status": ex["status"],
                    "started": _iso(ex.get("startDate")),
                    "stopped": _iso(ex.get("stopDate")),
                    "execution_arn": ex["executionArn"],
                }
                if self.target.on_aws:
                    row["console_url"] = console_url(self.target.region, ex["executionArn"])
                rows.append(row)
        rows.sort(key=lambda r: r["started"] or "", reverse=True)
        rows = rows[:limit]
        for row in rows:
            row.update(self._execution_subject(sfn, row["execution_arn"], row["status"]))
        return rows

    @staticmethod
    def _execution_subject(sfn: Any, arn: str, status: str) -> dict[str, Any]:
        """Who an execution was for (the event's uid) and, when it failed, why."""
        described = sfn.describe_execution(executionArn=arn)
        try:
            detail = json.loads(described.get("input") or "{}").get("detail") or {}
        except ValueError:
            detail = {}
        uid = detail.get("uid") if isinstance(detail, dict) else None
        cause = None
        if status in ("FAILED", "TIMED_OUT", "ABORTED"):
            parts = [described.get("error"), described.get("cause")]
            cause = ": ".join(str(p) for p in parts if p) or status
        return {"uid": uid, "cause": cause}

    def latest_failure(self, workflow: str) -> str | None:
        """`<execution>: <error>: <cause>` of the workflow's newest failed execution, if any."""
        failed = self.executions(workflow, limit=1, status="FAILED")
        if not failed:
            return None
        desc = self.client("stepfunctions").describe_execution(
            executionArn=failed[0]["execution_arn"]
        )
        cause = " ".join(str(desc.get("cause") or "").split())[:300]
        return f"{failed[0]['name']}: {desc.get('error') or 'failed'}: {cause}"

    def _state_machine_status(self, key: str) -> str:
        sfn = self.client("stepfunctions")
        return str(sfn.describe_state_machine(stateMachineArn=self.output(key))["status"])

    def _function_state(self, key: str) -> str:
        conf = self.client("lambda").get_function_configuration(FunctionName=self.output(key))
        return str(conf.get("State", "Active"))

    def status(self) -> list[dict[str, Any]]:
        """One row per check that the control plane is deployed and answering."""
        checks: list[dict[str, Any]] = []

        def check(name: str, fn: Callable[[], str]) -> None:
            try:
                checks.append({"check": name, "ok": True, "detail": fn()})
            except OutputMissingError as exc:
                checks.append({"check": name, "ok": False, "detail": str(exc)})
            except (ClientError, BotoCoreError) as exc:
                checks.append({"check": name, "ok": False, "detail": describe_client_error(exc)})

        try:
            stack = self.describe_stack()
        except (ClientError, BotoCoreError) as exc:
            return [{"check": "stack", "ok": False, "detail": describe_client_error(exc)}]
        except SandboxctlError as exc:
            return [{"check": "stack", "ok": False, "detail": str(exc)}]
        stack_status = str(stack.get("StackStatus"))
        settled = stack_status.endswith("_COMPLETE") and "ROLLBACK" not in stack_status
        checks.append(
            {
                "check": "stack",
                "ok": settled or stack_status == "UPDATE_ROLLBACK_COMPLETE",
                "detail": f"{self.target.stack} {stack_status}",
            }
        )
        self._outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        missing = [k for k in REQUIRED_OUTPUTS if not self.outputs.get(k)]
        checks.append(
            {
                "check": "outputs",
                "ok": not missing,
                "detail": "all present" if not missing else "missing " + ", ".join(missing),
            }
        )
        check(
            "registry table",
            lambda: self.client("dynamodb").describe_table(
                TableName=self.output("RegistryTableName")
            )["Table"]["TableStatus"],
        )
        check(
            "data bucket",
            lambda: (
                self.client("s3").head_bucket(Bucket=self.output("DataBucketName")) and "reachable"
            ),
        )
        check(
            "event bus",
            lambda: self.client("events").describe_event_bus(Name=self.output("EventBusName"))[
                "Arn"
            ],
        )
        for name, key in STATE_MACHINE_OUTPUTS.items():
            check(f"{name} workflow", partial(self._state_machine_status, key))
        try:
            url = self.api_url()
            checks.append({"check": "http api", "ok": True, "detail": url, "api_url": url})
        except OutputMissingError as exc:
            checks.append({"check": "http api", "ok": False, "detail": str(exc), "api_url": None})
        for key in ("SignupWebhookFunctionName", "RunCodeFunctionName"):
            check(key.removesuffix("FunctionName"), partial(self._function_state, key))
        check(
            "sandbox repository",
            lambda: self.client("ecr").describe_repositories(
                repositoryNames=[self.output("SandboxRepositoryName")]
            )["repositories"][0]["repositoryUri"],
        )
        check("sandbox protections", lambda: sandbox_protections_summary(self.list_users("READY")))
        return checks


def sandbox_protections_summary(users: list[dict[str, Any]]) -> str:
    """What the rollouts' smoke runs found Lambda allowed (registry attributes
    `sandbox_protections` / `sandbox_refused`), summed over users."""
    reported = [u for u in users if u.get("sandbox_protections") is not None]
    if not reported:
        return "no smoke run has recorded them yet"
    refused: dict[str, int] = {}
    for user in reported:
        for name in user.get("sandbox_refused") or []:
            refused[str(name)] = refused.get(str(name), 0) + 1
    detail = f"{len(reported)} of {len(users)} ready users reported"
    if refused:
        detail += "; refused: " + ", ".join(
            f"{name} ({count})" for name, count in sorted(refused.items())
        )
    return detail


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    return str(value)


def save_figures(envelope: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Write each base64 PNG figure of an envelope to `out_dir`; return the paths."""
    figures = envelope.get("figures") or []
    paths: list[Path] = []
    if not figures:
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, fig in enumerate(figures, start=1):
        data = fig.get("png") or fig.get("data") if isinstance(fig, dict) else fig
        if not isinstance(data, str):
            raise SandboxctlError(f"figure {i} is not base64 PNG data")
        raw = base64.b64decode(data, validate=False)
        if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
            raise SandboxctlError(f"figure {i} is not a PNG image")
        path = out_dir / f"{stem}-{i}.png"
        path.write_bytes(raw)
        paths.append(path)
    return paths
