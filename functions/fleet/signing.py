"""The webhook signature, shared by the signup webhook, the Firebase function and `sandboxctl`.

    signature = hex(HMAC-SHA256(key = secret as UTF-8, message = timestamp + "." + body))

sent as `X-Signature: v1=<hex>` with `X-Signature-Timestamp: <unix seconds>`. Signing the
timestamp with the body stops replays of old requests; the receiver accepts both the current
and the previous secret so the key rotates without downtime.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable

TIMESTAMP_HEADER = "X-Signature-Timestamp"
SIGNATURE_HEADER = "X-Signature"
SCHEME = "v1"
TOLERANCE_SECONDS = 300


class SignatureError(Exception):
    """The request is not signed by a holder of the webhook secret (HTTP 401)."""


class MissingSignature(SignatureError):
    """The signature or timestamp header is absent or malformed."""


class StaleTimestamp(SignatureError):
    """The signed timestamp is more than the tolerance away from now (a replay, or a bad clock)."""


class BadSignature(SignatureError):
    """No configured secret produces this signature."""


def compute(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode("utf-8"), timestamp.encode("ascii") + b"." + body, hashlib.sha256)
    return mac.hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> dict[str, str]:
    """Headers to send with `body`."""
    if not secret:
        raise ValueError("the webhook secret is empty")
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"{SCHEME}={compute(secret, ts, body)}"}


def verify(
    secrets: Iterable[str],
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> None:
    """Raise a SignatureError subclass unless one of `secrets` signed `timestamp.body` recently."""
    if not timestamp or not signature:
        raise MissingSignature("signature headers are missing")
    if not timestamp.isascii() or not timestamp.isdigit() or len(timestamp) > 12:
        raise MissingSignature("the timestamp header is not unix seconds")
    scheme, _, received = signature.partition("=")
    if scheme != SCHEME or not received:
        raise MissingSignature(f"the signature header must look like {SCHEME}=<hex>")
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > tolerance:
        raise StaleTimestamp(f"the timestamp is more than {tolerance} s away from now")
    keys = [s for s in secrets if s]
    if not keys:
        raise BadSignature("no webhook secret is configured")
    # Compare against every key (no early exit) so timing says nothing about which matched.
    matches = [hmac.compare_digest(compute(k, timestamp, body), received) for k in keys]
    if not any(matches):
        raise BadSignature("the signature does not match")
