"""The local cloud's fixes that rollouts depend on: each test fails on plain moto."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from moto import mock_aws

from sandboxctl.localcloud.fixes import (
    _hooks,
    cloudformation_update_previous_value,
    lambda_image_digest,
    sfn_map_tolerated_failure,
    sfn_result_writer_input,
)

ROLE = "arn:aws:iam::123456789012:role/state-machine"
BUCKET = "fix-tests"


@pytest.fixture(autouse=True)
def fixes_applied() -> Iterator[None]:
    # Given back afterwards: later mock_aws tests in this process must see moto as shipped.
    _hooks.remember_moto()
    for fix in (
        sfn_map_tolerated_failure,
        sfn_result_writer_input,
        cloudformation_update_previous_value,
        lambda_image_digest,
    ):
        fix.check()
        fix.apply()
    yield
    _hooks.unpatch_all()


@pytest.fixture
def aws() -> Iterator[None]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        boto3.client("s3").create_bucket(Bucket=BUCKET)
        yield


def distributed_map(tolerated: float) -> dict[str, Any]:
    return {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket": BUCKET, "Key.$": "$.key"},
                },
                "ToleratedFailurePercentagePath": "$.tolerated",
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Good?",
                    "States": {
                        "Good?": {
                            "Type": "Choice",
                            "Choices": [{"Variable": "$.ok", "BooleanEquals": True, "Next": "Ok"}],
                            "Default": "Bad",
                        },
                        "Ok": {"Type": "Succeed"},
                        "Bad": {"Type": "Fail", "Error": "ItemFailed", "Cause": "bad item"},
                    },
                },
                "ResultWriter": {
                    "Resource": "arn:aws:states:::s3:putObject",
                    "Parameters": {"Bucket": BUCKET, "Prefix.$": "$.prefix"},
                },
                "ResultPath": "$.written",
                "Catch": [
                    {
                        "ErrorEquals": ["States.ExceedToleratedFailureThreshold"],
                        "ResultPath": "$.error",
                        "Next": "Over budget",
                    }
                ],
                "End": True,
            },
            "Over budget": {"Type": "Succeed"},
        },
    }


def run_map(failures: int, tolerated: float) -> dict[str, Any]:
    s3, sfn = boto3.client("s3"), boto3.client("stepfunctions")
    items = [{"ok": i >= failures} for i in range(5)]
    s3.put_object(Bucket=BUCKET, Key="items.json", Body=json.dumps(items))
    arn = sfn.create_state_machine(
        name=f"map-{failures}-{int(tolerated)}",
        definition=json.dumps(distributed_map(tolerated)),
        roleArn=ROLE,
    )["stateMachineArn"]
    execution = sfn.start_execution(
        stateMachineArn=arn,
        input=json.dumps({"key": "items.json", "tolerated": tolerated, "prefix": "out/run"}),
    )["executionArn"]
    deadline = time.monotonic() + 60
    while (described := sfn.describe_execution(executionArn=execution))["status"] == "RUNNING":
        assert time.monotonic() < deadline, "the map run did not finish"
        time.sleep(0.05)
    assert described["status"] == "SUCCEEDED", described
    return dict(json.loads(described["output"]))


def test_map_within_its_failure_budget_succeeds_and_writes_results_under_the_input_prefix(
    aws: None,
) -> None:
    output = run_map(failures=2, tolerated=40)
    assert "error" not in output
    assert output["written"]["ResultWriterDetails"]["Key"].startswith("out/run/")


def test_map_over_its_failure_budget_fails_with_the_aws_error(aws: None) -> None:
    output = run_map(failures=3, tolerated=40)
    assert output["error"]["Error"] == "States.ExceedToleratedFailureThreshold"
    assert "3 of 5" in output["error"]["Cause"]


def test_the_budget_rule_matches_aws() -> None:
    exceeds = sfn_map_tolerated_failure.exceeds
    assert not exceeds(0, 10, None, None)
    assert exceeds(1, 10, None, None)  # no budget given: any failure fails the map
    assert not exceeds(1, 10, None, 10.0) and exceeds(2, 10, None, 10.0)
    assert not exceeds(3, 10, 3, None) and exceeds(4, 10, 3, None)


def test_update_stack_keeps_defaulted_parameters_with_use_previous_value(aws: None) -> None:
    cfn = boto3.client("cloudformation")
    template = {
        "Parameters": {
            "ImageUri": {"Type": "String"},
            "Memory": {"Type": "String", "Default": "1024"},
        },
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
    }
    cfn.create_stack(
        StackName="user",
        TemplateBody=json.dumps(template),
        Parameters=[{"ParameterKey": "ImageUri", "ParameterValue": "old"}],
    )
    cfn.update_stack(
        StackName="user",
        UsePreviousTemplate=True,
        Parameters=[
            {"ParameterKey": "ImageUri", "ParameterValue": "new"},
            {"ParameterKey": "Memory", "UsePreviousValue": True},
        ],
    )
    parameters = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in cfn.describe_stacks(StackName="user")["Stacks"][0]["Parameters"]
    }
    assert parameters == {"ImageUri": "new", "Memory": "1024"}


def test_an_image_function_reports_the_digest_it_runs(aws: None) -> None:
    iam, lam = boto3.client("iam"), boto3.client("lambda")
    role = iam.create_role(RoleName="fn", AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    digest = "sha256:" + "ab" * 32
    uri = f"123456789012.dkr.ecr.us-east-1.amazonaws.com/sandbox@{digest}"
    lam.create_function(
        FunctionName="sbx-test-fn", Role=role, PackageType="Image", Code={"ImageUri": uri}
    )
    function = lam.get_function(FunctionName="sbx-test-fn")
    assert function["Code"]["ResolvedImageUri"] == uri
    assert function["Configuration"]["CodeSha256"] == "ab" * 32
