"""Fault profiles: each profile's behaviour as a workflow (or an operator) would observe it."""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from sandboxctl.localcloud import faults
from sandboxctl.localcloud.faults import FaultProfile, FaultProfileError, TokenBucket
from tests.integration.fidelity_support import cloud, make_role
from tests.integration.localcloud_support import unique, wait_for

pytestmark = pytest.mark.integration
__all__ = ["cloud"]

NO_RETRIES = Config(retries={"total_max_attempts": 1})

# A per-user-like stack: an execution role and an image function using it, with an output.
FUNCTION_STACK = {
    "AWSTemplateFormatVersion": "2010-09-09",
    "Parameters": {"Note": {"Type": "String", "Default": "v1"}, "ImageUri": {"Type": "String"}},
    "Resources": {
        "Role": {
            "Type": "AWS::IAM::Role",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "lambda.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                }
            },
        },
        "Function": {
            "Type": "AWS::Lambda::Function",
            "Properties": {
                "PackageType": "Image",
                "Role": {"Fn::GetAtt": ["Role", "Arn"]},
                "Description": {"Ref": "Note"},
                "Code": {"ImageUri": {"Ref": "ImageUri"}},
            },
        },
    },
    "Outputs": {"FunctionArn": {"Value": {"Fn::GetAtt": ["Function", "Arn"]}}},
}


@pytest.fixture(scope="module")
def image_uri(cloud) -> str:
    """An image in the local ECR, addressed by digest like the per-user stacks do."""
    ecr = cloud.client("ecr")
    repository = ecr.create_repository(repositoryName=unique("fid"))["repository"]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1,
                "digest": "sha256:" + "c" * 64,
            },
            "layers": [],
        }
    )
    pushed = ecr.put_image(
        repositoryName=repository["repositoryName"], imageManifest=manifest, imageTag="v1"
    )
    return f"{repository['repositoryUri']}@{pushed['image']['imageId']['imageDigest']}"


def _create(cloud, name: str, image_uri: str) -> None:
    cloud.client("cloudformation").create_stack(
        StackName=name,
        TemplateBody=json.dumps(FUNCTION_STACK),
        Parameters=[{"ParameterKey": "ImageUri", "ParameterValue": image_uri}],
        Capabilities=["CAPABILITY_IAM"],
    )


@pytest.fixture
def profile_scope() -> Iterator[None]:
    """Whatever profile a test installs is replaced by the previous one afterwards."""
    previous = faults.active_profile()
    try:
        yield
    finally:
        faults.install_faults(previous)


def _stack(cloud, name: str) -> dict:
    return cloud.client("cloudformation").describe_stacks(StackName=name)["Stacks"][0]


def _settled(cloud, name: str) -> dict:
    def probe() -> dict | None:
        stack = _stack(cloud, name)
        return None if stack["StackStatus"].endswith("IN_PROGRESS") else stack

    return wait_for(probe, what=f"stack {name} to settle")


def test_profiles_parse_combine_and_reject_unknown_names() -> None:
    profile = FaultProfile.parse("throttle, slow", seed=3)
    assert profile.throttle and profile.slow and not profile.flaky
    assert profile.lambda_control_plane_rps == 15.0  # Lambda's control-plane quota
    with pytest.raises(FaultProfileError, match="unknown fault profile"):
        FaultProfile.parse("slow,chaos")


def test_token_bucket_admits_fifteen_per_second() -> None:
    now = [100.0]
    bucket = TokenBucket(15.0, clock=lambda: now[0])
    assert sum(bucket.admit() for _ in range(40)) == 15
    now[0] += 1.0
    assert sum(bucket.admit() for _ in range(40)) == 15
    now[0] += 0.2
    assert sum(bucket.admit() for _ in range(40)) == 3


def test_flaky_decisions_depend_only_on_seed_stack_and_attempt() -> None:
    names = [f"sbx-local-{i}" for i in range(400)]
    first = [FaultProfile.parse("flaky", seed=11).fails("create", n, 1) for n in names]
    again = [FaultProfile.parse("flaky", seed=11).fails("create", n, 1) for n in reversed(names)]
    other = [FaultProfile.parse("flaky", seed=12).fails("create", n, 1) for n in names]
    assert first == list(reversed(again))
    assert first != other
    assert 0.2 < sum(first) / len(first) < 0.4  # the configured share (0.3)


def test_throttle_answers_429_and_throttling(cloud, profile_scope) -> None:
    faults.install_faults("throttle", seed=1)
    lam = cloud.client("lambda", config=NO_RETRIES)
    cfn = cloud.client("cloudformation", config=NO_RETRIES)

    def outcome(call) -> str:
        try:
            call()
            return "ok"
        except ClientError as error:
            status = error.response["ResponseMetadata"]["HTTPStatusCode"]
            return f"{error.response['Error']['Code']}:{status}"

    with ThreadPoolExecutor(max_workers=8) as pool:
        lambda_results = list(pool.map(lambda _: outcome(lambda: lam.list_layers()), range(100)))
        cfn_results = list(pool.map(lambda _: outcome(lambda: cfn.list_stacks()), range(100)))

    assert "ok" in lambda_results
    assert "TooManyRequestsException:429" in lambda_results
    assert set(lambda_results) <= {"ok", "TooManyRequestsException:429"}
    assert "ok" in cfn_results
    assert "Throttling:400" in cfn_results
    assert set(cfn_results) <= {"ok", "Throttling:400"}

    faults.install_faults(None)
    assert outcome(lambda: lam.list_layers()) == "ok"


def test_throttle_keeps_lambdas_own_buckets_apart(cloud, profile_scope) -> None:
    """GetFunction has its own 100/s: a burst of it passes while the shared 15/s is exhausted."""
    profile = FaultProfile.parse("throttle", seed=1, quota_scale=0.5)
    assert profile.rates()["lambda_shared"] == 7.5
    assert profile.rates()["lambda_get_function"] == 50.0
    faults.install_faults(profile)
    lam = cloud.client("lambda", config=NO_RETRIES)

    def code(call) -> str:
        try:
            call()
            return "ok"
        except ClientError as error:
            return str(error.response["Error"]["Code"])

    shared = [code(lambda: lam.list_layers()) for _ in range(30)]
    own = [code(lambda: lam.get_function(FunctionName="absent")) for _ in range(20)]
    assert "TooManyRequestsException" in shared
    assert "TooManyRequestsException" not in own  # ResourceNotFound: admitted, then answered
    counts = faults.throttled_counts()
    assert counts["lambda_shared"] >= 1 and counts.get("lambda_get_function", 0) == 0
    assert faults.admitted_counts()["lambda_get_function"] == 20


def test_slow_stacks_stay_in_progress_then_complete(cloud, image_uri, profile_scope) -> None:
    prefix = unique("sbxslow")
    faults.install_faults(
        # ≥ 1.5 s in progress (jitter 0.5-1.5x): ample for the next call to observe it.
        FaultProfile.parse("slow", seed=2, stack_pattern=f"^{prefix}", stack_delay_seconds=3.0)
    )
    cfn = cloud.client("cloudformation")
    name = f"{prefix}-user"
    _create(cloud, name, image_uri)

    first = _stack(cloud, name)
    assert first["StackStatus"] == "CREATE_IN_PROGRESS"
    assert "Outputs" not in first
    with pytest.raises(ClientError, match="CREATE_IN_PROGRESS state and can not be updated"):
        cfn.update_stack(StackName=name, UsePreviousTemplate=True)

    done = _settled(cloud, name)
    assert done["StackStatus"] == "CREATE_COMPLETE"
    assert done["Outputs"][0]["OutputKey"] == "FunctionArn"

    cfn.delete_stack(StackName=name)
    assert _stack(cloud, name)["StackStatus"] == "DELETE_IN_PROGRESS"


def test_slow_function_updates_stay_in_progress(cloud, profile_scope) -> None:
    role = make_role(cloud, "lambda.amazonaws.com", [])
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("index.py", "def handler(event, context):\n    return event\n")
    lam = cloud.client("lambda", config=NO_RETRIES)
    name = unique("fid")
    lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role,
        Handler="index.handler",
        Code={"ZipFile": buffer.getvalue()},
    )
    faults.install_faults(FaultProfile.parse("slow", seed=2, function_update_delay_seconds=3.0))

    updated = lam.update_function_configuration(FunctionName=name, Description="v2")
    assert updated["LastUpdateStatus"] == "InProgress"
    with pytest.raises(ClientError) as conflict:
        lam.update_function_configuration(FunctionName=name, Description="v3")
    assert conflict.value.response["Error"]["Code"] == "ResourceConflictException"
    assert conflict.value.response["ResponseMetadata"]["HTTPStatusCode"] == 409

    def later_update_accepted() -> bool:
        try:
            lam.update_function_configuration(FunctionName=name, Description="v3")
            return True
        except ClientError as error:
            assert error.response["Error"]["Code"] == "ResourceConflictException"
            return False

    wait_for(later_update_accepted, what="the update to complete")


def _function(name: str):
    from moto.awslambda.models import lambda_backends

    return lambda_backends["123456789012"]["us-east-1"].get_function(name)


def _pick(profile: FaultProfile, prefix: str, want: dict[tuple[str, int], bool]) -> str:
    for i in range(10_000):
        name = f"{prefix}-{i}"
        if all(profile.fails(op, name, n) == fail for (op, n), fail in want.items()):
            return name
    raise AssertionError("no stack name with the wanted fault sequence")


def _failure_reasons(cloud, name: str, status: str) -> list[str]:
    events = cloud.client("cloudformation").describe_stack_events(StackName=name)["StackEvents"]
    return [e.get("ResourceStatusReason", "") for e in events if e["ResourceStatus"] == status]


def test_flaky_creation_rolls_back_with_a_reason_then_a_retry_succeeds(
    cloud, image_uri, profile_scope
) -> None:
    prefix = unique("sbxflaky")
    profile = FaultProfile.parse("flaky", seed=5, stack_pattern=f"^{prefix}")
    name = _pick(profile, prefix, {("create", 1): True, ("create", 2): False})
    faults.install_faults(profile)
    cfn = cloud.client("cloudformation")

    _create(cloud, name, image_uri)
    failed = _settled(cloud, name)
    assert failed["StackStatus"] == "ROLLBACK_COMPLETE"
    [reason] = _failure_reasons(cloud, name, "CREATE_FAILED")
    assert "InternalFailure" in reason and "flaky fault profile" in reason

    cfn.delete_stack(StackName=name)
    wait_for(
        lambda: name not in {s["StackName"] for s in cfn.describe_stacks()["Stacks"]},
        what="stack deletion",
    )
    _create(cloud, name, image_uri)
    assert _settled(cloud, name)["StackStatus"] == "CREATE_COMPLETE"


def test_flaky_update_rolls_back_to_the_previous_state(cloud, image_uri, profile_scope) -> None:
    prefix = unique("sbxflaky")
    profile = FaultProfile.parse("flaky", seed=9, stack_pattern=f"^{prefix}")
    name = _pick(profile, prefix, {("create", 1): False, ("update", 1): True})
    faults.install_faults(profile)
    cfn = cloud.client("cloudformation")
    _create(cloud, name, image_uri)
    assert _settled(cloud, name)["StackStatus"] == "CREATE_COMPLETE"

    cfn.update_stack(
        StackName=name,
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "Note", "ParameterValue": "v2"},
            {"ParameterKey": "ImageUri", "UsePreviousValue": True},
        ],
        Capabilities=["CAPABILITY_IAM"],
    )
    rolled_back = _settled(cloud, name)
    assert rolled_back["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    assert any("flaky fault profile" in r for r in _failure_reasons(cloud, name, "UPDATE_FAILED"))
    [function] = [
        r
        for r in cfn.describe_stack_resources(StackName=name)["StackResources"]
        if r["LogicalResourceId"] == "Function"
    ]
    backend_fn = _function(function["PhysicalResourceId"])
    assert backend_fn.description == "v1"  # the previous configuration is back
