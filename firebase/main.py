"""Firebase side of sandbox-fleet: report every new user to the AWS signup webhook.

A blocking `before_user_created` function, so it runs for every signup method. It must never
block or fail a signup because AWS is slow or down: the POST has a short timeout, every failure
is logged and swallowed, and the AWS reconciler provisions any user it missed.

The body is signed exactly as functions/fleet/signing.py defines (this directory is deployed on
its own, so the few lines are repeated here; a unit test proves both produce the same headers).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from datetime import UTC, datetime
from typing import Any

import requests
from firebase_functions import identity_fn, options
from firebase_functions.params import SecretParam, StringParam

WEBHOOK_SECRET = SecretParam(
    "SANDBOX_FLEET_WEBHOOK_SECRET",
    description="The 'current' value of the AWS stack's WebhookSecretArn secret",
)
WEBHOOK_URL = StringParam(
    "SANDBOX_FLEET_WEBHOOK_URL",
    description="<HttpApiUrl stack output>/hooks/firebase",
)
# Blocking functions must answer within 7 s; leave Firebase most of it.
POST_TIMEOUT_SECONDS = 2.5

logger = logging.getLogger("sandbox-fleet")


def sign(secret: str, body: bytes, timestamp: int) -> dict[str, str]:
    """X-Signature: v1=hex(HMAC-SHA256(secret, "<timestamp>." + body)) (fleet.signing)."""
    ts = str(timestamp)
    mac = hmac.new(secret.encode("utf-8"), ts.encode("ascii") + b"." + body, hashlib.sha256)
    return {"X-Signature-Timestamp": ts, "X-Signature": f"v1={mac.hexdigest()}"}


def signup_body(uid: str, email: str | None, event_id: str, created_at: datetime) -> bytes:
    notice: dict[str, Any] = {
        "type": "user.created",
        "uid": uid,
        "email": email,
        "event_id": event_id,
        "created_at": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    return json.dumps(notice, separators=(",", ":")).encode("utf-8")


def report_signup(
    url: str,
    secret: str,
    uid: str,
    email: str | None,
    event_id: str,
    created_at: datetime,
    session: Any = requests,
    now: float | None = None,
) -> bool:
    """POST the signed notice; True when AWS accepted it. Never raises."""
    try:
        if not url or not secret:
            logger.error("sandbox-fleet webhook is not configured; the reconciler will catch up")
            return False
        body = signup_body(uid, email, event_id, created_at)
        headers = {"content-type": "application/json"}
        headers |= sign(secret, body, int(time.time() if now is None else now))
        reply = session.post(url, data=body, headers=headers, timeout=POST_TIMEOUT_SECONDS)
        if 200 <= reply.status_code < 300:
            return True
        logger.error(
            "sandbox-fleet webhook refused the signup (HTTP %s); the reconciler will catch up",
            reply.status_code,
        )
    except Exception:
        # Deliberately broad: nothing on the AWS side may ever fail a Firebase signup.
        logger.exception("sandbox-fleet webhook unreachable; the reconciler will catch up")
    return False


@identity_fn.before_user_created(
    secrets=[WEBHOOK_SECRET],
    timeout_sec=5,
    memory=options.MemoryOption.MB_256,
)
def sandbox_fleet_before_user_created(
    event: identity_fn.AuthBlockingEvent,
) -> identity_fn.BeforeCreateResponse | None:
    """Report the signup and let Firebase create the user whatever happened."""
    report_signup(
        WEBHOOK_URL.value,
        WEBHOOK_SECRET.value,
        event.data.uid,
        event.data.email,
        event.event_id,
        event.timestamp,
    )
    return None
