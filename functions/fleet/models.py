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
# Types the sandbox runtime reads (sandbox_runtime/request.py FORMATS).
DATASET_SUFFIXES = (".csv", ".tsv", ".parquet", ".pq", ".jsonl", ".ndjson")
MAX_DATASETS = 8


def _dataset_key(value: str) -> str:
    """A key relative to the user's prefix that cannot leave it."""
    segments = value.split("/")
    if any(segment in ("", ".", "..") for segment in segments):
        raise ValueError("'.', '..' and empty path segments are not allowed")
    if not value.lower().endswith(DATASET_SUFFIXES):
        raise ValueError(f"the dataset type must be one of {', '.join(DATASET_SUFFIXES)}")
    return value


DatasetKey = Annotated[
    str,
    Field(min_length=1, max_length=512, pattern=r"^[A-Za-z0-9._/-]+$"),
    AfterValidator(_dataset_key),
]


class RunRequest(_Strict):
    """Body of `POST /run`, the sandbox runtime's own contract minus what the server decides."""

    code: Annotated[str, Field(min_length=1, max_length=65_536)]
    dataset: DatasetKey | None = None
    datasets: Annotated[list[DatasetKey], Field(max_length=MAX_DATASETS)] | None = None
    timeout_s: Annotated[float, Field(gt=0, allow_inf_nan=False)] | None = None
    max_output_bytes: Annotated[int, Field(gt=0)] | None = None


class DatasetUploadRequest(_Strict):
    """Body of `POST /datasets`: the size is signed into the URL, so S3 refuses any other."""

    name: DatasetKey
    size: Annotated[int, Field(gt=0)]
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
