"""S3 presigned URLs (SigV4 query authentication) work under IAM enforcement.

AWS behaviour restored: a request signed in its query string (``X-Amz-Algorithm``,
``X-Amz-Credential``, ``X-Amz-Date``, ``X-Amz-Expires``, ``X-Amz-SignedHeaders``,
``X-Amz-Signature``, and ``X-Amz-Security-Token`` for temporary credentials) is authenticated
from those parameters: the signature must match (payload ``UNSIGNED-PAYLOAD``), the URL must not
have expired (403 ``Request has expired``), and the action is authorized for the signer's
policies exactly as a header-signed request is.

moto 5.2.5 with IAM enforcement on reads only the ``Authorization`` header, so every presigned
request fails with ``KeyError: 'HTTP_AUTHORIZATION'`` (HTTP 500). Hook:
``moto.core.authorization.ActionAuthenticatorMixin._authenticate_and_authorize_action``.
"""

from __future__ import annotations

import hashlib
import hmac
import inspect
import time
from datetime import UTC, datetime
from typing import Any
from urllib.parse import parse_qsl, quote, urlparse

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

ALGORITHM = "AWS4-HMAC-SHA256"


def _canonical_query(query: str) -> str:
    pairs = [(k, v) for k, v in parse_qsl(query, keep_blank_values=True) if k != "X-Amz-Signature"]
    encoded = sorted((quote(k, safe="-_.~"), quote(v, safe="-_.~")) for k, v in pairs)
    return "&".join(f"{k}={v}" for k, v in encoded)


def expected_signature(
    secret: str, method: str, raw_path: str, query: str, headers: Any, params: dict[str, str]
) -> str:
    """SigV4 query-string signature of the request (AWS's "Authenticating Requests" algorithm)."""
    signed = params["X-Amz-SignedHeaders"].split(";")
    canonical_headers = "".join(
        f"{name}:{' '.join(str(headers.get(name, '')).split())}\n" for name in signed
    )
    canonical = "\n".join(
        [
            method,
            raw_path or "/",
            _canonical_query(query),
            canonical_headers,
            ";".join(signed),
            "UNSIGNED-PAYLOAD",
        ]
    )
    credential = params["X-Amz-Credential"].split("/")
    date, region, service = credential[1], credential[2], credential[3]
    scope = f"{date}/{region}/{service}/aws4_request"
    to_sign = "\n".join(
        [ALGORITHM, params["X-Amz-Date"], scope, hashlib.sha256(canonical.encode()).hexdigest()]
    )
    key = ("AWS4" + secret).encode()
    for part in (date, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest()


def _presigned_params(self: Any) -> dict[str, str] | None:
    if self.headers.get("Authorization"):
        return None
    query = urlparse(self.uri).query
    params = dict(parse_qsl(query, keep_blank_values=True))
    if params.get("X-Amz-Algorithm") != ALGORITHM or "X-Amz-Signature" not in params:
        return None
    return params


def _authenticate_and_authorize_action(
    self: Any, iam_request_cls: type, resource: str = "*"
) -> None:
    from moto import settings
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.s3.exceptions import S3AccessDeniedError

    moto_check = original(ActionAuthenticatorMixin, "_authenticate_and_authorize_action")
    params = _presigned_params(self)
    enforced = ActionAuthenticatorMixin.request_count >= settings.INITIAL_NO_AUTH_ACTION_COUNT
    if params is None or not enforced:
        moto_check(self, iam_request_cls, resource)
        return
    required = ("X-Amz-Credential", "X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders")
    if any(k not in params for k in required):
        raise S3AccessDeniedError()
    credential = params["X-Amz-Credential"]
    # Let moto find the signer's key and policies from a header-shaped copy of the request.
    headers = dict(self.headers.items())
    headers["Authorization"] = (
        f"{ALGORITHM} Credential={credential}, SignedHeaders={params['X-Amz-SignedHeaders']}, "
        f"Signature={params['X-Amz-Signature']}"
    )
    if params.get("X-Amz-Security-Token"):
        headers["X-Amz-Security-Token"] = params["X-Amz-Security-Token"]
    iam_request = iam_request_cls(
        account_id=self.current_account,
        method=self.method,
        path=self.raw_path,
        data=self.data,
        body=self.raw_body,
        headers=headers,
        action=self._get_action(),
    )
    secret = iam_request._access_key.create_credentials().secret_key
    lowered = {k.lower(): v for k, v in self.headers.items()}
    wanted = expected_signature(
        secret, self.method, self.raw_path, urlparse(self.uri).query, lowered, params
    )
    if not hmac.compare_digest(wanted, params["X-Amz-Signature"]):
        iam_request._raise_signature_does_not_match()
    signed_at = datetime.strptime(params["X-Amz-Date"], "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if time.time() > signed_at.timestamp() + int(params["X-Amz-Expires"]):
        raise S3AccessDeniedError()  # AWS: 403 AccessDenied "Request has expired"
    iam_request.check_action_permitted(resource)


def check() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin
    from moto.iam.access_control import IAMRequestBase

    source = inspect.getsource(
        original(ActionAuthenticatorMixin, "_authenticate_and_authorize_action")
    )
    if 'self.headers.get("X-Amz-Target")' not in source or "check_signature" not in source:
        raise FidelityCheckError("moto's _authenticate_and_authorize_action changed shape")
    if '"X-Amz-Credential"' in source or "X-Amz-Signature" in source:
        raise FidelityCheckError("moto now reads presigned query parameters itself")
    if not hasattr(IAMRequestBase, "check_action_permitted"):
        raise FidelityCheckError("IAMRequestBase.check_action_permitted is gone")


def apply() -> None:
    from moto.core.authorization import ActionAuthenticatorMixin

    patch(
        ActionAuthenticatorMixin,
        "_authenticate_and_authorize_action",
        _authenticate_and_authorize_action,
    )
