"""Credentials of an IAM role as an AWS service principal obtains them, inside moto.

On AWS, Step Functions and EventBridge call other services with temporary credentials of a role
that trusts them (``states.amazonaws.com``, ``events.amazonaws.com``). Here the role is assumed
straight in moto's STS backend (the service principal has no keys of its own), after checking the
role exists and its trust policy names the principal, so the role's own policies — not an admin
key — decide what the call may do under IAM enforcement.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
from moto import settings
from moto.core.authorization import ActionAuthenticatorMixin

_SESSION_SECONDS = 3600
_REFRESH_MARGIN = 300
_lock = threading.Lock()
_cache: dict[tuple[str, str], Credentials] = {}
_endpoint: str | None = None


class RoleNotAssumableError(RuntimeError):
    """The role does not exist or does not trust the service principal (AWS: AccessDenied)."""


@dataclass(frozen=True)
class Credentials:
    access_key_id: str
    secret_access_key: str
    session_token: str | None
    refresh_at: float


def set_endpoint(url: str | None) -> None:
    """Where service principals send their calls (the local cloud's own URL)."""
    global _endpoint
    _endpoint = url.rstrip("/") if url else None


def endpoint() -> str:
    """The local cloud URL: set explicitly, else ``http://127.0.0.1:$MOTO_PORT``."""
    if _endpoint:
        return _endpoint
    return f"http://127.0.0.1:{settings.moto_server_port()}"


def iam_enforced() -> bool:
    """True once moto checks signatures and policies (``/moto-api/reset-auth``)."""
    return bool(ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def trusts(policy_document: str | dict[str, Any], principal: str) -> bool:
    """Does the trust policy allow ``sts:AssumeRole`` to the service principal?"""
    policy = json.loads(policy_document) if isinstance(policy_document, str) else policy_document
    regional = principal.split(".", 1)
    for statement in _as_list(policy.get("Statement", [])):
        if statement.get("Effect") != "Allow":
            continue
        actions = {a.lower() for a in _as_list(statement.get("Action", []))}
        if not actions & {"sts:assumerole", "sts:*", "*"}:
            continue
        services = _as_list((statement.get("Principal") or {}).get("Service", []))
        for service in services:
            # Regional form states.<region>.amazonaws.com is accepted by AWS too.
            if service == principal or (
                service.startswith(regional[0] + ".") and service.endswith("." + regional[1])
            ):
                return True
    return False


def _ambient() -> Credentials:
    return Credentials(
        os.environ.get("AWS_ACCESS_KEY_ID", "testing"),
        os.environ.get("AWS_SECRET_ACCESS_KEY", "testing"),
        None,
        float("inf"),
    )


def credentials_for(role_arn: str | None, principal: str, region: str) -> Credentials:
    """Temporary credentials of ``role_arn`` for ``principal``; cached until near expiry.

    Without IAM enforcement a missing or untrusting role falls back to the ambient keys (plain
    moto accepts any key then); with enforcement it raises ``RoleNotAssumableError`` as AWS
    refuses the call.
    """
    key = (role_arn or "", principal)
    now = time.monotonic()
    with _lock:
        cached = _cache.get(key)
        if cached and cached.refresh_at > now:
            return cached
    try:
        creds = _assume(role_arn, principal, region)
    except RoleNotAssumableError:
        if iam_enforced():
            raise
        return _ambient()
    with _lock:
        _cache[key] = creds
    return creds


def _assume(role_arn: str | None, principal: str, region: str) -> Credentials:
    from moto.iam.models import iam_backends
    from moto.sts.models import sts_backends

    if not role_arn or ":role/" not in role_arn:
        raise RoleNotAssumableError(f"{principal} has no role to assume (got {role_arn!r})")
    parts = role_arn.split(":")
    account, partition = parts[4], parts[1]
    role_name = role_arn.rsplit("/", 1)[-1]
    try:
        role = iam_backends[account][partition].get_role(role_name)
    except Exception as error:
        raise RoleNotAssumableError(f"Role {role_arn} does not exist") from error
    if not trusts(role.assume_role_policy_document, principal):
        raise RoleNotAssumableError(
            f"{principal} is not authorized to assume the provided role {role_arn}"
        )
    assumed = sts_backends[account][partition].assume_role(
        region_name=region,
        role_session_name=f"{principal.split('.')[0]}-{uuid.uuid4().hex[:16]}",
        role_arn=role_arn,
        policy=None,  # type: ignore[arg-type]
        duration=_SESSION_SECONDS,
        external_id=None,  # type: ignore[arg-type]
    )
    return Credentials(
        assumed.access_key_id,
        assumed.secret_access_key,
        assumed.session_token,
        time.monotonic() + _SESSION_SECONDS - _REFRESH_MARGIN,
    )


_clients: dict[tuple[str, str, str, str, int], Any] = {}
# One session for every client: each new session loads and parses the service's JSON model
# again (tens of ms, and a new role per user means a new client per user).
_session_lock = threading.Lock()
_session: boto3.session.Session | None = None


def service_client(service: str, region: str, creds: Credentials, config: Any, url: str) -> Any:
    """A boto3 client signed with ``creds`` (cached: clients are thread-safe and slow to build)."""
    key = (service, region, creds.access_key_id, url, id(config))
    with _lock:
        client = _clients.get(key)
    if client is not None:
        return client
    global _session
    with _session_lock:  # a session's client() is not thread-safe; its clients are
        if _session is None:
            _session = boto3.session.Session()
        client = _session.client(
            service_name=service,
            region_name=region,
            aws_access_key_id=creds.access_key_id,
            aws_secret_access_key=creds.secret_access_key,
            aws_session_token=creds.session_token,
            endpoint_url=url or None,
            config=config,
        )
    with _lock:
        if len(_clients) > 512:
            _clients.clear()
        _clients.setdefault(key, client)
    return client
