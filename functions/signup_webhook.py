"""POST /hooks/firebase: signed Firebase signup/deletion notices -> UserSignedUp/UserDeleted.

Every check runs before anything is written or emitted: size (413), signature and timestamp
(401), JSON (400), schema (422), and for deletions, when a Firebase service account is
configured, that Firebase no longer has the user (422). Only an accepted notice reaches the
idempotency table and the bus, once per `event_id`.
"""

from __future__ import annotations

import functools
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext
from fleet import http, naming, signing
from fleet.errors import (
    ConfigurationError,
    EmitFailed,
    FirebaseUnavailable,
    FirebaseUserStillExists,
)
from fleet.firebase_users import FirebaseUserDirectory
from fleet.models import (
    SOURCE,
    UserCreatedNotice,
    UserDeletedDetail,
    UserDeletedNotice,
    UserSignedUpDetail,
    WebhookNotice,
    iso_utc,
)
from pydantic import TypeAdapter

MAX_BODY_BYTES = 16 * 1024
SECRET_MAX_AGE_SECONDS = 60

logger = Logger()
tracer = Tracer()
metrics = Metrics()

_notice_adapter: TypeAdapter[UserCreatedNotice | UserDeletedNotice] = TypeAdapter(WebhookNotice)


class UserDirectory(Protocol):
    def exists(self, uid: str) -> bool: ...


@dataclass
class Dependencies:
    """What `handle` needs from the outside world; tests build it from moto clients."""

    webhook_secrets: Callable[[], list[str]]
    events: Any
    event_bus_name: str
    persistence: BasePersistenceLayer
    user_directory: Callable[[], UserDirectory | None] = lambda: None
    now: Callable[[], float] = field(default=time.time)


def read_secret_pair(provider: SecretsProvider, secret_arn: str) -> list[str]:
    """`{"current": ..., "previous": ...}` -> the keys a valid signature may use."""
    value = provider.get(secret_arn, transform="json", max_age=SECRET_MAX_AGE_SECONDS)
    if not isinstance(value, dict) or not value.get("current"):
        raise ConfigurationError("the webhook secret must be JSON with a non-empty 'current'")
    return [str(value["current"])] + ([str(value["previous"])] if value.get("previous") else [])


def _event_detail(notice: UserCreatedNotice | UserDeletedNotice) -> tuple[str, dict[str, Any]]:
    """The event for a notice, built through its model, so it is what the schema says."""
    digest = naming.user_digest(notice.uid)
    if isinstance(notice, UserCreatedNotice):
        return "UserSignedUp", UserSignedUpDetail(
            uid=notice.uid,
            user_digest=digest,
            email=notice.email,
            event_id=notice.event_id,
            created_at=iso_utc(notice.created_at),
        ).model_dump()
    return "UserDeleted", UserDeletedDetail(
        uid=notice.uid,
        user_digest=digest,
        event_id=notice.event_id,
        deleted_at=iso_utc(notice.deleted_at),
    ).model_dump()


def emit(events: Any, bus_name: str, detail_type: str, detail: dict[str, Any]) -> str:
    """Put one event on the custom bus; EmitFailed if EventBridge rejects it."""
    result = events.put_events(
        Entries=[
            {
                "EventBusName": bus_name,
                "Source": SOURCE,
                "DetailType": detail_type,
                "Detail": json.dumps(detail),
            }
        ]
    )
    entry = result["Entries"][0]
    if result.get("FailedEntryCount") or "EventId" not in entry:
        raise EmitFailed(f"EventBridge rejected the event: {entry.get('ErrorCode')}")
    return str(entry["EventId"])


def handle(
    raw_event: dict[str, Any], deps: Dependencies, context: LambdaContext | None = None
) -> dict[str, Any]:
    """Validate, then emit once per event_id. Every rejection returns before any write."""
    try:
        notice = _verified_notice(raw_event, deps)
        _check_with_firebase(notice, deps.user_directory)
        detail_type, detail = _event_detail(notice)
        _publish_once(detail_type, detail, deps, context)
    except http.HttpError as error:
        return error.to_response()
    metrics.add_metric(name=detail_type, unit=MetricUnit.Count, value=1)
    logger.info(
        "notice accepted", extra={"detail_type": detail_type, "user_digest": detail["user_digest"]}
    )
    return http.response(
        202,
        {
            "status": "accepted",
            "event_id": notice.event_id,
            "detail_type": detail_type,
            "user_digest": detail["user_digest"],
        },
    )


def _verified_notice(
    raw_event: dict[str, Any], deps: Dependencies
) -> UserCreatedNotice | UserDeletedNotice:
    """The notice, once the request is HTTP, small enough, signed by us and well formed."""
    event = http.parse_event(raw_event)
    body = http.body_bytes(event, MAX_BODY_BYTES)
    headers = {k.lower(): v for k, v in event.headers.items()}
    try:
        signing.verify(
            deps.webhook_secrets(),
            body,
            headers.get(signing.TIMESTAMP_HEADER.lower()),
            headers.get(signing.SIGNATURE_HEADER.lower()),
            now=deps.now(),
        )
    except signing.SignatureError as error:
        logger.warning("webhook signature rejected", extra={"reason": type(error).__name__})
        metrics.add_metric(name="WebhookRejected", unit=MetricUnit.Count, value=1)
        raise http.HttpError(401, str(error)) from None
    return http.validate_body(body, _notice_adapter.validate_python, "invalid notice")


def _check_with_firebase(
    notice: UserCreatedNotice | UserDeletedNotice, directory: Callable[[], UserDirectory | None]
) -> None:
    try:
        check_firebase(notice, directory)
    except FirebaseUserStillExists as error:
        logger.warning("notice contradicts Firebase", extra={"reason": type(error).__name__})
        raise http.HttpError(422, str(error)) from None
    except FirebaseUnavailable:
        logger.exception("Firebase lookup failed")
        raise http.HttpError(503, "Firebase could not be asked; retry later") from None


def _publish_once(
    detail_type: str, detail: dict[str, Any], deps: Dependencies, context: LambdaContext | None
) -> None:
    """Emit the event once per event_id (Powertools idempotency, keyed on the notice)."""
    config = IdempotencyConfig(
        event_key_jmespath="detail.event_id",
        payload_validation_jmespath="[detail_type, detail.uid]",
        expires_after_seconds=7 * 24 * 3600,
    )
    if context is not None:
        config.register_lambda_context(context)

    @idempotent_function(
        data_keyword_argument="notice", persistence_store=deps.persistence, config=config
    )
    def publish(notice: dict[str, Any]) -> dict[str, Any]:
        event_id = emit(deps.events, deps.event_bus_name, notice["detail_type"], notice["detail"])
        return {"bus_event_id": event_id}

    try:
        publish(notice={"detail_type": detail_type, "detail": detail})
    except IdempotencyValidationError:
        raise http.HttpError(409, "event_id was already used for a different notice") from None
    except IdempotencyAlreadyInProgressError:
        raise http.HttpError(409, "this event is being processed", {"retry-after": "2"}) from None
    except EmitFailed:
        logger.exception("could not emit")
        raise http.HttpError(503, "could not record the notice; retry later") from None


def check_firebase(
    notice: UserCreatedNotice | UserDeletedNotice, directory: Callable[[], UserDirectory | None]
) -> None:
    """A deletion is refused while Firebase still has the user (when a directory is configured).

    Signups are not checked here: the Firebase function runs before Firebase saves the user,
    so ProvisionUser's "Confirm Firebase user" step checks them a moment later.
    """
    if isinstance(notice, UserCreatedNotice):
        return
    users = directory()
    if users is None:
        logger.info("no Firebase service account configured: deletion not checked with Firebase")
        return
    if users.exists(notice.uid):
        raise FirebaseUserStillExists("this uid still exists in Firebase")


@functools.cache
def _dependencies() -> Dependencies:
    """Built on the first invocation, reused by later ones in the same execution environment."""
    secrets = SecretsProvider(boto3_client=boto3.client("secretsmanager"))
    webhook_arn = os.environ["WEBHOOK_SECRET_ARN"]
    service_account_arn = os.environ.get("FIREBASE_SERVICE_ACCOUNT_SECRET_ARN", "")

    @functools.cache
    def directory() -> UserDirectory | None:
        if not service_account_arn:
            return None
        raw = secrets.get(service_account_arn, max_age=3600)
        return FirebaseUserDirectory.from_service_account(str(raw))

    return Dependencies(
        webhook_secrets=lambda: read_secret_pair(secrets, webhook_arn),
        events=boto3.client("events"),
        event_bus_name=os.environ["EVENT_BUS_NAME"],
        persistence=DynamoDBPersistenceLayer(
            table_name=os.environ["IDEMPOTENCY_TABLE_NAME"],
            boto3_client=boto3.client("dynamodb"),
        ),
        user_directory=directory,
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    try:
        return handle(event, _dependencies(), context)
    except ConfigurationError:
        logger.exception("misconfigured")
        return http.response(500, {"message": "the webhook is misconfigured"})
