"""The signup webhook: what is accepted, what is rejected, and that a rejection leaves no trace."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
import signup_webhook
from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from fleet import naming, signing
from fleet.errors import FirebaseUnavailable
from moto import mock_aws

from tests.unit.control_plane_helpers import capture_bus, drain, http_event

CURRENT, PREVIOUS = "current-key-" + "a" * 40, "previous-key-" + "b" * 40
BUS = "fleet-bus"
IDEMPOTENCY_TABLE = "idempotency"
NOW = 1_769_860_800.0


@dataclass
class World:
    deps: signup_webhook.Dependencies
    sqs: Any
    queue_url: str
    dynamodb: Any
    secret_arn: str

    def emitted(self) -> list[dict[str, Any]]:
        return drain(self.sqs, self.queue_url)

    def idempotency_items(self) -> list[dict[str, Any]]:
        return self.dynamodb.scan(TableName=IDEMPOTENCY_TABLE)["Items"]


class FakeDirectory:
    """Stands in for Firebase in handler tests (the firebase-admin adapter has its own tests)."""

    def __init__(self, uids: set[str], unavailable: bool = False) -> None:
        self.uids, self.unavailable, self.asked = uids, unavailable, 0

    def exists(self, uid: str) -> bool:
        self.asked += 1
        if self.unavailable:
            raise FirebaseUnavailable("timeout")
        return uid in self.uids


@pytest.fixture
def world() -> Iterator[World]:
    with mock_aws():
        sm = boto3.client("secretsmanager")
        arn = sm.create_secret(
            Name="webhook", SecretString=json.dumps({"current": CURRENT, "previous": PREVIOUS})
        )["ARN"]
        dynamodb = boto3.client("dynamodb")
        dynamodb.create_table(
            TableName=IDEMPOTENCY_TABLE,
            BillingMode="PAY_PER_REQUEST",
            AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
            KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        )
        events, sqs = boto3.client("events"), boto3.client("sqs")
        queue_url = capture_bus(events, sqs, BUS)
        provider = SecretsProvider(boto3_client=sm)
        deps = signup_webhook.Dependencies(
            webhook_secrets=lambda: signup_webhook.read_secret_pair(provider, arn),
            events=events,
            event_bus_name=BUS,
            persistence=DynamoDBPersistenceLayer(
                table_name=IDEMPOTENCY_TABLE, boto3_client=dynamodb
            ),
            now=lambda: NOW,
        )
        yield World(deps, sqs, queue_url, dynamodb, arn)


def notice(**overrides: Any) -> dict[str, Any]:
    body = {
        "type": "user.created",
        "uid": "alice",
        "email": "alice@example.com",
        "event_id": "evt-0001",
        "created_at": "2026-01-31T12:00:00Z",
    }
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def signed(body: dict[str, Any] | bytes, key: str = CURRENT, ts: float = NOW) -> dict[str, Any]:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return http_event(raw.decode("utf-8", "replace"), signing.sign(key, raw, int(ts)))


def call(world: World, event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
    result = signup_webhook.handle(event, world.deps)
    return result["statusCode"], json.loads(result["body"])


def assert_no_trace(world: World) -> None:
    assert world.emitted() == []
    assert world.idempotency_items() == []


def test_signed_signup_emits_one_user_signed_up_with_the_digest(world: World) -> None:
    status, body = call(world, signed(notice()))

    assert status == 202
    assert body["user_digest"] == naming.user_digest("alice")
    [event] = world.emitted()
    assert event["source"] == "sandbox-fleet"
    assert event["detail-type"] == "UserSignedUp"
    assert event["detail"] == {
        "uid": "alice",
        "user_digest": naming.user_digest("alice"),
        "email": "alice@example.com",
        "event_id": "evt-0001",
        "created_at": "2026-01-31T12:00:00.000Z",
    }


def test_the_same_notice_five_times_emits_once(world: World) -> None:
    statuses = [call(world, signed(notice()))[0] for _ in range(5)]

    assert statuses == [202] * 5
    assert len(world.emitted()) == 1


def test_signature_from_the_previous_secret_is_accepted_during_rotation(world: World) -> None:
    assert call(world, signed(notice(), key=PREVIOUS))[0] == 202
    assert len(world.emitted()) == 1


def test_deletion_notice_emits_user_deleted(world: World) -> None:
    body = {
        "type": "user.deleted",
        "uid": "Alice",
        "event_id": "evt-del-1",
        "deleted_at": "2026-02-01T09:30:00+01:00",
    }
    assert call(world, signed(body))[0] == 202
    [event] = world.emitted()
    assert event["detail-type"] == "UserDeleted"
    assert event["detail"] == {
        "uid": "Alice",
        "user_digest": naming.user_digest("Alice"),
        "event_id": "evt-del-1",
        "deleted_at": "2026-02-01T08:30:00.000Z",
    }


def test_base64_encoded_bodies_are_verified_over_the_raw_bytes(world: World) -> None:
    raw = json.dumps(notice(uid="zoë/../ünïcode")).encode()
    event = http_event(raw, signing.sign(CURRENT, raw, int(NOW)))
    assert call(world, event)[0] == 202
    assert world.emitted()[0]["detail"]["uid"] == "zoë/../ünïcode"


@pytest.mark.parametrize(
    "tamper",
    [
        pytest.param(lambda e: e["headers"].update({"x-signature": "v1=" + "0" * 64}), id="wrong"),
        pytest.param(lambda e: e["headers"].pop("x-signature"), id="missing-signature"),
        pytest.param(lambda e: e["headers"].pop("x-signature-timestamp"), id="missing-timestamp"),
        pytest.param(lambda e: e["headers"].update({"x-signature-timestamp": "soon"}), id="ts-nan"),
        pytest.param(
            lambda e: e["headers"].update({"x-signature": e["headers"]["x-signature"][3:]}),
            id="no-scheme",
        ),
        pytest.param(
            lambda e: e.update({"body": e["body"].replace("alice", "mallory")}), id="body-changed"
        ),
    ],
)
def test_bad_signatures_get_401_and_leave_no_trace(world: World, tamper: Any) -> None:
    event = signed(notice())
    tamper(event)
    assert call(world, event)[0] == 401
    assert_no_trace(world)


def test_signature_with_an_unknown_key_gets_401(world: World) -> None:
    assert call(world, signed(notice(), key="not-the-secret"))[0] == 401
    assert_no_trace(world)


@pytest.mark.parametrize("skew", [-301, 301, -3600])
def test_timestamps_outside_five_minutes_get_401(world: World, skew: int) -> None:
    assert call(world, signed(notice(), ts=NOW + skew))[0] == 401
    assert_no_trace(world)


def test_timestamps_inside_five_minutes_are_accepted(world: World) -> None:
    assert call(world, signed(notice(event_id="a"), ts=NOW - 299))[0] == 202
    assert call(world, signed(notice(event_id="b"), ts=NOW + 299))[0] == 202


def test_body_over_16_kib_gets_413_even_when_signed(world: World) -> None:
    big = json.dumps(notice(email="a@" + "b" * 17_000 + ".example")).encode()
    status, _ = call(world, signed(big))
    assert status == 413
    assert_no_trace(world)


@pytest.mark.parametrize("raw", [b"{not json", b"[1, 2]", b"\xff\xfe"])
def test_malformed_bodies_get_400(world: World, raw: bytes) -> None:
    event = http_event(raw, signing.sign(CURRENT, raw, int(NOW)))
    assert call(world, event)[0] == 400
    assert_no_trace(world)


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(notice(uid=""), id="empty-uid"),
        pytest.param(notice(uid="x" * 129), id="uid-too-long"),
        pytest.param(notice(event_id=None), id="no-event-id"),
        pytest.param(notice(created_at="2026-01-31T12:00:00"), id="naive-time"),
        pytest.param(notice(created_at="yesterday"), id="bad-time"),
        pytest.param(notice(type="user.renamed"), id="unknown-type"),
        pytest.param(notice(role="admin"), id="extra-field"),
        pytest.param(notice(email="not-an-email"), id="bad-email"),
        pytest.param({"type": "user.deleted", "uid": "a", "event_id": "e"}, id="no-deleted-at"),
    ],
)
def test_invalid_notices_get_422_naming_the_field(world: World, body: dict[str, Any]) -> None:
    status, response = call(world, signed(body))
    assert status == 422
    assert response["errors"]
    assert_no_trace(world)


def test_128_character_uid_is_accepted(world: World) -> None:
    assert call(world, signed(notice(uid="u" * 128)))[0] == 202


def test_reusing_an_event_id_for_another_user_gets_409(world: World) -> None:
    assert call(world, signed(notice(uid="alice")))[0] == 202
    assert call(world, signed(notice(uid="bob")))[0] == 409
    assert [e["detail"]["uid"] for e in world.emitted()] == ["alice"]


def test_signups_are_not_checked_against_firebase_here(world: World) -> None:
    # The blocking Firebase function reports the user before Firebase saves it; ProvisionUser
    # confirms the user a moment later (confirm_user.py).
    directory = FakeDirectory(set())
    world.deps.user_directory = lambda: directory
    assert call(world, signed(notice(uid="alice")))[0] == 202
    assert directory.asked == 0


def test_deletion_of_a_user_firebase_no_longer_has_is_accepted(world: World) -> None:
    directory = FakeDirectory({"bob"})
    world.deps.user_directory = lambda: directory
    body = {
        "type": "user.deleted",
        "uid": "alice",
        "event_id": "d",
        "deleted_at": "2026-02-01T00:00:00Z",
    }
    assert call(world, signed(body))[0] == 202
    assert directory.asked == 1


def test_deletion_of_a_user_firebase_still_has_is_rejected(world: World) -> None:
    world.deps.user_directory = lambda: FakeDirectory({"alice"})
    body = {
        "type": "user.deleted",
        "uid": "alice",
        "event_id": "d",
        "deleted_at": "2026-02-01T00:00:00Z",
    }
    assert call(world, signed(body))[0] == 422
    assert_no_trace(world)


def test_firebase_unavailable_gets_503_and_a_retry_succeeds(world: World) -> None:
    body = {
        "type": "user.deleted",
        "uid": "alice",
        "event_id": "d",
        "deleted_at": "2026-02-01T00:00:00Z",
    }
    world.deps.user_directory = lambda: FakeDirectory(set(), unavailable=True)
    assert call(world, signed(body))[0] == 503
    assert_no_trace(world)
    world.deps.user_directory = lambda: FakeDirectory(set())
    assert call(world, signed(body))[0] == 202


def test_eventbridge_failure_gets_503_and_the_retry_still_emits(world: World) -> None:
    real = world.deps.events

    class Refusing:
        def put_events(self, **_: Any) -> dict[str, Any]:
            return {"FailedEntryCount": 1, "Entries": [{"ErrorCode": "ThrottlingException"}]}

    world.deps.events = Refusing()
    assert call(world, signed(notice()))[0] == 503
    assert world.idempotency_items() == []  # the in-progress record was released
    world.deps.events = real
    assert call(world, signed(notice()))[0] == 202
    assert len(world.emitted()) == 1


def test_lambda_handler_reads_its_configuration_from_the_environment(
    world: World, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", world.secret_arn)
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", IDEMPOTENCY_TABLE)
    monkeypatch.delenv("FIREBASE_SERVICE_ACCOUNT_SECRET_ARN", raising=False)
    signup_webhook._dependencies.cache_clear()
    try:
        event = signed(notice(), ts=time.time())
        result = signup_webhook.lambda_handler(event, lambda_context)
    finally:
        signup_webhook._dependencies.cache_clear()
    assert result["statusCode"] == 202
    assert len(world.emitted()) == 1


def test_a_secret_without_current_key_is_a_500_not_an_open_door(
    world: World, monkeypatch: pytest.MonkeyPatch, lambda_context: Any
) -> None:
    boto3.client("secretsmanager").put_secret_value(
        SecretId=world.secret_arn, SecretString=json.dumps({"previous": ""})
    )
    monkeypatch.setenv("WEBHOOK_SECRET_ARN", world.secret_arn)
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    monkeypatch.setenv("IDEMPOTENCY_TABLE_NAME", IDEMPOTENCY_TABLE)
    raw = json.dumps(notice()).encode()
    ts = str(int(time.time()))
    forged = {"X-Signature-Timestamp": ts, "X-Signature": "v1=" + signing.compute("", ts, raw)}
    signup_webhook._dependencies.cache_clear()
    try:
        result = signup_webhook.lambda_handler(http_event(raw.decode(), forged), lambda_context)
    finally:
        signup_webhook._dependencies.cache_clear()
    assert result["statusCode"] == 500
    assert_no_trace(world)
