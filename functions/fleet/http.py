"""HTTP API (payload v2) plumbing shared by the API functions: parse, authenticate, respond."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable
from typing import Any, TypeVar

from aws_lambda_powertools.utilities.parser import ValidationError, parse
from aws_lambda_powertools.utilities.parser.models import APIGatewayProxyEventV2Model
from pydantic import BaseModel

from fleet import naming

M = TypeVar("M", bound=BaseModel)
T = TypeVar("T")


class HttpError(Exception):
    """An error with the HTTP status it maps to; the message is safe to show the caller."""

    def __init__(
        self,
        status: int,
        message: str,
        headers: dict[str, str] | None = None,
        details: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.status, self.message, self.headers, self.details = status, message, headers, details

    def to_response(self) -> dict[str, Any]:
        body: dict[str, Any] = {"message": self.message}
        if self.details:
            body["errors"] = self.details
        return response(self.status, body, self.headers)


def response(status: int, body: Any, headers: dict[str, str] | None = None) -> dict[str, Any]:
    return {
        "statusCode": status,
        "headers": {"content-type": "application/json", **(headers or {})},
        "body": json.dumps(body),
    }


def parse_event(raw_event: dict[str, Any]) -> APIGatewayProxyEventV2Model:
    try:
        return parse(event=raw_event, model=APIGatewayProxyEventV2Model)
    except ValidationError:
        raise HttpError(400, "not an HTTP API request") from None


def body_bytes(event: APIGatewayProxyEventV2Model, max_bytes: int) -> bytes:
    """The raw body; 413 over `max_bytes` (checked before anything else looks at it)."""
    raw = event.body if isinstance(event.body, str) else ""
    try:
        data = base64.b64decode(raw, validate=True) if event.isBase64Encoded else raw.encode()
    except (binascii.Error, ValueError):
        raise HttpError(400, "the body is not valid base64") from None
    if len(data) > max_bytes:
        raise HttpError(413, f"the body is larger than {max_bytes} bytes")
    return data


def parse_body(data: bytes, model: type[M]) -> M:
    """JSON object -> model; 400 when not JSON, 422 with the failing fields when invalid."""
    return validate_body(data, model.model_validate)


def validate_body(
    data: bytes, validate: Callable[[dict[str, Any]], T], invalid: str = "invalid request"
) -> T:
    """JSON object -> `validate(object)`; 400 when not JSON, 422 (`invalid`, with the failing
    fields) when `validate` raises pydantic's ValidationError."""
    try:
        payload = json.loads(data)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise HttpError(400, "the body is not JSON") from None
    if not isinstance(payload, dict):
        raise HttpError(400, "the body must be a JSON object")
    try:
        return validate(payload)
    except ValidationError as error:
        details = [
            {"field": ".".join(str(p) for p in e["loc"]), "problem": e["msg"]}
            for e in error.errors(include_input=False, include_url=False)
        ]
        raise HttpError(422, invalid, details=details) from None


def caller_uid(event: APIGatewayProxyEventV2Model) -> str:
    """The Firebase UID from the claims API Gateway's JWT authorizer verified, never the body."""
    authorizer = event.requestContext.authorizer
    claims = authorizer.jwt.claims if authorizer and authorizer.jwt else {}
    uid = claims.get("sub")
    if not isinstance(uid, str):
        raise HttpError(401, "no verified identity")
    try:
        return naming.validate_uid(uid)
    except naming.InvalidUid:
        raise HttpError(401, "no verified identity") from None
