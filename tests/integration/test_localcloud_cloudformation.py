"""CloudFormation in the local cloud behaves as on AWS for what the templates use.

Each test exercises one fidelity fix through the API (and fails without it): event bus Ref,
state machine definitions and substitutions, image functions, HTTP APIs, secrets, IAM roles,
generated names, NoValue in lists, and rollback with resource events.
"""

from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests.integration.localcloud_support import (
    deploy_stack,
    make_role,
    outputs,
    unique,
    wait_for,
)

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]

ASL = {
    "StartAt": "Answer",
    "States": {"Answer": {"Type": "Pass", "Result": {"table": "${TableName}"}, "End": True}},
}


def test_event_bus_ref_is_its_name_and_rules_attach_to_it(local_cloud: Any) -> None:
    bus = unique("lc-bus")
    stack = deploy_stack(
        local_cloud,
        {
            "Resources": {
                "Bus": {"Type": "AWS::Events::EventBus", "Properties": {"Name": bus}},
                "Rule": {
                    "Type": "AWS::Events::Rule",
                    "Properties": {
                        "EventBusName": {"Ref": "Bus"},
                        "EventPattern": {"source": ["sandbox-fleet"]},
                    },
                },
            },
            "Outputs": {
                "BusName": {"Value": {"Ref": "Bus"}},
                "BusArn": {"Value": {"Fn::GetAtt": ["Bus", "Arn"]}},
            },
        },
    )
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    assert outputs(stack) == {
        "BusName": bus,
        "BusArn": f"arn:aws:events:us-east-1:123456789012:event-bus/{bus}",
    }
    rules = local_cloud.client("events").list_rules(EventBusName=bus)["Rules"]
    assert len(rules) == 1


@pytest.mark.parametrize("source", ["DefinitionS3Location", "Definition", "DefinitionString"])
def test_state_machine_definition_is_substituted_and_executable(
    local_cloud: Any, source: str
) -> None:
    role = make_role(local_cloud, [], service="states.amazonaws.com")
    properties: dict[str, Any] = {
        "RoleArn": role,
        "DefinitionSubstitutions": {"TableName": "registry-table"},
    }
    if source == "DefinitionS3Location":
        bucket = unique("lc-asl")
        s3 = local_cloud.client("s3")
        s3.create_bucket(Bucket=bucket)
        s3.put_object(Bucket=bucket, Key="machine.asl.json", Body=json.dumps(ASL).encode())
        properties[source] = {"Bucket": bucket, "Key": "machine.asl.json"}
    elif source == "Definition":
        properties[source] = ASL
    else:
        properties[source] = json.dumps(ASL)
    stack = deploy_stack(
        local_cloud,
        {
            "Resources": {
                "Machine": {"Type": "AWS::StepFunctions::StateMachine", "Properties": properties}
            },
            "Outputs": {"Arn": {"Value": {"Ref": "Machine"}}},
        },
    )
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    arn = outputs(stack)["Arn"]
    sfn = local_cloud.client("stepfunctions")
    assert "registry-table" in sfn.describe_state_machine(stateMachineArn=arn)["definition"]
    execution = sfn.start_execution(stateMachineArn=arn, input="{}")["executionArn"]
    done = wait_for(
        lambda: (d := sfn.describe_execution(executionArn=execution))["status"] != "RUNNING" and d,
        what="the execution",
    )
    assert done["status"] == "SUCCEEDED"
    assert json.loads(done["output"]) == {"table": "registry-table"}


def test_image_function_keeps_package_type_architecture_image_config_and_tags(
    local_cloud: Any,
) -> None:
    role = make_role(local_cloud, [])
    name = unique("sbx-cfn")
    ecr = local_cloud.client("ecr")
    repository = ecr.create_repository(repositoryName=unique("lc-repo"))["repository"]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"size": 10, "digest": "sha256:" + "1" * 64},
            "layers": [],
        }
    )
    digest = ecr.put_image(
        repositoryName=repository["repositoryName"], imageManifest=manifest, imageTag="v1"
    )["image"]["imageId"]["imageDigest"]
    image_uri = f"{repository['repositoryUri']}@{digest}"
    stack = deploy_stack(
        local_cloud,
        {
            "Resources": {
                "Function": {
                    "Type": "AWS::Lambda::Function",
                    "Properties": {
                        "FunctionName": name,
                        "PackageType": "Image",
                        "Code": {"ImageUri": image_uri},
                        "Role": role,
                        "Architectures": ["arm64"],
                        "ImageConfig": {"Command": ["sandbox_runtime.handler.lambda_handler"]},
                        "EphemeralStorage": {"Size": 1024},
                        "Tags": [{"Key": "sandbox-fleet:user-digest", "Value": "abc"}],
                    },
                }
            }
        },
    )
    assert stack["StackStatus"] == "CREATE_COMPLETE"
    function = local_cloud.client("lambda").get_function(FunctionName=name)
    config = function["Configuration"]
    assert config["PackageType"] == "Image"
    assert config["Architectures"] == ["arm64"]
    assert config["EphemeralStorage"] == {"Size": 1024}
    assert config["ImageConfigResponse"]["ImageConfig"]["Command"] == [
        "sandbox_runtime.handler.lambda_handler"
    ]
    assert config["CodeSha256"] == digest.removeprefix("sha256:")
    assert function["Tags"]["sandbox-fleet:user-digest"] == "abc"


def test_http_api_of_the_template_has_its_routes_and_jwt_authorizer(local_cloud: Any) -> None:
    api_id = local_cloud.outputs["HttpApiUrl"].split("//", 1)[1].split(".", 1)[0]
    apigw = local_cloud.client("apigatewayv2")
    api = apigw.get_api(ApiId=api_id)
    assert api["ProtocolType"] == "HTTP"
    routes = {r["RouteKey"]: r for r in apigw.get_routes(ApiId=api_id)["Items"]}
    assert routes["POST /run"]["AuthorizationType"] == "JWT"
    jwt = apigw.get_authorizer(ApiId=api_id, AuthorizerId=routes["POST /run"]["AuthorizerId"])
    assert jwt["AuthorizerType"] == "JWT"
    assert jwt["JwtConfiguration"]["Issuer"] == "https://securetoken.google.com/sandbox-fleet-local"
    assert jwt["JwtConfiguration"]["Audience"] == ["sandbox-fleet-local"]
    assert routes["POST /hooks/firebase"].get("AuthorizationType", "NONE") == "NONE"
    stages = apigw.get_stages(ApiId=api_id)["Items"]
    assert [s["StageName"] for s in stages] == ["$default"]


def test_generated_webhook_secret_has_current_and_previous_keys(local_cloud: Any) -> None:
    value = local_cloud.client("secretsmanager").get_secret_value(
        SecretId=local_cloud.outputs["WebhookSecretArn"]
    )
    secret = json.loads(value["SecretString"])
    assert secret["previous"] == ""
    assert len(secret["current"]) == 64 and secret["current"].isalnum()


def test_template_role_has_its_inline_and_managed_policies(local_cloud: Any) -> None:
    function = local_cloud.client("lambda").get_function(
        FunctionName=local_cloud.outputs["SignupWebhookFunctionName"]
    )
    role_name = function["Configuration"]["Role"].rsplit("/", 1)[-1]
    iam = local_cloud.client("iam")
    attached = iam.list_attached_role_policies(RoleName=role_name)["AttachedPolicies"]
    assert "AWSLambdaBasicExecutionRole" in {p["PolicyName"] for p in attached}
    names = iam.list_role_policies(RoleName=role_name)["PolicyNames"]
    document = iam.get_role_policy(RoleName=role_name, PolicyName=names[0])["PolicyDocument"]
    statements = document["Statement"]
    # A conditional (!If ... AWS::NoValue) statement is gone, not null.
    assert all(isinstance(s, dict) for s in statements)
    assert "ReadFirebaseServiceAccount" not in {s.get("Sid") for s in statements}


def test_generated_repository_name_is_valid_for_ecr(local_cloud: Any) -> None:
    name = local_cloud.outputs["SandboxRepositoryName"]
    assert name == name.lower()
    repositories = local_cloud.client("ecr").describe_repositories(repositoryNames=[name])
    assert (
        repositories["repositories"][0]["repositoryUri"]
        == local_cloud.outputs["SandboxRepositoryUri"]
    )


def test_failed_resource_rolls_the_stack_back_with_the_reason(local_cloud: Any) -> None:
    queue = unique("lc-queue")
    stack = deploy_stack(
        local_cloud,
        {
            "Resources": {
                "Queue": {"Type": "AWS::SQS::Queue", "Properties": {"QueueName": queue}},
                "Machine": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "DependsOn": "Queue",
                    "Properties": {
                        "RoleArn": make_role(local_cloud, [], service="states.amazonaws.com"),
                        "DefinitionString": '{"StartAt": "Nowhere", "States": {}}',
                    },
                },
            },
            "Outputs": {"Machine": {"Value": {"Ref": "Machine"}}},
        },
    )
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert "Outputs" not in stack
    events = local_cloud.client("cloudformation").describe_stack_events(
        StackName=stack["StackName"]
    )["StackEvents"]
    failed = [e for e in events if e["ResourceStatus"] == "CREATE_FAILED"]
    assert [e["LogicalResourceId"] for e in failed] == ["Machine"]
    assert failed[0]["ResourceStatusReason"]
    assert any(
        e["ResourceStatus"] == "CREATE_COMPLETE" and e["LogicalResourceId"] == "Queue"
        for e in events
    )
    # The queue created before the failure was deleted by the rollback.
    urls = local_cloud.client("sqs").list_queues(QueueNamePrefix=queue).get("QueueUrls", [])
    assert urls == []


def test_failed_update_rolls_back_to_the_previous_template(local_cloud: Any) -> None:
    role = make_role(local_cloud, [], service="states.amazonaws.com")

    def template(definition: str) -> dict[str, Any]:
        return {
            "Resources": {
                "Machine": {
                    "Type": "AWS::StepFunctions::StateMachine",
                    "Properties": {"RoleArn": role, "DefinitionString": definition},
                }
            },
            "Outputs": {"Arn": {"Value": {"Ref": "Machine"}}},
        }

    good = json.dumps({"StartAt": "A", "States": {"A": {"Type": "Succeed"}}})
    stack = deploy_stack(local_cloud, template(good))
    cfn = local_cloud.client("cloudformation")
    cfn.update_stack(
        StackName=stack["StackName"],
        TemplateBody=json.dumps(template('{"StartAt": "Nowhere", "States": {}}')),
    )
    updated = wait_for(
        lambda: (
            (s := cfn.describe_stacks(StackName=stack["StackName"])["Stacks"][0])[
                "StackStatus"
            ].endswith("COMPLETE")
            and s
        ),
        what="the update",
    )
    assert updated["StackStatus"] == "UPDATE_ROLLBACK_COMPLETE"
    definition = local_cloud.client("stepfunctions").describe_state_machine(
        stateMachineArn=outputs(updated)["Arn"]
    )["definition"]
    assert json.loads(definition) == json.loads(good)


def _user_stack_parameters(local_cloud: Any, stage: str, boundary: str, image: str) -> list[Any]:
    digest = "a" * 26
    values = {
        "Stage": stage,
        "UserDigest": digest,
        "DataBucketName": local_cloud.outputs["DataBucketName"],
        "UserPrefix": f"users/{digest}/",
        "ImageUri": image,
        "PermissionsBoundaryArn": boundary,
    }
    return [{"ParameterKey": k, "ParameterValue": v} for k, v in values.items()]


def _template_boundary(local_cloud: Any) -> str:
    return next(
        physical
        for logical, _, physical in local_cloud.resources
        if logical == "SandboxPermissionsBoundary"
    )


def _service_role(local_cloud: Any) -> str:
    name = next(
        physical
        for logical, _, physical in local_cloud.resources
        if logical == "CloudFormationServiceRole"
    )
    arn: str = local_cloud.client("iam").get_role(RoleName=name)["Role"]["Arn"]
    return arn


def _failed_user_stack(
    local_cloud: Any, role_arn: str, boundary: str, image: str, stage: str = "local"
) -> tuple[dict[str, Any], list[str]]:
    """Create templates/user-sandbox.yaml through ``role_arn``; the final stack and failures."""
    cfn = local_cloud.client("cloudformation")
    name = unique("sbx-local-svc")
    cfn.create_stack(
        StackName=name,
        TemplateBody=(ROOT / "templates" / "user-sandbox.yaml").read_text(),
        Parameters=_user_stack_parameters(local_cloud, stage, boundary, image),
        RoleARN=role_arn,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )
    stack = wait_for(
        lambda: (
            (s := cfn.describe_stacks(StackName=name)["Stacks"][0])["StackStatus"].endswith(
                "COMPLETE"
            )
            and s
        ),
        what="the user stack",
    )
    events = cfn.describe_stack_events(StackName=name)["StackEvents"]
    reasons = [
        e.get("ResourceStatusReason") or ""
        for e in events
        if e["ResourceStatus"] == "CREATE_FAILED"
    ]
    return stack, reasons


def _pushed_image(local_cloud: Any, repository: str, repository_uri: str, fill: str) -> str:
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {"size": 10, "digest": "sha256:" + fill * 64},
            "layers": [],
        }
    )
    digest = local_cloud.client("ecr").put_image(
        repositoryName=repository, imageManifest=manifest, imageTag=unique("v")
    )["image"]["imageId"]["imageDigest"]
    return f"{repository_uri}@{digest}"


@pytest.mark.parametrize(
    ("case", "denied_action"),
    [
        ("other stage", "logs:CreateLogGroup"),
        ("other boundary", "iam:CreateRole"),
        ("other repository", "ecr:BatchGetImage"),
    ],
)
def test_user_stack_is_limited_by_the_cloudformation_service_role(
    local_cloud: Any, case: str, denied_action: str
) -> None:
    """templates/user-sandbox.yaml through the template's own CloudFormationServiceRole."""
    ecr = local_cloud.client("ecr")
    other_repo = ecr.create_repository(repositoryName=unique("lc-other"))["repository"]
    image = _pushed_image(
        local_cloud, other_repo["repositoryName"], other_repo["repositoryUri"], "2"
    )
    boundary = _template_boundary(local_cloud)
    if case == "other boundary":
        boundary = local_cloud.client("iam").create_policy(
            PolicyName=unique("lc-loose"),
            PolicyDocument=json.dumps(
                {
                    "Version": "2012-10-17",
                    "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}],
                }
            ),
        )["Policy"]["Arn"]
    stage = "other" if case == "other stage" else "local"
    stack, reasons = _failed_user_stack(
        local_cloud, _service_role(local_cloud), boundary, image, stage
    )
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert len(reasons) == 1
    assert f"not authorized to perform: {denied_action}" in reasons[0]
    assert "assumed-role/" in reasons[0]


@pytest.mark.parametrize(
    "dropped",
    [
        "lambda:GetFunctionRecursionConfig",  # the Lambda create/read handlers call it
        "logs:GetDataProtectionPolicy",  # the log group read handler
        "iam:GetRolePolicy",  # the role create handler
    ],
)
def test_a_service_role_short_of_one_handler_permission_fails_the_user_stack(
    local_cloud: Any, dropped: str
) -> None:
    """The template's CloudFormationServiceRole less one permission its handlers call."""
    role_arn = _service_role_without(local_cloud, unique("lc-short"), {dropped})
    repository_uri = local_cloud.outputs["SandboxRepositoryUri"]
    image = _pushed_image(local_cloud, repository_uri.split("/", 1)[1], repository_uri, "3")
    stack, [reason] = _failed_user_stack(
        local_cloud, role_arn, _template_boundary(local_cloud), image
    )
    assert stack["StackStatus"] == "ROLLBACK_COMPLETE"
    assert f"not authorized to perform: {dropped}" in reason


def _service_role_without(local_cloud: Any, name: str, dropped: set[str]) -> str:
    """A copy of the template's CloudFormationServiceRole (or, if `name` exists, its policies
    put back on it) less the `dropped` actions; its ARN."""
    iam = local_cloud.client("iam")
    original = _service_role(local_cloud).rsplit("/", 1)[-1]
    role = iam.get_role(RoleName=original)["Role"]
    with contextlib.suppress(iam.exceptions.EntityAlreadyExistsException):
        iam.create_role(
            RoleName=name, AssumeRolePolicyDocument=json.dumps(role["AssumeRolePolicyDocument"])
        )
    for policy_name in iam.list_role_policies(RoleName=original)["PolicyNames"]:
        document = iam.get_role_policy(RoleName=original, PolicyName=policy_name)["PolicyDocument"]
        for statement in document["Statement"]:
            actions = (
                statement["Action"]
                if isinstance(statement["Action"], list)
                else [statement["Action"]]
            )
            statement["Action"] = [a for a in actions if a not in dropped] or [
                "sts:GetCallerIdentity"
            ]
        iam.put_role_policy(
            RoleName=name, PolicyName=policy_name, PolicyDocument=json.dumps(document)
        )
    return str(iam.get_role(RoleName=name)["Role"]["Arn"])


def test_a_service_role_that_may_not_delete_a_resource_leaves_the_stack_delete_failed(
    local_cloud: Any,
) -> None:
    """DeleteStack through a role short of a delete handler's permission: DELETE_FAILED with
    the reason, the function still there; with the permission back, the deletion goes through."""
    role_name = unique("lc-nodelete")
    role_arn = _service_role_without(local_cloud, role_name, {"lambda:DeleteFunction"})
    repository_uri = local_cloud.outputs["SandboxRepositoryUri"]
    image = _pushed_image(local_cloud, repository_uri.split("/", 1)[1], repository_uri, "4")
    cfn, lam = local_cloud.client("cloudformation"), local_cloud.client("lambda")
    name = unique("sbx-local-del")
    cfn.create_stack(
        StackName=name,
        TemplateBody=(ROOT / "templates" / "user-sandbox.yaml").read_text(),
        Parameters=_user_stack_parameters(
            local_cloud, "local", _template_boundary(local_cloud), image
        ),
        RoleARN=role_arn,
        Capabilities=["CAPABILITY_NAMED_IAM"],
    )

    def status() -> str:
        return str(cfn.describe_stacks(StackName=name)["Stacks"][0]["StackStatus"])

    wait_for(lambda: status().endswith("_COMPLETE") or None, what="the user stack")
    assert status() == "CREATE_COMPLETE"
    function = next(
        r["PhysicalResourceId"]
        for r in cfn.describe_stack_resources(StackName=name)["StackResources"]
        if r["ResourceType"] == "AWS::Lambda::Function"
    )

    cfn.delete_stack(StackName=name)

    assert status() == "DELETE_FAILED"
    reasons = [
        e.get("ResourceStatusReason") or ""
        for e in cfn.describe_stack_events(StackName=name)["StackEvents"]
        if e["ResourceStatus"] == "DELETE_FAILED" and e["LogicalResourceId"] != name
    ]
    assert len(reasons) == 1 and "not authorized to perform: lambda:DeleteFunction" in reasons[0]
    assert lam.get_function(FunctionName=function)["Configuration"]["FunctionName"] == function

    _service_role_without(local_cloud, role_name, set())  # the permission back
    cfn.delete_stack(StackName=name)
    with pytest.raises(ClientError, match="does not exist"):
        cfn.describe_stacks(StackName=name)
