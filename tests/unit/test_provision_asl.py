"""ProvisionUser and DeprovisionUser: wiring checks, and the branches moto runs as AWS does.

The CreateStack wait loop needs the local cloud's definite-JSONPath fix; those branches are
covered by tests/integration/test_control_plane.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from fleet import naming
from moto import mock_aws

from sandboxctl.localcloud.fixes import _hooks, sfn_item_batcher, sfn_result_writer_input
from tests.unit import sfn_harness
from tests.unit.control_plane_helpers import capture_bus, create_registry_table, drain, sample_event

TABLE, BUS, BUCKET, STAGE = "registry", "bus", "data", "dev"
VALUES = {
    "RegistryTableName": TABLE,
    "EventBusName": BUS,
    "CloudFormationRoleArn": "arn:aws:iam::123456789012:role/cfn-service",
    "UserTemplateUrl": "https://templates.s3.us-east-1.amazonaws.com/templates/user-sandbox.yaml",
    "Stage": STAGE,
    "DataBucketName": BUCKET,
    "PermissionsBoundaryArn": "arn:aws:iam::123456789012:policy/boundary",
    "SandboxMemoryMb": "1024",
    "SandboxTimeoutSeconds": "60",
    "SandboxEphemeralStorageMb": "512",
    "SandboxReservedConcurrency": "0",
    "SubnetIds": "",
    "SecurityGroupIds": "",
    "S3VpcEndpointId": "",
    "DeletedUserData": "retain",
    "ManifestBucketName": "manifests",
    "ConfirmUserFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:confirm-user",
    "LiveImageUri": "123456789012.dkr.ecr.us-east-1.amazonaws.com/sandbox:live",
    "LambdaSharedRps": "15",
    "SignupBurst": "10",
}
MACHINES = {
    "provision_user": "ProvisionUserStateMachine",
    "deprovision_user": "DeprovisionUserStateMachine",
}
THROTTLING = {
    "dynamodb": "DynamoDB.ThrottlingException",
    "aws-sdk:lambda": "Lambda.TooManyRequestsException",
    "lambda:invoke": "Lambda.TooManyRequestsException",
    "events": "EventBridge.EventBridgeException",
    "aws-sdk:s3": "S3.S3Exception",
}


# ------------------------------------------------------------------ wiring (no execution)
def all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, state in states.items():
        yield name, state
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from all_states(processor["States"])


@pytest.mark.parametrize("name", MACHINES)
def test_every_placeholder_is_substituted_by_the_template_and_none_is_unused(name: str) -> None:
    resource = sfn_harness.template()["Resources"][MACHINES[name]]["Properties"]
    assert resource["DefinitionUri"] == f"statemachines/{name}.asl.json"
    assert sfn_harness.placeholders(sfn_harness.definition(name)) == set(
        resource["DefinitionSubstitutions"]
    )


@pytest.mark.parametrize("name", MACHINES)
def test_no_arn_or_account_is_typed_into_the_asl(name: str) -> None:
    text = sfn_harness.definition(name)
    assert "123456789012" not in text
    assert "arn:aws:iam" not in text and "arn:aws:s3" not in text


@pytest.mark.parametrize("name", MACHINES)
def test_every_aws_call_retries_throttling_with_full_jitter(name: str) -> None:
    states = json.loads(sfn_harness.definition(name))["States"]
    for state_name, state in all_states(states):
        resource = state.get("Resource", "")
        if state["Type"] != "Task":
            continue
        if resource.startswith("arn:aws:states:::aws-sdk:cloudformation:"):
            continue  # classified, not retried blindly: tests/unit/test_asl_error_handling.py
        service = next(k for k in THROTTLING if resource.startswith(f"arn:aws:states:::{k}"))
        retriers = [r for r in state.get("Retry", []) if THROTTLING[service] in r["ErrorEquals"]]
        assert retriers, f"{state_name} does not retry {THROTTLING[service]}"
        assert all(r["JitterStrategy"] == "FULL" and r["BackoffRate"] > 1 for r in retriers)


def test_create_stack_is_idempotent_tagged_and_limited_to_the_iam_allowed_types() -> None:
    states = json.loads(sfn_harness.definition("provision_user"))["States"]
    create = states["Create user stack"]
    params = create["Parameters"]
    assert params["ClientRequestToken.$"]
    assert params["RoleARN"] == "${CloudFormationRoleArn}"
    assert {t["Key"] for t in params["Tags"]} >= {
        "sandbox-fleet:user-digest",
        "sandbox-fleet:stage",
    }
    assert create["Catch"][0]["Next"] == "Find existing stack"
    assert create["Catch"][0]["ErrorEquals"] == ["CloudFormation.AlreadyExistsException"]
    policy = sfn_harness.template()["Resources"]["ProvisionUserStateMachine"]["Properties"]
    [statement] = [
        s for s in policy["Policies"][0]["Statement"] if s.get("Sid") == "CreateOnlySandboxStacks"
    ]
    allowed = statement["Condition"]["ForAllValues:StringEquals"]["cloudformation:ResourceTypes"]
    assert sorted(params["ResourceTypes"]) == sorted(allowed)
    user_template = sfn_harness.template("templates/user-sandbox.yaml")
    used = {r["Type"] for r in user_template["Resources"].values()}
    assert used <= set(allowed)
    declared = set(user_template["Parameters"])
    passed = {p["ParameterKey"] for p in params["Parameters"]}
    required = {k for k, v in user_template["Parameters"].items() if "Default" not in v}
    assert required <= passed <= declared


def test_wait_loops_have_a_deadline_and_capped_backoff() -> None:
    states = json.loads(sfn_harness.definition("provision_user"))["States"]
    for choice in ("Stack created?", "Stack deleted?"):
        deadlines = [c for c in states[choice]["Choices"] if "NumericGreaterThanEquals" in c]
        assert deadlines and deadlines[0]["Variable"] == "$.poll.elapsed_seconds"
    assert states["Wait creation"]["SecondsPath"] == "$.poll.wait_seconds"
    assert states["Cap backoff creation"]["Choices"][0]["NumericGreaterThan"] == 60


# ------------------------------------------------------------------ executions in moto
@dataclass
class Cloud:
    sfn: Any
    dynamodb: Any
    s3: Any
    sqs: Any
    queue: str
    cloudformation: Any
    machines: dict[str, str]

    def emitted(self) -> list[dict[str, Any]]:
        return drain(self.sqs, self.queue)

    def user(self, uid: str) -> dict[str, Any] | None:
        item = self.dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": f"USER#{uid}"}}).get("Item")
        if item is None:
            return None
        return {k: next(iter(v.values())) for k, v in item.items()}

    def put_user(self, uid: str, **attributes: Any) -> None:
        item: dict[str, dict[str, Any]] = {"pk": {"S": f"USER#{uid}"}, "uid": {"S": uid}}
        for key, value in attributes.items():
            item[key] = {"BOOL": value} if isinstance(value, bool) else {"S": str(value)}
        self.dynamodb.put_item(TableName=TABLE, Item=item)


@pytest.fixture
def cloud() -> Iterator[Cloud]:
    # DeprovisionUser's retain path is a batched Distributed Map writing its results to S3:
    # moto's grammar has no ItemBatcher and it evaluates ResultWriter paths against the wrong
    # input, so the local cloud's two fixes for those apply here too; given back afterwards,
    # so later mock_aws tests see moto as shipped.
    _hooks.remember_moto()
    for fix in (sfn_item_batcher, sfn_result_writer_input):
        fix.check()
        fix.apply()
    try:
        with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
            yield from _cloud()
    finally:
        _hooks.unpatch_all()


def _cloud() -> Iterator[Cloud]:
    dynamodb = boto3.client("dynamodb")
    create_registry_table(dynamodb, TABLE)
    sqs = boto3.client("sqs")
    queue = capture_bus(boto3.client("events"), sqs, BUS)
    s3 = boto3.client("s3")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    s3.create_bucket(Bucket=VALUES["ManifestBucketName"])
    sfn = boto3.client("stepfunctions")
    machines = {}
    for name in MACHINES:
        machines[name] = sfn_harness.create(sfn, name, VALUES)
    yield Cloud(sfn, dynamodb, s3, sqs, queue, boto3.client("cloudformation"), machines)


def signup(uid: str, created_at: str = "2026-01-31T12:00:00.000Z", email: Any = "u@example.com"):
    event = sample_event("user_signed_up.json")
    event["detail"] = {
        "uid": uid,
        "user_digest": naming.user_digest(uid),
        "email": email,
        "event_id": f"evt-{naming.user_digest(uid)}",
        "created_at": created_at,
    }
    return event


def deletion(uid: str, deleted_at: str = "2026-02-01T09:30:00.000Z") -> dict[str, Any]:
    event = sample_event("user_deleted.json")
    event["detail"] = {
        "uid": uid,
        "user_digest": naming.user_digest(uid),
        "event_id": f"del-{naming.user_digest(uid)}",
        "deleted_at": deleted_at,
    }
    return event


def test_signup_without_a_published_image_ends_failed_with_reason_and_event(cloud: Cloud) -> None:
    result = sfn_harness.run(cloud.sfn, cloud.machines["provision_user"], signup("alice"), "e1")

    assert result["status"] == "FAILED"
    assert result["error"] == "UserSandboxFailed"
    user = cloud.user("alice")
    assert user is not None
    assert user["status"] == "FAILED"
    assert user["last_error"].startswith("NoDesiredImage")
    assert user["stack_name"] == f"sbx-dev-{naming.user_digest('alice')}"
    assert user["claimed_by"] == result["executionArn"]
    [event] = cloud.emitted()
    assert event["detail-type"] == "UserSandboxFailed"
    assert event["detail"]["reason"] == user["last_error"]


def test_duplicate_signup_for_a_ready_user_changes_nothing(cloud: Cloud) -> None:
    cloud.put_user("alice", status="READY", function_arn="arn:fn", claimed_by="first")
    before = cloud.user("alice")

    result = sfn_harness.run(cloud.sfn, cloud.machines["provision_user"], signup("alice"), "dup")

    assert result["status"] == "SUCCEEDED"
    assert cloud.user("alice") == before
    assert cloud.emitted() == []


def test_concurrent_signup_while_another_execution_provisions_ends_cleanly(cloud: Cloud) -> None:
    cloud.put_user("alice", status="PROVISIONING", claimed_by="other-execution")
    result = sfn_harness.run(cloud.sfn, cloud.machines["provision_user"], signup("alice"), "c")
    assert result["status"] == "SUCCEEDED"
    assert cloud.user("alice")["claimed_by"] == "other-execution"  # type: ignore[index]


def test_a_failed_user_is_claimed_again_and_keeps_its_canary_flag(cloud: Cloud) -> None:
    cloud.put_user("alice", status="FAILED", claimed_by="old", last_error="boom", canary=True)
    result = sfn_harness.run(cloud.sfn, cloud.machines["provision_user"], signup("alice"), "r")
    user = cloud.user("alice")
    assert user is not None
    assert user["claimed_by"] == result["executionArn"]
    assert user["canary"] is True


def test_a_signup_older_than_the_deletion_does_not_resurrect_the_user(cloud: Cloud) -> None:
    cloud.put_user("alice", status="DELETED", deleted_at="2026-02-01T09:30:00.000Z")
    event = signup("alice", created_at="2026-01-31T12:00:00.000Z")
    result = sfn_harness.run(cloud.sfn, cloud.machines["provision_user"], event, "late")
    assert result["status"] == "SUCCEEDED"
    assert cloud.user("alice")["status"] == "DELETED"  # type: ignore[index]
    assert cloud.emitted() == []


def test_a_signup_newer_than_the_deletion_claims_the_user_again(cloud: Cloud) -> None:
    cloud.put_user("alice", status="DELETED", deleted_at="2026-02-01T09:30:00.000Z")
    event = signup("alice", created_at="2026-03-01T00:00:00.000Z")
    result = sfn_harness.run(cloud.sfn, cloud.machines["provision_user"], event, "again")
    assert cloud.user("alice")["claimed_by"] == result["executionArn"]  # type: ignore[index]


def test_a_user_without_email_is_registered_with_a_null_email(cloud: Cloud) -> None:
    sfn_harness.run(cloud.sfn, cloud.machines["provision_user"], signup("bob", email=None), "n")
    item = cloud.dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "USER#bob"}})["Item"]
    assert item["email"] == {"NULL": True}


def put_data(cloud: Cloud, uid: str, count: int) -> list[str]:
    keys = [f"{naming.user_prefix(naming.user_digest(uid))}file{i}.csv" for i in range(count)]
    for key in keys:
        cloud.s3.put_object(Bucket=BUCKET, Key=key, Body=b"a,b\n1,2\n")
    return keys


def tags(cloud: Cloud, key: str, version: str | None = None) -> dict[str, str]:
    extra = {"VersionId": version} if version else {}
    tag_set = cloud.s3.get_object_tagging(Bucket=BUCKET, Key=key, **extra)["TagSet"]
    return {t["Key"]: t["Value"] for t in tag_set}


def retained_version(cloud: Cloud, key: str) -> str | None:
    """The noncurrent version kept behind a delete marker, or None if the key is not hidden."""
    listing = cloud.s3.list_object_versions(Bucket=BUCKET, Prefix=key)
    markers = [m for m in listing.get("DeleteMarkers", []) if m["IsLatest"]]
    versions = listing.get("Versions", [])
    return versions[0]["VersionId"] if markers and len(versions) == 1 else None


def test_deletion_tombstones_tags_only_that_users_data_and_announces_it(cloud: Cloud) -> None:
    cloud.put_user("alice", status="READY", created_at="2026-01-31T12:00:00.000Z", canary=False)
    mine, theirs = put_data(cloud, "alice", 3), put_data(cloud, "Alice", 2)

    result = sfn_harness.run(cloud.sfn, cloud.machines["deprovision_user"], deletion("alice"), "d")

    assert result["status"] == "SUCCEEDED"
    user = cloud.user("alice")
    assert user is not None
    assert (user["status"], user["deleted_at"]) == ("DELETED", "2026-02-01T09:30:00.000Z")
    assert "function_arn" not in user
    # Hidden behind a delete marker, the tagged version noncurrent from now: the lifecycle rule
    # counts the retention from the deletion.
    for key in mine:
        version = retained_version(cloud, key)
        assert version is not None, key
        assert tags(cloud, key, version) == {"sandbox-fleet:deleted-user": "true"}
    assert all(tags(cloud, k) == {} and retained_version(cloud, k) is None for k in theirs)
    [event] = cloud.emitted()
    assert event["detail-type"] == "UserSandboxDeleted"
    assert event["detail"]["data_handling"] == "retain"


def test_a_large_prefix_is_retained_in_batches_and_the_map_writes_its_results(
    cloud: Cloud,
) -> None:
    cloud.put_user("bulk", status="READY", created_at="2026-01-31T12:00:00.000Z")
    mine = put_data(cloud, "bulk", 110)  # two batches: 100 keys and 10

    result = sfn_harness.run(cloud.sfn, cloud.machines["deprovision_user"], deletion("bulk"), "b")

    assert result["status"] == "SUCCEEDED"
    hidden = [key for key in mine if retained_version(cloud, key) is not None]
    assert len(hidden) == len(mine)
    assert all(
        tags(cloud, key, retained_version(cloud, key)) == {"sandbox-fleet:deleted-user": "true"}
        for key in mine[::11]
    )
    children = [
        e
        for e in cloud.sfn.get_execution_history(executionArn=result["executionArn"])["events"]
        if e["type"] == "MapRunStarted"
    ]
    assert len(children) == 1  # one Distributed Map run, not one state per object
    listing = cloud.s3.list_objects_v2(
        Bucket=VALUES["ManifestBucketName"], Prefix=f"deprovision/{naming.user_digest('bulk')}/"
    )
    assert [o["Key"].rsplit("/", 1)[-1] for o in listing.get("Contents", [])] == ["manifest.json"]


def test_deletion_removes_the_users_stack(cloud: Cloud) -> None:
    name = naming.stack_name(STAGE, naming.user_digest("alice"))
    body = {"Resources": {"Logs": {"Type": "AWS::Logs::LogGroup", "Properties": {}}}}
    cloud.cloudformation.create_stack(StackName=name, TemplateBody=json.dumps(body))
    cloud.put_user("alice", status="READY", created_at="2026-01-31T12:00:00.000Z")
    put_data(cloud, "alice", 1)

    result = sfn_harness.run(cloud.sfn, cloud.machines["deprovision_user"], deletion("alice"), "s")

    assert result["status"] == "SUCCEEDED"
    live = [
        s["StackName"]
        for s in cloud.cloudformation.list_stacks()["StackSummaries"]
        if s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert name not in live


def test_a_deletion_older_than_the_current_signup_changes_nothing(cloud: Cloud) -> None:
    cloud.put_user("alice", status="READY", created_at="2026-03-01T00:00:00.000Z")
    keys = put_data(cloud, "alice", 1)
    before = cloud.user("alice")

    result = sfn_harness.run(cloud.sfn, cloud.machines["deprovision_user"], deletion("alice"), "o")

    assert result["status"] == "SUCCEEDED"
    assert cloud.user("alice") == before
    assert tags(cloud, keys[0]) == {}
    assert cloud.emitted() == []


def test_deleting_an_unknown_user_leaves_a_tombstone_that_blocks_an_older_signup(
    cloud: Cloud,
) -> None:
    # Data uploaded before the stack ever existed. (An empty prefix needs the local cloud:
    # moto's listObjectsV2 ItemReader fails on a listing without Contents.)
    put_data(cloud, "ghost", 1)
    sfn_harness.run(cloud.sfn, cloud.machines["deprovision_user"], deletion("ghost"), "g")
    assert cloud.user("ghost")["status"] == "DELETED"  # type: ignore[index]
    late = signup("ghost", created_at="2026-01-01T00:00:00.000Z")
    sfn_harness.run(cloud.sfn, cloud.machines["provision_user"], late, "late-signup")
    assert cloud.user("ghost")["status"] == "DELETED"  # type: ignore[index]


def test_unconfirmed_firebase_users_are_retried_for_minutes_then_recorded_failed() -> None:
    states = json.loads(sfn_harness.definition("provision_user"))["States"]
    confirm = states["Confirm Firebase user"]
    [retry] = [r for r in confirm["Retry"] if "FirebaseUserNotFound" in r["ErrorEquals"]]
    waited = sum(
        min(retry["IntervalSeconds"] * retry["BackoffRate"] ** i, retry["MaxDelaySeconds"])
        for i in range(retry["MaxAttempts"])
    )
    assert waited >= 120  # Firebase saves the user right after the blocking function returns
    assert states[confirm["Catch"][0]["Next"]]["Next"] == "Record FAILED"
    assert states["Use desired image"]["Next"] == "Confirm Firebase user"
    assert confirm["Next"] == "Start attempt"
