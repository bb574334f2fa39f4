"""Reconcile planning: what the reconciler decides for each mismatch; inventories are paged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest
import reconcile_plan
from fleet import naming
from fleet.models import iso_utc
from fleet.reconcile import (
    MAX_RECONCILE_RETRIES,
    Inventory,
    PlanRequest,
    firebase_users,
    plan,
    retry_due,
    take_inventory,
    write_plan,
)
from moto import mock_aws
from pydantic import ValidationError

from tests.unit.control_plane_helpers import create_registry_table

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)
STAGE = "test"


def user(uid: str, status: str, minutes_ago: int = 5, **extra: Any) -> dict[str, Any]:
    return {
        "pk": f"USER#{uid}",
        "uid": uid,
        "user_digest": naming.user_digest(uid),
        "status": status,
        "updated_at": iso_utc(NOW - timedelta(minutes=minutes_ago)),
        **extra,
    }


def stack_of(uid: str) -> str:
    return naming.resource_name(STAGE, naming.user_digest(uid))


def inventory(
    users: list[dict[str, Any]], stacks: dict[str, str], firebase: Any = None
) -> Inventory:
    return Inventory(
        users=users,
        stacks=stacks,
        firebase=firebase,
        desired={"image_digest": "sha256:" + "2" * 64, "image_uri": "repo@sha256:" + "2" * 64},
        rollout_status="COMPLETED",
        now=NOW,
    )


def actions_by_uid(inv: Inventory) -> dict[str, str]:
    actions, _ = plan(inv, STAGE, "run-1")
    return {a.uid: a.action for a in actions}


def test_each_mismatch_gets_its_action() -> None:
    users = [
        user("ok", "READY"),
        user("stackless", "READY"),
        user("failed-long-ago", "FAILED", minutes_ago=60),
        user("failed-just-now", "FAILED", minutes_ago=1),
        user("deleting-stuck", "DELETING", minutes_ago=120),
        user("deleting-now", "DELETING", minutes_ago=1),
        user("provisioning", "PROVISIONING", minutes_ago=1),
    ]
    stacks = {stack_of("ok"): "UPDATE_COMPLETE", stack_of("provisioning"): "CREATE_IN_PROGRESS"}
    assert actions_by_uid(inventory(users, stacks)) == {
        "ok": "check_image",
        "stackless": "repair",
        "failed-long-ago": "retry",
        "deleting-stuck": "deprovision",
    }


def test_firebase_decides_who_exists_when_configured() -> None:
    users = [user("kept", "READY"), user("gone", "READY")]
    stacks = {stack_of("kept"): "CREATE_COMPLETE", stack_of("gone"): "CREATE_COMPLETE"}
    firebase = {"kept": "kept@example.com", "new": "new@example.com"}
    actions, _ = plan(inventory(users, stacks, firebase), STAGE, "run-1")
    by_uid = {a.uid: a for a in actions}
    assert {uid: a.action for uid, a in by_uid.items()} == {
        "kept": "check_image",
        "gone": "deprovision",
        "new": "provision",
    }
    assert by_uid["new"].email == "new@example.com"
    assert by_uid["new"].user_digest == naming.user_digest("new")
    assert by_uid["new"].event_id == f"reconcile-run-1-{naming.user_digest('new')}"


def test_without_firebase_nobody_is_deprovisioned_or_invented() -> None:
    users = [user("solo", "READY")]
    assert actions_by_uid(inventory(users, {stack_of("solo"): "CREATE_COMPLETE"})) == {
        "solo": "check_image"
    }


def test_unknown_stacks_and_broken_stacks_are_reported_not_touched() -> None:
    users = [user("rolled-back", "READY")]
    stacks = {
        stack_of("rolled-back"): "UPDATE_ROLLBACK_FAILED",
        "sbx-test-orphanorphanorphanorpha": "CREATE_COMPLETE",
    }
    actions, findings = plan(inventory(users, stacks), STAGE, "run-1")
    assert actions == []
    assert findings["orphan_stacks"] == ["sbx-test-orphanorphanorphanorpha"]
    assert any("UPDATE_ROLLBACK_FAILED" in s for s in findings["stuck"])


def test_failed_users_back_off_exponentially_and_stop_after_the_cap() -> None:
    assert retry_due(user("a", "FAILED", minutes_ago=16), NOW)
    assert not retry_due(user("a", "FAILED", minutes_ago=16, reconcile_retries=1), NOW)
    assert retry_due(user("a", "FAILED", minutes_ago=31, reconcile_retries=1), NOW)
    assert not retry_due(user("a", "FAILED", minutes_ago=60 * 23, reconcile_retries=7), NOW)
    assert retry_due(user("a", "FAILED", minutes_ago=60 * 24, reconcile_retries=7), NOW)
    assert not retry_due(
        user("a", "FAILED", minutes_ago=60 * 48, reconcile_retries=MAX_RECONCILE_RETRIES), NOW
    )


def test_firebase_listing_reads_every_page() -> None:
    @dataclass
    class FirebaseUser:
        uid: str
        email: str | None

    pages = [[FirebaseUser(f"u{i}", None) for i in range(1000)], [FirebaseUser("last", "l@x.io")]]
    listed = firebase_users(lambda: (u for page in pages for u in page))
    assert len(listed) == 1001 and listed["last"] == "l@x.io"


# ---------------------------------------------------------------------- against moto
@pytest.fixture
def aws() -> Iterator[dict[str, Any]]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_registry_table(dynamodb, "registry")
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket="plans")
        yield {"dynamodb": dynamodb, "s3": s3, "cloudformation": boto3.client("cloudformation")}


def put(dynamodb: Any, item: dict[str, Any]) -> None:
    dynamodb.put_item(
        TableName="registry",
        Item={k: ({"S": v} if isinstance(v, str) else {"N": str(v)}) for k, v in item.items()},
    )


def test_inventory_and_plan_file_from_the_registry_and_stacks(aws: dict[str, Any]) -> None:
    put(
        aws["dynamodb"],
        {
            "pk": "CONFIG#image",
            "image_digest": "sha256:" + "3" * 64,
            "image_uri": "r@sha256:" + "3" * 64,
            "rollout_id": "3" * 64,
        },
    )
    put(aws["dynamodb"], {"pk": "ROLLOUT#" + "3" * 64, "status": "RUNNING"})
    put(aws["dynamodb"], user("has-stack", "READY"))
    put(aws["dynamodb"], user("no-stack", "READY"))
    put(aws["dynamodb"], user("old", "DELETED"))
    template = {"Resources": {"Topic": {"Type": "AWS::SNS::Topic"}}}
    aws["cloudformation"].create_stack(
        StackName=stack_of("has-stack"), TemplateBody=json.dumps(template)
    )
    aws["cloudformation"].create_stack(
        StackName="someone-elses-stack", TemplateBody=json.dumps(template)
    )

    inv = take_inventory(
        dynamodb=aws["dynamodb"],
        cloudformation=aws["cloudformation"],
        table_name="registry",
        stage=STAGE,
        now=NOW,
        list_firebase_users=None,
    )
    assert sorted(u["uid"] for u in inv.users) == ["has-stack", "no-stack"]
    assert set(inv.stacks) == {stack_of("has-stack")}
    result = write_plan(
        PlanRequest(reconcile_id="run-2"), inventory=inv, s3=aws["s3"], bucket="plans", stage=STAGE
    )
    assert result.rollout_running is True
    assert result.counts == {"check_image": 1, "repair": 1}
    body = json.loads(aws["s3"].get_object(Bucket="plans", Key=result.key)["Body"].read())
    assert {(a["uid"], a["action"]) for a in body} == {
        ("has-stack", "check_image"),
        ("no-stack", "repair"),
    }


@pytest.mark.parametrize(
    "event", [{}, {"reconcile_id": "bad id!"}, {"reconcile_id": "ok", "dry_run": "yes"}]
)
def test_handler_rejects_bad_requests_and_writes_nothing(
    aws: dict[str, Any], event: dict[str, Any], lambda_context: Any, monkeypatch: Any
) -> None:
    monkeypatch.setenv("REGISTRY_TABLE_NAME", "registry")
    monkeypatch.setenv("MANIFEST_BUCKET_NAME", "plans")
    monkeypatch.setenv("STAGE", STAGE)
    with pytest.raises(ValidationError):
        reconcile_plan.lambda_handler(event, lambda_context)
    assert aws["s3"].list_objects_v2(Bucket="plans").get("KeyCount", 0) == 0
