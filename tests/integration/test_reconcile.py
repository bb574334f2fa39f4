"""Reconcile in the local cloud: it repairs what was broken by hand, and a dry run only reports."""

from __future__ import annotations

import json
import secrets
import uuid
from typing import Any

import pytest

from sandboxctl.localcloud.server import LocalCloud
from tests.integration.test_rollout import Fleet, make_fleet, new_uids, wait_for

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def fleet(local_cloud: LocalCloud) -> Fleet:
    return make_fleet(local_cloud)


def reconcile(fleet: Fleet, request: dict[str, Any], timeout: float = 300) -> dict[str, Any]:
    execution = fleet.sfn.start_execution(
        stateMachineArn=fleet.out["ReconcileStateMachineArn"],
        name=f"test-{uuid.uuid4()}",
        input=json.dumps(request),
    )["executionArn"]

    def finished() -> dict[str, Any] | None:
        described = fleet.sfn.describe_execution(executionArn=execution)
        return described if described["status"] != "RUNNING" else None

    return wait_for(finished, timeout, "the reconcile run")


def stack_exists(fleet: Fleet, uid: str) -> bool:
    try:
        stack = fleet.cfn.describe_stacks(StackName=fleet.names(uid))["Stacks"][0]
    except fleet.cfn.exceptions.ClientError as error:
        if "does not exist" in str(error):
            return False
        raise
    return stack["StackStatus"] != "DELETE_COMPLETE"


def test_a_bad_request_is_rejected_before_anything_is_written(fleet: Fleet) -> None:
    described = reconcile(fleet, {"dry_run": "yes"})
    assert described["status"] == "FAILED"
    assert described["error"] == "ReconcileRequestInvalid"
    reports = fleet.ddb.scan(
        TableName=fleet.table,
        FilterExpression="begins_with(pk, :r) AND execution_arn = :e",
        ExpressionAttributeValues={
            ":r": {"S": "RECONCILE#"},
            ":e": {"S": described["executionArn"]},
        },
    )["Items"]
    assert reports == []


@pytest.mark.timeout(1200)
def test_reconcile_repairs_a_deleted_stack_and_a_hand_changed_image(fleet: Fleet) -> None:
    lost, tampered, fine = new_uids("reconcile", 3)
    fleet.sign_up([lost, tampered, fine])
    fleet.wait_status([lost, tampered, fine], {"READY"}, 300)
    desired = fleet.desired()["image_digest"]["S"]
    # What someone might deploy by hand: an image from another repository (a push there starts
    # no rollout), not the desired one.
    elsewhere = f"hand-made-{secrets.token_hex(3)}"
    elsewhere_uri = fleet.ecr.create_repository(repositoryName=elsewhere)["repository"][
        "repositoryUri"
    ]
    stray = fleet.push(f"stray-{uuid.uuid4()}", repo=elsewhere)

    fleet.cfn.delete_stack(StackName=fleet.names(lost))
    wait_for(lambda: (not stack_exists(fleet, lost)) or None, 120, "the hand deletion")
    fleet.lam.update_function_code(
        FunctionName=fleet.names(tampered), ImageUri=f"{elsewhere_uri}@{stray}"
    )
    wait_for(
        lambda: fleet.function_digest(tampered) == stray or None, 60, "the hand-made image change"
    )

    dry = reconcile(fleet, {"dry_run": True})
    assert dry["status"] == "SUCCEEDED", dry.get("cause")
    plan = json.loads(dry["output"])
    assert plan["dry_run"] is True and plan["planned"].get("repair", 0) >= 1
    assert not stack_exists(fleet, lost), "a dry run must change nothing"
    assert fleet.function_digest(tampered) == stray

    run = reconcile(fleet, {})
    assert run["status"] == "SUCCEEDED", run.get("cause")
    report = json.loads(run["output"])
    assert report["results"].get("repair_done", 0) >= 1, report
    assert report["results"].get("check_image_fixed", 0) >= 1, report

    fleet.wait_status([lost], {"READY"}, 300)
    assert stack_exists(fleet, lost)
    assert fleet.record(lost)["image_digest"] == desired
    assert fleet.function_digest(lost) == desired
    assert fleet.function_digest(tampered) == desired
    assert fleet.stack_image(tampered) == fleet.live_uri
    assert fleet.record(tampered)["image_digest"] == desired
    assert fleet.function_digest(fine) == desired


def limiter_tat(fleet: Fleet) -> float:
    item = fleet.ddb.get_item(
        TableName=fleet.table,
        Key={"pk": {"S": "LIMITER#lambda-control-plane"}},
        ConsistentRead=True,
    ).get("Item", {})
    return float(item["tat"]["N"]) if "tat" in item else 0.0


@pytest.mark.timeout(900)
def test_a_repair_draws_its_token_from_the_account_wide_limiter(fleet: Fleet) -> None:
    [tampered] = new_uids("limited", 1)
    fleet.sign_up([tampered])
    fleet.wait_status([tampered], {"READY"}, 300)
    desired = fleet.desired()["image_digest"]["S"]
    elsewhere = f"hand-made-{secrets.token_hex(3)}"
    elsewhere_uri = fleet.ecr.create_repository(repositoryName=elsewhere)["repository"][
        "repositoryUri"
    ]
    stray = fleet.push(f"stray-{uuid.uuid4()}", repo=elsewhere)
    fleet.lam.update_function_code(
        FunctionName=fleet.names(tampered), ImageUri=f"{elsewhere_uri}@{stray}"
    )
    wait_for(
        lambda: fleet.function_digest(tampered) == stray or None, 60, "the hand-made image change"
    )
    # Nothing else draws now (no signup in flight, no rollout): only the repair can move it.
    before = limiter_tat(fleet)

    run = reconcile(fleet, {})

    assert run["status"] == "SUCCEEDED", run.get("cause")
    assert json.loads(run["output"])["results"].get("check_image_fixed", 0) >= 1
    assert fleet.function_digest(tampered) == desired
    assert limiter_tat(fleet) > before, "the repair's UpdateFunctionCode took no token"
