"""The control plane in the local cloud: real template, ASL and functions, IAM enforced.

Signup (signed webhook) -> ProvisionUser -> the user's own stack -> READY; duplicates, awkward
UIDs, a failing stack, deletion, racing signup/deletion, the run API, and tenant isolation with
a user's own (stolen) credentials. Every test creates its own users.
"""

from __future__ import annotations

import json
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest
import requests
from botocore.exceptions import ClientError
from fleet import naming, signing
from fleet.models import iso_utc

from sandboxctl.controlplane import ControlPlane
from sandboxctl.localcloud import faults
from sandboxctl.localcloud.faults import FaultProfile
from sandboxctl.localcloud.server import LocalCloud
from tests.integration.localcloud_support import (
    ensure_desired_image,
    put_signups,
    registry_entry,
)
from tests.integration.localcloud_support import wait_for_value as wait_for
from tests.unit.control_plane_helpers import http_event

pytestmark = pytest.mark.integration

T = TypeVar("T")
FINAL = {"READY", "FAILED"}


def new_uid(label: str = "user") -> str:
    return f"{label}-{uuid.uuid4().hex[:8]}"


class Plane:
    """The deployed control plane, seen through admin clients and sandboxctl's ControlPlane."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.out = cloud.outputs
        self.cp = ControlPlane.from_local_cloud(cloud)
        self.ddb = cloud.client("dynamodb")
        self.cfn = cloud.client("cloudformation")
        self.sfn = cloud.client("stepfunctions")
        self.lam = cloud.client("lambda")
        self.s3 = cloud.client("s3")
        self.iam = cloud.client("iam")
        self.events = cloud.client("events")
        self.stage = self.out["Stage"]

    def name(self, uid: str) -> str:
        return naming.resource_name(self.stage, naming.user_digest(uid))

    def user(self, uid: str) -> dict[str, Any] | None:
        return registry_entry(self.ddb, self.out["RegistryTableName"], f"USER#{uid}")

    def wait_user(self, uid: str, statuses: set[str], timeout: float = 120) -> dict[str, Any]:
        def probe() -> dict[str, Any] | None:
            user = self.user(uid)
            return user if user and user["status"] in statuses else None

        return wait_for(probe, timeout, f"{uid} to reach {statuses}")

    def emit_signup(self, uids: list[str], created_at: str | None = None) -> None:
        """UserSignedUp exactly as the webhook emits it (for bulk and duplicate deliveries)."""
        put_signups(self.events, self.out["EventBusName"], uids, created_at)

    def live_stack(self, uid: str) -> dict[str, Any] | None:
        try:
            stack: dict[str, Any] = self.cfn.describe_stacks(StackName=self.name(uid))["Stacks"][0]
        except ClientError as error:
            if "does not exist" in str(error):
                return None
            raise
        return None if stack["StackStatus"] == "DELETE_COMPLETE" else stack

    def executions_for(self, machine_output: str, uid: str) -> list[dict[str, Any]]:
        arn = self.out[machine_output]
        pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=arn)
        found = []
        for page in pages:
            for execution in page["executions"]:
                described = self.sfn.describe_execution(executionArn=execution["executionArn"])
                if json.loads(described["input"])["detail"]["uid"] == uid:
                    found.append(described)
        return found

    def wait_executions_done(self, machine_output: str, uid: str, count: int) -> list[dict]:
        def probe() -> list[dict[str, Any]] | None:
            found = self.executions_for(machine_output, uid)
            done = [e for e in found if e["status"] != "RUNNING"]
            return found if len(found) >= count and len(done) == len(found) else None

        return wait_for(probe, 180, f"{count} {machine_output} executions for {uid}")

    def webhook(self, body: bytes, headers: dict[str, str]) -> int:
        """POST to the local HTTP API's /hooks/firebase, as the Firebase function does."""
        reply = requests.post(
            self.cp.api_url() + "/hooks/firebase",
            data=body,
            headers={"content-type": "application/json", **headers},
            timeout=60,
        )
        return reply.status_code


@pytest.fixture(scope="module")
def plane(local_cloud: LocalCloud) -> Plane:
    """The control plane with a desired image: a push, which the rollout records first."""
    plane = Plane(local_cloud)
    ensure_desired_image(plane.cp)
    return plane


# ---------------------------------------------------------------------- provisioning
def test_signup_through_the_webhook_becomes_ready_with_its_own_stack(plane: Plane) -> None:
    uid = new_uid("ready")
    answer = plane.cp.signup(uid, email=f"{uid}@example.com")
    assert answer["status_code"] == 202

    user = plane.wait_user(uid, FINAL)

    assert user["status"] == "READY", user.get("last_error")
    name = plane.name(uid)
    desired = plane.cp.desired_image()
    assert desired is not None
    assert user["image_digest"] == desired["image_digest"]
    assert user["function_arn"].endswith(f":function:{name}")
    stack = plane.live_stack(uid)
    assert stack is not None and stack["StackStatus"] == "CREATE_COMPLETE"
    tags = {t["Key"]: t["Value"] for t in stack["Tags"]}
    assert tags["sandbox-fleet:user-digest"] == naming.user_digest(uid)
    config = plane.lam.get_function(FunctionName=name)["Configuration"]
    assert config["Environment"]["Variables"] == {
        "USER_PREFIX": naming.user_prefix(naming.user_digest(uid)),
        "DATA_BUCKET": plane.out["DataBucketName"],
    }
    role = plane.iam.get_role(RoleName=name)["Role"]
    resources = plane.cfn.get_paginator("list_stack_resources").paginate(
        StackName=plane.cloud.stack_name
    )
    [boundary] = [
        r["PhysicalResourceId"]
        for page in resources
        for r in page["StackResourceSummaries"]
        if r["LogicalResourceId"] == "SandboxPermissionsBoundary"
    ]
    assert role["PermissionsBoundary"]["PermissionsBoundaryArn"] == boundary


def test_the_same_signup_delivered_five_times_makes_one_stack(plane: Plane) -> None:
    uid = new_uid("dup")
    notice = {
        "type": "user.created",
        "uid": uid,
        "email": None,
        "event_id": str(uuid.uuid4()),
        "created_at": iso_utc(datetime.now(UTC)),
    }
    for _ in range(5):  # the Firebase function retried: one event_id, one UserSignedUp
        assert plane.cp.call_webhook(notice)["status_code"] == 202
    plane.emit_signup([uid] * 4)  # EventBridge's at-least-once delivery, four more events

    plane.wait_user(uid, FINAL)
    executions = plane.wait_executions_done("ProvisionUserStateMachineArn", uid, 5)

    assert plane.user(uid)["status"] == "READY"  # type: ignore[index]
    assert all(e["status"] == "SUCCEEDED" for e in executions)
    creators = [
        e
        for e in executions
        if any(
            ev.get("stateEnteredEventDetails", {}).get("name") == "Create user stack"
            for ev in plane.sfn.get_execution_history(executionArn=e["executionArn"])["events"]
        )
    ]
    assert len(creators) == 1
    summaries = plane.cfn.list_stacks()["StackSummaries"]
    assert [s["StackName"] for s in summaries].count(plane.name(uid)) == 1


def test_fifty_awkward_uids_get_fifty_distinct_valid_stacks(plane: Plane) -> None:
    tag = uuid.uuid4().hex[:6]
    uids = [f"alice{tag}", f"Alice{tag}", f"ALICE{tag}", ("x" * 121) + tag + "!", f"zoë-{tag}-用户"]
    uids += [f"../{tag}", f"a/b/{tag}", f"{tag}/..", f" {tag} ", f"{tag}\t%"]
    uids += [f"{tag}-{i:02d}" for i in range(40)]
    assert len(uids) == 50 and all(len(u) <= 128 for u in uids)

    plane.emit_signup(uids)
    users = [plane.wait_user(uid, FINAL, timeout=300) for uid in uids]

    assert [u["status"] for u in users] == ["READY"] * 50, [u.get("last_error") for u in users]
    names = {plane.name(uid) for uid in uids}
    assert len(names) == 50
    assert len({n.lower() for n in names}) == 50  # IAM compares role names case-insensitively
    for uid in uids:
        assert plane.live_stack(uid) is not None
        assert plane.iam.get_role(RoleName=plane.name(uid))["Role"]["RoleName"] == plane.name(uid)


def test_a_stack_that_fails_is_retried_then_failed_with_the_reason(plane: Plane) -> None:
    uid = new_uid("flaky")
    name = plane.name(uid)
    failed = plane.sfn.list_executions(
        stateMachineArn=plane.out["ProvisionUserStateMachineArn"], statusFilter="FAILED"
    )["executions"]
    # Every creation of this one stack fails and rolls back; nobody else's is touched.
    faults.install_faults(
        FaultProfile.parse("flaky", stack_pattern=f"^{name}$", flaky_failure_rate=1.0)
    )
    try:
        plane.cp.signup(uid)
        user = plane.wait_user(uid, {"FAILED", "READY"}, timeout=240)
    finally:
        faults.install_faults(None)

    assert user["status"] == "FAILED"
    assert int(user["attempts"]) == 3
    assert "SandboxFunction" in user["last_error"]
    assert plane.live_stack(uid) is None  # every rolled-back attempt was deleted
    now_failed = plane.sfn.list_executions(
        stateMachineArn=plane.out["ProvisionUserStateMachineArn"], statusFilter="FAILED"
    )["executions"]
    assert len(now_failed) == len(failed) + 1


# ---------------------------------------------------------------------- deletion
def test_deletion_removes_the_stack_tombstones_the_user_and_retains_data(plane: Plane) -> None:
    uid = new_uid("gone")
    plane.cp.signup(uid)
    assert plane.wait_user(uid, FINAL)["status"] == "READY"
    key = naming.user_prefix(naming.user_digest(uid)) + "sales.csv"
    plane.s3.put_object(Bucket=plane.out["DataBucketName"], Key=key, Body=b"a,b\n1,2\n")

    assert plane.cp.delete_user(uid)["status_code"] == 202
    user = plane.wait_user(uid, {"DELETED"})

    assert plane.live_stack(uid) is None
    assert "function_arn" not in user
    with pytest.raises(ClientError):
        plane.lam.get_function(FunctionName=plane.name(uid))
    # Retained: hidden behind a delete marker, kept as a tagged noncurrent version that the
    # lifecycle rule expires DeletedUserRetentionDays after this deletion.
    bucket = plane.out["DataBucketName"]
    listing = plane.s3.list_object_versions(Bucket=bucket, Prefix=key)
    [marker] = listing["DeleteMarkers"]
    [kept] = listing["Versions"]
    assert marker["IsLatest"] and not kept["IsLatest"]
    tags = plane.s3.get_object_tagging(Bucket=bucket, Key=key, VersionId=kept["VersionId"])
    assert {"Key": "sandbox-fleet:deleted-user", "Value": "true"} in tags["TagSet"]


def test_signup_and_deletion_racing_end_deleted_with_no_stack(plane: Plane) -> None:
    uid = new_uid("race")
    now = datetime.now(UTC)
    plane.emit_signup([uid], created_at=iso_utc(now))
    plane.events.put_events(
        Entries=[
            {
                "Source": "sandbox-fleet",
                "DetailType": "UserDeleted",
                "EventBusName": plane.out["EventBusName"],
                "Detail": json.dumps(
                    {
                        "uid": uid,
                        "user_digest": naming.user_digest(uid),
                        "event_id": str(uuid.uuid4()),
                        "deleted_at": iso_utc(now + timedelta(seconds=1)),
                    }
                ),
            }
        ]
    )
    plane.wait_executions_done("ProvisionUserStateMachineArn", uid, 1)
    plane.wait_executions_done("DeprovisionUserStateMachineArn", uid, 1)

    assert plane.user(uid)["status"] == "DELETED"  # type: ignore[index]
    wait_for(lambda: True if plane.live_stack(uid) is None else None, 60, "no stack left")


# ---------------------------------------------------------------------- webhook rejections
def test_every_rejected_webhook_request_leaves_no_trace(plane: Plane) -> None:
    uid = new_uid("reject")
    secret = plane.cp.webhook_secret()
    body = json.dumps(
        {
            "type": "user.created",
            "uid": uid,
            "email": None,
            "event_id": str(uuid.uuid4()),
            "created_at": iso_utc(datetime.now(UTC)),
        }
    ).encode()
    stale = int(time.time()) - 600
    big = body[:-1] + b', "pad": "' + b"x" * 17_000 + b'"}'
    cases = {
        "bad signature": (body, signing.sign("wrong-key", body)),
        "stale": (body, signing.sign(secret, body, stale)),
        "no signature": (body, {}),
        "too large": (big, signing.sign(secret, big)),
        "malformed": (b"{nope", signing.sign(secret, b"{nope")),
        "invalid": (b'{"uid": ""}', signing.sign(secret, b'{"uid": ""}')),
    }
    statuses = {what: plane.webhook(raw, headers) for what, (raw, headers) in cases.items()}

    assert statuses == {
        "bad signature": 401,
        "stale": 401,
        "no signature": 401,
        "too large": 413,
        "malformed": 400,
        "invalid": 422,
    }
    assert plane.user(uid) is None
    assert plane.executions_for("ProvisionUserStateMachineArn", uid) == []
    table = next(t for t in plane.ddb.list_tables()["TableNames"] if "IdempotencyTable" in t)
    items = plane.ddb.scan(TableName=table)["Items"]
    assert not any(uid in json.dumps(item) for item in items)


# ---------------------------------------------------------------------- run API and isolation
def api_event(route: str, uid: str, body: dict[str, Any]) -> dict[str, Any]:
    event = http_event(json.dumps(body), {}, route)
    event["requestContext"]["authorizer"] = {
        "jwt": {"claims": {"sub": uid, "aud": "demo", "iss": "x"}, "scopes": None}
    }
    return event


def test_run_api_runs_the_callers_code_on_the_callers_data(plane: Plane) -> None:
    uid = new_uid("run")
    plane.cp.signup(uid)
    assert plane.wait_user(uid, FINAL)["status"] == "READY"
    key = naming.user_prefix(naming.user_digest(uid)) + "sales.csv"
    plane.s3.put_object(
        Bucket=plane.out["DataBucketName"], Key=key, Body=b"region,amount\nnorth,2\nnorth,3\n"
    )

    event = api_event(
        "POST /run", uid, {"dataset": "sales.csv", "code": "result = int(df['amount'].sum())"}
    )
    response = plane.lam.invoke(
        FunctionName=plane.out["RunCodeFunctionName"], Payload=json.dumps(event).encode()
    )
    answer = json.loads(response["Payload"].read())

    assert answer["statusCode"] == 200, answer
    envelope = json.loads(answer["body"])
    assert envelope["status"] == "ok", envelope
    assert envelope["result"] == 5


def test_a_users_own_credentials_cannot_reach_another_users_data_or_function(
    plane: Plane,
) -> None:
    alice, bob = new_uid("alice"), new_uid("bob")
    plane.emit_signup([alice, bob])
    for uid in (alice, bob):
        assert plane.wait_user(uid, FINAL)["status"] == "READY"
    bucket = plane.out["DataBucketName"]
    mine = naming.user_prefix(naming.user_digest(alice))
    theirs = naming.user_prefix(naming.user_digest(bob))
    plane.s3.put_object(Bucket=bucket, Key=theirs + "secret.csv", Body=b"b\n1\n")

    # What an attacker holds after stealing alice's function credentials.
    role = plane.iam.get_role(RoleName=plane.name(alice))["Role"]["Arn"]
    stolen = plane.cloud.session_for_role(role)
    s3 = stolen.client("s3", endpoint_url=plane.cloud.endpoint)
    lam = stolen.client("lambda", endpoint_url=plane.cloud.endpoint)

    s3.put_object(Bucket=bucket, Key=mine + "own.csv", Body=b"a\n1\n")  # allowed
    assert s3.get_object(Bucket=bucket, Key=mine + "own.csv")["Body"].read() == b"a\n1\n"
    assert s3.list_objects_v2(Bucket=bucket, Prefix=mine)["KeyCount"] == 1

    denied = [
        lambda: s3.get_object(Bucket=bucket, Key=theirs + "secret.csv"),
        lambda: s3.put_object(Bucket=bucket, Key=theirs + "secret.csv", Body=b"pwned"),
        lambda: s3.list_objects_v2(Bucket=bucket, Prefix=theirs),
        lambda: s3.list_objects_v2(Bucket=bucket),
        lambda: lam.invoke(FunctionName=plane.name(bob), Payload=b"{}"),
        lambda: lam.invoke(FunctionName=plane.name(alice), Payload=b"{}"),
    ]
    for attempt in denied:
        with pytest.raises(ClientError) as error:
            attempt()
        assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    body = plane.s3.get_object(Bucket=bucket, Key=theirs + "secret.csv")["Body"].read()
    assert body == b"b\n1\n"


def test_the_provisioning_role_creates_stacks_only_through_the_service_role(
    plane: Plane,
) -> None:
    """cloudformation:RoleArn / TemplateUrl / ResourceTypes conditions are enforced."""
    from sandboxctl.localcloud.fixes import lambda_exec

    machine = plane.sfn.describe_state_machine(
        stateMachineArn=plane.out["ProvisionUserStateMachineArn"]
    )
    creds = lambda_exec.assume_role_as_service(
        machine["roleArn"], "probe", service="states.amazonaws.com"
    )
    import boto3

    cfn = boto3.client(
        "cloudformation",
        endpoint_url=plane.cloud.endpoint,
        region_name=plane.cloud.region,
        aws_access_key_id=creds.access_key_id,
        aws_secret_access_key=creds.secret_access_key,
        aws_session_token=creds.session_token,
    )
    create = json.loads(machine["definition"])["States"]["Create user stack"]["Parameters"]
    template_url, role_arn = create["TemplateURL"], create["RoleARN"]
    name = plane.name(new_uid("probe"))
    small = {"Resources": {"Logs": {"Type": "AWS::Logs::LogGroup"}}}
    attempts = {
        "another role": dict(TemplateURL=template_url, RoleARN=role_arn + "-x"),
        "own template body": dict(TemplateBody=json.dumps(small), RoleARN=role_arn),
        "no resource types": dict(TemplateURL=template_url, RoleARN=role_arn, ResourceTypes=None),
        "extra type": dict(
            TemplateURL=template_url, RoleARN=role_arn, ResourceTypes=["AWS::IAM::User"]
        ),
        "not a sandbox stack": dict(TemplateURL=template_url, RoleARN=role_arn, StackName="x"),
    }
    for what, kwargs in attempts.items():
        call = {"StackName": name, "ResourceTypes": create["ResourceTypes"], **kwargs}
        call = {k: v for k, v in call.items() if v is not None}
        with pytest.raises(ClientError) as error:
            cfn.create_stack(**call)
        assert error.value.response["Error"]["Code"] == "AccessDenied", what


def test_deleting_a_user_who_never_uploaded_anything(plane: Plane) -> None:
    """An empty prefix is zero Map iterations (fix sfn_itemreader_empty_listing)."""
    uid = new_uid("empty")
    plane.cp.signup(uid)
    assert plane.wait_user(uid, FINAL)["status"] == "READY"
    plane.cp.delete_user(uid)
    [execution] = plane.wait_executions_done("DeprovisionUserStateMachineArn", uid, 1)
    assert execution["status"] == "SUCCEEDED"
    assert plane.user(uid)["status"] == "DELETED"  # type: ignore[index]
    assert plane.live_stack(uid) is None


def test_slow_and_throttled_aws_still_ends_ready_through_the_wait_loop(plane: Plane) -> None:
    """Stacks stay CREATE_IN_PROGRESS for seconds and CloudFormation/Lambda throttle, as on AWS."""
    uid = new_uid("slow")
    faults.install_faults("slow,throttle", seed=7)
    try:
        plane.emit_signup([uid])
        user = plane.wait_user(uid, FINAL, timeout=180)
    finally:
        faults.install_faults(None)

    assert user["status"] == "READY", user.get("last_error")
    [execution] = plane.wait_executions_done("ProvisionUserStateMachineArn", uid, 1)
    history = plane.sfn.get_execution_history(
        executionArn=execution["executionArn"], maxResults=1000
    )["events"]
    entered = [e.get("stateEnteredEventDetails", {}).get("name") for e in history]
    assert "Wait creation" in entered  # the stack was still in progress at least once
    assert entered.count("Describe user stack") >= 2


def test_an_existing_user_stack_is_adopted_instead_of_failing(plane: Plane) -> None:
    """CreateStack's AlreadyExists converges: e.g. a stack left by an earlier attempt."""
    uid = new_uid("adopt")
    digest = naming.user_digest(uid)
    machine = plane.sfn.describe_state_machine(
        stateMachineArn=plane.out["ProvisionUserStateMachineArn"]
    )
    create = json.loads(machine["definition"])["States"]["Create user stack"]["Parameters"]
    dynamic = {
        "UserDigest": digest,
        "UserPrefix": naming.user_prefix(digest),
        "ImageUri": plane.cp.desired_image()["image_uri"],  # type: ignore[index]
    }
    parameters = [
        {
            "ParameterKey": p["ParameterKey"],
            "ParameterValue": dynamic.get(p["ParameterKey"], p.get("ParameterValue", "")),
        }
        for p in create["Parameters"]
    ]
    stack_id = plane.cfn.create_stack(
        StackName=plane.name(uid),
        TemplateURL=create["TemplateURL"],
        RoleARN=create["RoleARN"],
        Capabilities=create["Capabilities"],
        Parameters=parameters,
    )["StackId"]
    wait_for(
        lambda: True if plane.live_stack(uid)["StackStatus"] == "CREATE_COMPLETE" else None,  # type: ignore[index]
        60,
        "the pre-existing stack",
    )

    plane.cp.signup(uid)
    user = plane.wait_user(uid, FINAL)

    assert user["status"] == "READY", user.get("last_error")
    assert plane.live_stack(uid)["StackId"] == stack_id  # type: ignore[index]
    [execution] = plane.wait_executions_done("ProvisionUserStateMachineArn", uid, 1)
    history = plane.sfn.get_execution_history(executionArn=execution["executionArn"])["events"]
    entered = [e.get("stateEnteredEventDetails", {}).get("name") for e in history]
    assert "Find existing stack" in entered
