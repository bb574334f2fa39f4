"""template.yaml as CloudFormation sees it after the SAM transform (aws-sam-translator, offline).

Checks what a reviewer would: every contract output exists, rules can't lose events, the API
authenticates with Firebase, and no IAM statement grants a wildcard action.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from tests.unit.sfn_harness import ROOT

# Resource "*" is only acceptable where AWS offers no resource-level permission.
STAR_RESOURCE_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
    "ec2:CreateNetworkInterface",
    "ec2:DescribeNetworkInterfaces",
    "ec2:DeleteNetworkInterface",
    "ec2:AssignPrivateIpAddresses",
    "ec2:UnassignPrivateIpAddresses",
    "ec2:DescribeSubnets",
    "ec2:DescribeSecurityGroups",
    "ec2:DescribeVpcs",
    "xray:PutTraceSegments",
    "xray:PutTelemetryRecords",
    "xray:GetSamplingRules",
    "xray:GetSamplingTargets",
    "xray:GetSamplingStatisticSummaries",
    "xray:PutTraceSegment",
    "cloudformation:ListStacks",
    "lambda:ListFunctions",
    "ecr:GetAuthorizationToken",
    "states:ListStateMachines",
}


def source() -> dict[str, Any]:
    return yaml_parse((ROOT / "template.yaml").read_text())


@pytest.fixture(scope="module")
def transformed() -> dict[str, Any]:
    template = copy.deepcopy(source())
    for resource in template["Resources"].values():
        props = resource.get("Properties", {})
        if resource["Type"] == "AWS::Serverless::Function":
            assert props.get("CodeUri", "functions/") == "functions/"
            props["CodeUri"] = "s3://artifacts/functions.zip"
        if resource["Type"] == "AWS::Serverless::StateMachine":
            assert (ROOT / props["DefinitionUri"]).is_file()
            props["DefinitionUri"] = {"Bucket": "artifacts", "Key": props["DefinitionUri"]}
    template["Globals"]["Function"].pop("CodeUri", None)
    translator = Translator(None, Parser(), boto_session=boto3.session.Session())
    result: dict[str, Any] = translator.translate(
        template, parameter_values={}, get_managed_policy_map=dict
    )
    return result


def of_type(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def documented_outputs() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text.split("### Stack outputs that `sandboxctl` and the local cloud read")[1]
    first_paragraph = section.split("###")[0].strip().split("\n\n")[0]
    return set(re.findall(r"`([A-Z]\w+)`", first_paragraph))


def test_every_documented_output_exists_and_handlers_exist(transformed: dict[str, Any]) -> None:
    assert documented_outputs() <= set(transformed["Outputs"])
    for fn in of_type(source(), "AWS::Serverless::Function").values():
        module = fn["Properties"]["Handler"].split(".")[0]
        assert (ROOT / "functions" / f"{module}.py").is_file()


def test_rollout_marker_blocks_are_present_exactly_once() -> None:
    text = (ROOT / "template.yaml").read_text()
    for marker in (
        "  # >>> rollout resources (issue 6) >>>",
        "  # <<< rollout resources (issue 6) <<<",
        "  # >>> rollout outputs (issue 6) >>>",
        "  # <<< rollout outputs (issue 6) <<<",
    ):
        assert text.count(marker + "\n") == 1, marker


def test_every_event_rule_target_has_retries_and_a_dead_letter_queue(
    transformed: dict[str, Any],
) -> None:
    rules = of_type(transformed, "AWS::Events::Rule")
    assert rules
    for name, rule in rules.items():
        for target in rule["Properties"]["Targets"]:
            assert target.get("RetryPolicy"), name
            assert target.get("DeadLetterConfig", {}).get("Arn"), name


def test_run_api_verifies_firebase_tokens_and_only_the_webhook_is_open(
    transformed: dict[str, Any],
) -> None:
    [api] = of_type(transformed, "AWS::ApiGatewayV2::Api").values()
    body = api["Properties"]["Body"]
    [authorizer] = body["components"]["securitySchemes"].values()
    jwt = authorizer["x-amazon-apigateway-authorizer"]["jwtConfiguration"]
    assert jwt["issuer"] == {"Fn::Sub": "https://securetoken.google.com/${FirebaseProjectId}"}
    assert jwt["audience"] == [{"Ref": "FirebaseProjectId"}]
    paths = body["paths"]
    assert paths["/hooks/firebase"]["post"]["security"] == [{"NONE": []}]
    for path in ("/run", "/datasets"):
        assert "security" not in paths[path]["post"] or paths[path]["post"]["security"] != [
            {"NONE": []}
        ]


def _conditional(item: Any) -> list[dict[str, Any]]:
    """The branches of an Fn::If that are real statements or policies (not AWS::NoValue)."""
    if isinstance(item, dict) and "Fn::If" in item:
        return [b for b in item["Fn::If"][1:] if isinstance(b, dict) and "Ref" not in b]
    return [item]


def statements(template: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, resource in template["Resources"].items():
        props = resource.get("Properties", {})
        policies = [q for p in props.get("Policies", []) for q in _conditional(p)]
        documents = [p["PolicyDocument"] for p in policies]
        if "PolicyDocument" in props:
            documents.append(props["PolicyDocument"])
        for document in documents:
            for statement in document.get("Statement", []):
                yield name, statement


def test_no_allow_statement_has_a_wildcard_action(transformed: dict[str, Any]) -> None:
    for name, raw in statements(transformed):
        for statement in _conditional(raw):
            if statement["Effect"] != "Allow":
                continue
            actions = statement["Action"]
            actions = actions if isinstance(actions, list) else [actions]
            assert all("*" not in a for a in actions), (name, actions)
            if statement.get("Resource") == "*":
                assert set(actions) <= STAR_RESOURCE_ACTIONS, (name, actions)


def test_roles_are_created_only_under_the_boundary_with_the_name_prefix() -> None:
    role = source()["Resources"]["CloudFormationServiceRole"]["Properties"]
    [policy] = role["Policies"]
    creating = [
        s
        for s in policy["PolicyDocument"]["Statement"]
        if isinstance(s, dict) and "iam:CreateRole" in s.get("Action", [])
    ]
    [statement] = creating
    assert statement["Resource"] == {
        "Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/sbx-${Stage}-*"
    }
    assert statement["Condition"]["StringEquals"]["iam:PermissionsBoundary"] == {
        "Ref": "SandboxPermissionsBoundary"
    }


def test_every_log_group_expires_and_every_function_has_one(transformed: dict[str, Any]) -> None:
    groups = of_type(transformed, "AWS::Logs::LogGroup")
    assert all(g["Properties"].get("RetentionInDays") for g in groups.values())
    named = {str(g["Properties"].get("LogGroupName")) for g in groups.values()}
    for name in of_type(transformed, "AWS::Lambda::Function"):
        assert any(name in n for n in named), name


def test_registry_table_matches_the_documented_schema(transformed: dict[str, Any]) -> None:
    table = transformed["Resources"]["RegistryTable"]["Properties"]
    assert table["KeySchema"] == [{"AttributeName": "pk", "KeyType": "HASH"}]
    [index] = table["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "ByStatus"
    assert [k["AttributeName"] for k in index["KeySchema"]] == ["status", "pk"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True


def test_state_machines_log_and_trace(transformed: dict[str, Any]) -> None:
    for name, machine in of_type(transformed, "AWS::StepFunctions::StateMachine").items():
        props = machine["Properties"]
        assert props["TracingConfiguration"]["Enabled"] is True, name
        assert props["LoggingConfiguration"]["Destinations"], name
