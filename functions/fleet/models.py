"""Typed shapes of everything that crosses a boundary: webhook bodies, bus events, API requests.

The handlers parse into these (Powertools parser / pydantic) before doing anything, so a bad
request is rejected before it can write or emit.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from aws_lambda_powertools.utilities.parser.models import EventBridgeModel
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    field_validator,
)

from fleet import naming

SOURCE = "sandbox-fleet"

# Registry statuses (docs/architecture.md).
PROVISIONING = "PROVISIONING"
READY = "READY"
FAILED = "FAILED"
DELETING = "DELETING"
DELETED = "DELETED"


def iso_utc(value: datetime) -> str:
    """Fixed-width UTC timestamp (`2026-01-31T12:00:00.000Z`).

    The workflows compare these as strings in DynamoDB conditions (a deletion older than a
    signup must not remove it), which is only correct when every timestamp has the same width.
    """
    if value.tzinfo is None:
        raise ValueError("timestamps must carry a timezone")
    utc = value.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def _uid(value: str) -> str:
    return naming.validate_uid(value)


Uid = Annotated[str, AfterValidator(_uid)]
EventId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._:/-]+$")]
Email = Annotated[str, Field(min_length=3, max_length=320, pattern=r"^[^@\s]+@[^@\s]+$")]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UserCreatedNotice(_Strict):
    """What the Firebase function POSTs when a user is created."""

    type: Literal["user.created"] = "user.created"
    uid: Uid
    email: Email | None = None
    event_id: EventId
    created_at: datetime

    @field_validator("created_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        iso_utc(value)
        return value


class UserDeletedNotice(_Strict):
    """What the Firebase side (or `sandboxctl delete-user`) POSTs when a user is deleted."""

    type: Literal["user.deleted"]
    uid: Uid
    event_id: EventId
    deleted_at: datetime

    @field_validator("deleted_at")
    @classmethod
    def _aware(cls, value: datetime) -> datetime:
        iso_utc(value)
        return value


def _notice_type(value: Any) -> str:
    if isinstance(value, dict):
        return str(value.get("type", "user.created"))
    return str(getattr(value, "type", "user.created"))


WebhookNotice = Annotated[
    Annotated[UserCreatedNotice, Tag("user.created")]
    | Annotated[UserDeletedNotice, Tag("user.deleted")],
    Discriminator(_notice_type),
]


class UserSignedUpDetail(_Strict):
    """`detail` of `UserSignedUp`: the digest is computed once, by the webhook."""

    uid: Uid
    user_digest: Annotated[str, Field(pattern=naming.DIGEST_PATTERN.pattern)]
    email: str | None = None
    event_id: EventId
    created_at: str


class UserDeletedDetail(_Strict):
    """`detail` of `UserDeleted`."""

    uid: Uid
    user_digest: Annotated[str, Field(pattern=naming.DIGEST_PATTERN.pattern)]
    event_id: EventId
    deleted_at: str


class UserSignedUpEvent(EventBridgeModel):
    detail: UserSignedUpDetail


class UserDeletedEvent(EventBridgeModel):
    detail: UserDeletedDetail


# ------------------------------------------------------------------ run API
DatasetName = Annotated[
    str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
]


def _no_dots(value: str) -> str:
    if ".." in value:
        raise ValueError("dataset names cannot contain '..'")
    return value


SafeDatasetName = Annotated[DatasetName, AfterValidator(_no_dots)]


class RunLimits(_Strict):
    """Limits a caller may ask for; the server caps each one (see run_code.LIMIT_CAPS)."""

    timeout_seconds: Annotated[float, Field(gt=0)] | None = None
    memory_mb: Annotated[int, Field(gt=0)] | None = None
    max_output_bytes: Annotated[int, Field(gt=0)] | None = None


class RunRequest(_Strict):
    """Body of `POST /run`."""

    code: Annotated[str, Field(min_length=1, max_length=65_536)]
    dataset: SafeDatasetName
    limits: RunLimits = RunLimits()


class DatasetUploadRequest(_Strict):
    """Body of `POST /datasets`."""

    name: SafeDatasetName
    content_type: Annotated[str, Field(max_length=100, pattern=r"^[\w.+-]+/[\w.+-]+$")] = (
        "application/octet-stream"
    )


class UserRecord(BaseModel):
    """A user's registry item, as the API functions read it."""

    model_config = ConfigDict(extra="ignore")

    uid: str
    user_digest: str
    status: str
    function_name: str | None = None
    function_arn: str | None = None
    image_digest: str | None = None
    last_error: str | None = None
