"""The CloudFormation service role grants what the resource handlers call, and no more.

The handlers' permission sets come from the resource provider schemas cfn-lint ships
(``sandboxctl/localcloud/fixes/_handler_permissions.py``); the local cloud enforces the same
sets on every user stack (tests/integration/test_localcloud_cloudformation.py).
"""

from __future__ import annotations

from typing import Any

import pytest
from samtranslator.yaml_helper import yaml_parse

from sandboxctl.localcloud.fixes import _handler_permissions as handlers
from tests.unit.sfn_harness import ROOT

# Calls the schemas do not list but the user stacks need from the role, with the reason.
BEYOND_THE_SCHEMAS = {
    "ecr:BatchGetImage": "Lambda checks that the creator may pull the function's image",
    "ecr:GetDownloadUrlForLayer": "Lambda checks that the creator may pull the function's image",
    "s3:GetObject": "CloudFormation reads the TemplateURL object with the role",
}


def statements(node: Any) -> list[dict[str, Any]]:
    """Every statement, both branches of an ``Fn::If`` included."""
    if isinstance(node, list):
        return [s for item in node for s in statements(item)]
    if isinstance(node, dict) and "Fn::If" in node:
        return [s for branch in node["Fn::If"][1:] for s in statements(branch)]
    if isinstance(node, dict) and "Effect" in node:
        return [node]
    return []


def granted() -> dict[str, list[dict[str, Any]]]:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    role = template["Resources"]["CloudFormationServiceRole"]["Properties"]
    found: dict[str, list[dict[str, Any]]] = {}
    for policy in role["Policies"]:
        for statement in statements(policy["PolicyDocument"]["Statement"]):
            assert statement["Effect"] == "Allow"
            actions = statement["Action"]
            for action in actions if isinstance(actions, list) else [actions]:
                found.setdefault(action, []).append(statement)
    return found


def user_template_properties(resource_type: str) -> list[dict[str, Any]]:
    template = yaml_parse((ROOT / "templates/user-sandbox.yaml").read_text())
    return [
        r.get("Properties", {})
        for r in template["Resources"].values()
        if r["Type"] == resource_type
    ]


def used_by_user_template(resource_type: str, path: str) -> bool:
    for properties in user_template_properties(resource_type):
        node: Any = properties
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if node is not None:
            return True
    return False


def expected() -> set[str]:
    needed: set[str] = set(BEYOND_THE_SCHEMAS)
    for resource_type in handlers.TYPES:
        needed |= handlers.grantable(resource_type)
        for permission, (path, _why) in handlers.ONLY_WITH[resource_type].items():
            if used_by_user_template(resource_type, path):
                needed.add(permission)
    return needed


def test_the_role_grants_exactly_the_handler_permissions_of_the_user_stack() -> None:
    role = set(granted())
    missing = sorted(expected() - role)
    extra = sorted(role - expected())
    assert not missing, f"the handlers call these and the role does not grant them: {missing}"
    assert not extra, f"the role grants these and no handler needs them: {extra}"


@pytest.mark.parametrize("resource_type", handlers.TYPES)
def test_every_permission_left_out_belongs_to_a_property_the_user_stack_sets_only_if_granted(
    resource_type: str,
) -> None:
    role = set(granted())
    schema = handlers.all_permissions(resource_type)
    for permission, (path, why) in handlers.ONLY_WITH[resource_type].items():
        assert permission in schema, f"{permission} is not in the {resource_type} schema"
        if used_by_user_template(resource_type, path):
            assert permission in role, f"{permission}: the user stack sets {path} ({why})"


def test_every_schema_handler_permission_is_either_granted_or_explained() -> None:
    role = set(granted())
    for resource_type in handlers.TYPES:
        for permission in handlers.all_permissions(resource_type):
            assert permission in role or permission in handlers.ONLY_WITH[resource_type], (
                resource_type,
                permission,
            )


def test_the_boundary_can_never_be_removed_and_managed_policies_never_attached() -> None:
    role = granted()
    assert "iam:DeleteRolePermissionsBoundary" not in role
    assert "iam:AttachRolePolicy" not in role
    for action in ("iam:CreateRole", "iam:PutRolePolicy", "iam:PutRolePermissionsBoundary"):
        [statement] = role[action]
        assert statement["Condition"]["StringEquals"]["iam:PermissionsBoundary"] == {
            "Ref": "SandboxPermissionsBoundary"
        }


def test_the_schema_lists_what_the_old_role_lacked() -> None:
    """The handlers call these on every create/read: the role used to miss them."""
    lambda_create = handlers.needed("AWS::Lambda::Function", "CREATE", {"FunctionName": "f"})
    assert {"lambda:GetFunctionRecursionConfig", "lambda:GetRuntimeManagementConfig"} <= set(
        lambda_create
    )
    logs_create = handlers.needed("AWS::Logs::LogGroup", "CREATE", {"LogGroupName": "g"})
    assert "logs:GetDataProtectionPolicy" in logs_create
    assert "kms:Decrypt" not in lambda_create  # no KmsKeyArn
    with_key = handlers.needed("AWS::Lambda::Function", "CREATE", {"KmsKeyArn": "arn:k"})
    assert "kms:Decrypt" in with_key
