"""The rollout manifest Lambda: READY users paged out of the registry into a wave's S3 manifest."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import rollout_manifest
from fleet import naming
from fleet.rollout import ManifestError, ManifestRequest, manifest_key, write_manifest
from moto import mock_aws
from pydantic import ValidationError

from tests.unit.control_plane_helpers import create_registry_table

TABLE = "registry"
BUCKET = "rollout-manifests"
ROLLOUT = "a" * 64


@pytest.fixture
def aws() -> Iterator[tuple[Any, Any]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_registry_table(dynamodb, TABLE)
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        yield dynamodb, s3


def add_user(dynamodb: Any, uid: str, status: str = "READY", canary: bool = False) -> None:
    digest = naming.user_digest(uid)
    item: dict[str, Any] = {
        "pk": {"S": f"USER#{uid}"},
        "uid": {"S": uid},
        "user_digest": {"S": digest},
        "status": {"S": status},
        "stack_name": {"S": naming.resource_name("test", digest)},
        "function_name": {"S": naming.resource_name("test", digest)},
        "image_digest": {"S": "sha256:" + "1" * 64},
    }
    if canary:
        item["canary"] = {"BOOL": True}
    dynamodb.put_item(TableName=TABLE, Item=item)


def read(s3: Any, key: str) -> list[dict[str, Any]]:
    return json.loads(s3.get_object(Bucket=BUCKET, Key=key)["Body"].read())


def run(dynamodb: Any, s3: Any, wave: str, canary_size: int = 2) -> Any:
    return write_manifest(
        ManifestRequest(rollout_id=ROLLOUT, wave=wave),  # type: ignore[arg-type]
        dynamodb=dynamodb,
        s3=s3,
        table_name=TABLE,
        bucket=BUCKET,
        stage="test",
        canary_size=canary_size,
    )


def test_canary_is_the_flagged_users_and_rest_is_everyone_else_ready(aws: tuple[Any, Any]) -> None:
    dynamodb, s3 = aws
    for uid in ["u1", "u2", "u3", "u4"]:
        add_user(dynamodb, uid, canary=uid == "u3")
    add_user(dynamodb, "leaving", status="DELETING")
    add_user(dynamodb, "broken", status="FAILED")

    canary = run(dynamodb, s3, "canary")
    assert [e["uid"] for e in read(s3, canary.key)] == ["u3"]
    assert canary.count == 1 and canary.key == manifest_key(ROLLOUT, "canary")

    add_user(dynamodb, "late")  # became READY after the canary wave started
    rest = run(dynamodb, s3, "rest")
    assert sorted(e["uid"] for e in read(s3, rest.key)) == ["late", "u1", "u2", "u4"]
    entry = next(e for e in read(s3, rest.key) if e["uid"] == "u1")
    assert entry["stack_name"] == naming.resource_name("test", naming.user_digest("u1"))


def test_without_flagged_users_the_canary_is_the_first_n_in_key_order(
    aws: tuple[Any, Any],
) -> None:
    dynamodb, s3 = aws
    for uid in ["c", "a", "d", "b"]:
        add_user(dynamodb, uid)
    result = run(dynamodb, s3, "canary", canary_size=2)
    assert [e["uid"] for e in read(s3, result.key)] == ["a", "b"]


def test_pages_through_more_users_than_one_query_page(aws: tuple[Any, Any]) -> None:
    dynamodb, s3 = aws
    padding = "x" * 3000  # ~3 KB per item: 600 users are more than one 1 MB query page
    for i in range(600):
        add_user(dynamodb, f"user-{i:04d}")
        dynamodb.update_item(
            TableName=TABLE,
            Key={"pk": {"S": f"USER#user-{i:04d}"}},
            UpdateExpression="SET padding = :p",
            ExpressionAttributeValues={":p": {"S": padding}},
        )
    run(dynamodb, s3, "canary", canary_size=1)
    rest = run(dynamodb, s3, "rest")
    assert rest.count == 599


def test_rest_without_a_canary_manifest_fails_loudly(aws: tuple[Any, Any]) -> None:
    dynamodb, s3 = aws
    add_user(dynamodb, "u1")
    with pytest.raises(ManifestError, match="cannot read manifest"):
        run(dynamodb, s3, "rest")


@pytest.mark.parametrize(
    "event",
    [
        {"rollout_id": "not-a-digest", "wave": "canary"},
        {"rollout_id": "a" * 64, "wave": "everyone"},
        {"rollout_id": "a" * 64, "wave": "canary", "extra": 1},
        {},
    ],
)
def test_handler_rejects_bad_requests_and_writes_nothing(
    aws: tuple[Any, Any], event: dict[str, Any], lambda_context: Any, monkeypatch: Any
) -> None:
    dynamodb, s3 = aws
    add_user(dynamodb, "u1")
    monkeypatch.setenv("REGISTRY_TABLE_NAME", TABLE)
    monkeypatch.setenv("MANIFEST_BUCKET_NAME", BUCKET)
    monkeypatch.setenv("STAGE", "test")
    with pytest.raises(ValidationError):
        rollout_manifest.lambda_handler(event, lambda_context)
    assert s3.list_objects_v2(Bucket=BUCKET).get("KeyCount", 0) == 0


def test_handler_writes_the_canary_manifest(
    aws: tuple[Any, Any], lambda_context: Any, monkeypatch: Any
) -> None:
    dynamodb, s3 = aws
    add_user(dynamodb, "u1")
    monkeypatch.setenv("REGISTRY_TABLE_NAME", TABLE)
    monkeypatch.setenv("MANIFEST_BUCKET_NAME", BUCKET)
    monkeypatch.setenv("STAGE", "test")
    monkeypatch.setenv("CANARY_SIZE", "5")
    rollout_manifest._clients.cache_clear()
    result = rollout_manifest.lambda_handler(
        {"rollout_id": ROLLOUT, "wave": "canary"}, lambda_context
    )
    assert result == {"bucket": BUCKET, "key": manifest_key(ROLLOUT, "canary"), "count": 1}
    assert [e["uid"] for e in read(s3, result["key"])] == ["u1"]
