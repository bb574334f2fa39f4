"""JSON-protocol services answer authorization failures in JSON, with their own error codes.

AWS behaviour restored: services speaking the JSON protocols (DynamoDB, Step Functions,
EventBridge, Secrets Manager, CloudWatch Logs, ECR, Lambda …) return a denied request as a JSON
error, so SDKs raise ``AccessDeniedException`` (and ``UnrecognizedClientException`` /
``InvalidSignatureException`` for unknown keys and bad signatures); handlers and Step Functions
``Catch`` clauses match on those codes.

moto 5.2.5 renders these errors as XML for every service, so botocore reports the code as the
HTTP status (``403``). Hook: ``moto.iam.access_control.IAMRequest._raise_access_denied``,
``_raise_invalid_access_key`` and ``_raise_signature_does_not_match``.
"""

from __future__ import annotations

from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

# Signing names of services whose protocol is JSON or REST-JSON.
JSON_SERVICES = frozenset(
    {
        "lambda",
        "dynamodb",
        "states",
        "events",
        "secretsmanager",
        "logs",
        "ecr",
        "kms",
        "apigateway",
        "execute-api",
        "scheduler",
        "xray",
    }
)


class _JsonAuthError(Exception):
    pass


def _json_protocol(request: Any) -> bool:
    headers = request._headers
    content_type = str(headers.get("Content-Type", ""))
    return (
        request._service in JSON_SERVICES
        or "X-Amz-Target" in headers
        or content_type.startswith("application/x-amz-json")
    )


def _json_error(code: str, message: str) -> Exception:
    from moto.core.exceptions import JsonRESTError

    error = JsonRESTError(code, message)
    error.code = 403
    return error


def _raise_access_denied(self: Any) -> None:
    from moto.iam.access_control import IAMRequest

    if _json_protocol(self):
        raise _json_error(
            "AccessDeniedException",
            f"User: {self._access_key.arn} is not authorized to perform: {self._action}"
            " because no identity-based policy allows the action",
        )
    original(IAMRequest, "_raise_access_denied")(self)


def _raise_invalid_access_key(self: Any, reason: str) -> None:
    from moto.iam.access_control import IAMRequest

    if _json_protocol(self):
        raise _json_error(
            "UnrecognizedClientException", "The security token included in the request is invalid."
        )
    original(IAMRequest, "_raise_invalid_access_key")(self, reason)


def _raise_signature_does_not_match(self: Any) -> None:
    from moto.iam.access_control import IAMRequest

    if _json_protocol(self):
        raise _json_error(
            "InvalidSignatureException",
            "The request signature we calculated does not match the signature you provided.",
        )
    original(IAMRequest, "_raise_signature_does_not_match")(self)


def check() -> None:
    from moto.core.exceptions import JsonRESTError
    from moto.iam.access_control import IAMRequest

    for name in (
        "_raise_access_denied",
        "_raise_invalid_access_key",
        "_raise_signature_does_not_match",
    ):
        if name not in IAMRequest.__dict__:
            raise FidelityCheckError(f"moto's IAMRequest.{name} is gone")
    if '"__type"' not in JsonRESTError("X", "y").description:
        raise FidelityCheckError("moto's JsonRESTError no longer renders a JSON __type")


def apply() -> None:
    from moto.iam.access_control import IAMRequest

    patch(IAMRequest, "_raise_access_denied", _raise_access_denied)
    patch(IAMRequest, "_raise_invalid_access_key", _raise_invalid_access_key)
    patch(IAMRequest, "_raise_signature_does_not_match", _raise_signature_does_not_match)
