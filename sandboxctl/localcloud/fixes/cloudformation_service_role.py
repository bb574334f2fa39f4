"""A stack created with a service role (``RoleARN``) acts with that role's permissions.

AWS behaviour restored: CloudFormation assumes the stack's service role and makes every
resource call with it, so the role's policies (and permissions boundary) decide what the stack
may create: e.g. ``iam:CreateRole`` only for names under ``sbx-<stage>-*`` and only with the
required ``iam:PermissionsBoundary``, ``iam:PassRole`` of the function's role to
``lambda.amazonaws.com``, pulls of the function's image, ``lambda:CreateFunction`` only for
the user's function. A call the role may not make fails that resource
(``… is not authorized to perform: …``) and the stack rolls back. The role must trust
``cloudformation.amazonaws.com``.

What the role must allow is what AWS's resource handlers call: the ``create``+``read`` (or
``update``+``read``) permission sets of the type's resource provider schema
(``_handler_permissions``, from the schemas cfn-lint ships), less those tied to a property the
resource does not set (a KMS key, S3 code, layers …), plus the image pulls Lambda checks. So a
role short of, say, ``lambda:GetFunctionRecursionConfig`` fails here as the handler does on AWS.

Deleting such a stack needs each resource's ``delete`` set: a resource the role may not delete
fails with the same reason and the stack ends ``DELETE_FAILED``, its resources still there (AWS
deletes in reverse dependency order and keeps what it deleted before the failure; here nothing
is deleted), so a DeleteStack can be retried once the role is fixed.

moto 5.2.5 creates and deletes every resource regardless of the role. Hooks: a check
registered in ``cloudformation_rollback.RESOURCE_CHECKS``, run before each resource is created
or updated, and ``CloudFormationBackend.delete_stack``. Checked resource types:
``AWS::IAM::Role``, ``AWS::Lambda::Function``, ``AWS::Logs::LogGroup`` (what the per-user
stacks contain); others are created and deleted without a check.
"""

from __future__ import annotations

import inspect
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError, _handler_permissions
from sandboxctl.localcloud.fixes._hooks import original, patch

SESSION = "AWSCloudFormation"
# Calls IAM authorizes on "*" only (no resource-level permission).
STAR_RESOURCE = frozenset({"logs:DescribeLogGroups", "logs:DescribeResourcePolicies"})
CLOUDFORMATION = "cloudformation.amazonaws.com"


class ServiceRoleDenied(Exception):
    """The stack's service role may not make a call this resource needs (AWS: AccessDenied)."""


def _resolve(value: Any, resources_map: Any) -> Any:
    from moto.cloudformation import parsing

    return parsing.clean_json(value, resources_map)


def _repository_arn(image_uri: str) -> str | None:
    """``<acct>.dkr.ecr.<region>.amazonaws.com/<name>[:tag|@digest]`` -> the repository ARN."""
    host, _, path = image_uri.partition("/")
    parts = host.split(".")
    if len(parts) < 4 or parts[1:3] != ["dkr", "ecr"]:
        return None
    name = path.split("@", 1)[0].split(":", 1)[0]
    return f"arn:aws:ecr:{parts[3]}:{parts[0]}:repository/{name}"


def _resource_for(
    permission: str, resource_type: str, properties: dict[str, Any], arn: str
) -> tuple[str, dict[str, Any]]:
    """The resource ARN and extra condition keys a handler's call is authorized on."""
    if permission == "iam:PassRole":
        return properties.get("Role", "*"), {"iam:PassedToService": "lambda.amazonaws.com"}
    if permission.startswith("ec2:") or permission in STAR_RESOURCE:
        return "*", {}
    if permission.startswith("kms:"):
        return properties.get("KmsKeyArn") or properties.get("KmsKeyId") or "*", {}
    service = {
        "AWS::IAM::Role": "iam",
        "AWS::Lambda::Function": "lambda",
        "AWS::Logs::LogGroup": "logs",
    }
    if permission.split(":", 1)[0] == service[resource_type]:
        if resource_type == "AWS::IAM::Role":
            # iam:PermissionsBoundary is in the context of every call on a role that has one.
            return arn, {"iam:PermissionsBoundary": properties.get("PermissionsBoundary")}
        return arn, {}
    return "*", {}


def required_calls(
    stack: Any, resource_type: str, properties: dict[str, Any], operation: str
) -> list[tuple[str, str, dict[str, Any]]]:
    """(action, resource ARN, extra condition keys) CloudFormation's handlers make for this
    resource: the handler permission sets of the resource provider schema (create+read,
    update+read), less those for properties the resource does not set, plus image pulls."""
    account, region = stack.account_id, stack.region_name
    if resource_type == "AWS::IAM::Role":
        name = properties.get("RoleName")
        arn = f"arn:aws:iam::{account}:role{properties.get('Path', '/')}{name}"
    elif resource_type == "AWS::Lambda::Function":
        name = properties.get("FunctionName")
        arn = f"arn:aws:lambda:{region}:{account}:function:{name}"
    else:
        name = properties.get("LogGroupName")
        arn = f"arn:aws:logs:{region}:{account}:log-group:{name}"
    if not name:
        return []  # a generated name: decided by CloudFormation, checked as the stack's own
    calls: list[tuple[str, str, dict[str, Any]]] = []
    for permission in _handler_permissions.needed(resource_type, operation, properties):
        resource, context = _resource_for(permission, resource_type, properties, arn)
        calls.append((permission, resource, context))
    if resource_type == "AWS::Lambda::Function":
        # Lambda checks that the caller may pull the image (not in the schema's list).
        repository = _repository_arn((properties.get("Code") or {}).get("ImageUri") or "")
        if repository:
            calls.append(("ecr:BatchGetImage", repository, {}))
            calls.append(("ecr:GetDownloadUrlForLayer", repository, {}))
    return [(a, r, {k: v for k, v in c.items() if v is not None}) for a, r, c in calls]


def _trusts_cloudformation(role: Any) -> bool:
    from sandboxctl.localcloud.fixes.lambda_exec import _trusts_service

    return _trusts_service(role.assume_role_policy_document, CLOUDFORMATION)


def check_resource(
    stack: Any, logical_id: str, resource_json: dict[str, Any], resources_map: Any, operation: str
) -> None:
    """Raise ServiceRoleDenied when the stack's service role may not provision this resource."""
    from moto.iam.models import iam_backends
    from moto.utilities.utils import get_partition

    from sandboxctl.localcloud.fixes.iam_policy_evaluation import role_allows

    role_arn = getattr(stack, "role_arn", None)
    resource_type = resource_json.get("Type", "")
    if not role_arn or resource_type not in _handler_permissions.TYPES:
        return
    condition = resource_json.get("Condition")
    if condition and not resources_map.lazy_condition_map[condition]:
        return
    backend = iam_backends[stack.account_id][get_partition(stack.region_name)]
    try:
        role = backend.get_role_by_arn(role_arn)
    except Exception as exc:
        raise ServiceRoleDenied(f"Role {role_arn} is invalid or cannot be assumed") from exc
    if not _trusts_cloudformation(role):
        raise ServiceRoleDenied(f"Role {role_arn} is invalid or cannot be assumed")
    properties = _resolve(resource_json.get("Properties") or {}, resources_map)
    session = f"arn:aws:sts::{stack.account_id}:assumed-role/{role.name}/{SESSION}"
    for action, resource, context in required_calls(stack, resource_type, properties, operation):
        if not role_allows(role_arn, action, resource, context):
            raise ServiceRoleDenied(
                f"User: {session} is not authorized to perform: {action} on resource: "
                f"{resource} (Service: {action.split(':')[0]}; Status Code: 403; "
                "Error Code: AccessDenied)"
            )


def delete_denial(stack: Any) -> tuple[str, str, str] | None:
    """(logical id, type, reason) of the first resource the stack's service role may not
    delete, or None when it may delete them all (or the stack has no service role)."""
    if not getattr(stack, "role_arn", None):
        return None
    resources = stack.resource_map
    for logical_id, resource_json in resources._resource_json_map.items():
        # What the deletion will delete: resources that exist (a rolled-back stack has none).
        created = resources._parsed_resources.get(logical_id)
        if created is None or isinstance(created, str):
            continue
        if resource_json.get("DeletionPolicy") == "Retain":
            continue
        try:
            check_resource(stack, logical_id, resource_json, resources, "DELETE")
        except ServiceRoleDenied as denied:
            return logical_id, str(resource_json.get("Type", "")), str(denied)
    return None


def _stack_named(backend: Any, name_or_stack_id: str) -> Any:
    if name_or_stack_id in backend.stacks:
        return backend.stacks[name_or_stack_id]
    return next((s for s in backend.stacks.values() if s.name == name_or_stack_id), None)


def _delete_stack(self: Any, name_or_stack_id: str) -> None:
    from moto.cloudformation.models import CloudFormationBackend

    from sandboxctl.localcloud.fixes.cloudformation_rollback import resource_event

    stack = _stack_named(self, name_or_stack_id)
    denied = delete_denial(stack) if stack is not None else None
    if denied is None:
        original(CloudFormationBackend, "delete_stack")(self, name_or_stack_id)
        return
    logical_id, resource_type, reason = denied
    if stack.status != "DELETE_IN_PROGRESS":  # the `slow` fault profile already recorded it
        stack._add_stack_event("DELETE_IN_PROGRESS", resource_status_reason="User Initiated")
    resource_event(stack, logical_id, resource_type, "DELETE_FAILED", reason=reason)
    stack._add_stack_event(
        "DELETE_FAILED",
        resource_status_reason=f"The following resource(s) failed to delete: [{logical_id}]. ",
    )
    stack.status = "DELETE_FAILED"


def check() -> None:
    from sandboxctl.localcloud.fixes import cloudformation_rollback, iam_policy_evaluation

    if not hasattr(cloudformation_rollback, "RESOURCE_CHECKS"):
        raise FidelityCheckError("cloudformation_rollback no longer runs resource checks")
    if not hasattr(iam_policy_evaluation, "role_allows"):
        raise FidelityCheckError("iam_policy_evaluation.role_allows is gone")
    for resource_type in _handler_permissions.TYPES:
        if not _handler_permissions.handler_permissions(resource_type, "create"):
            raise FidelityCheckError(f"no create handler permissions for {resource_type}")
    from moto.cloudformation.models import Stack

    if "self.role_arn = role_arn" not in inspect.getsource(Stack.__init__):
        raise FidelityCheckError("moto's Stack no longer keeps role_arn")


def apply() -> None:
    from moto.cloudformation.models import CloudFormationBackend

    from sandboxctl.localcloud.fixes import cloudformation_rollback

    if check_resource not in cloudformation_rollback.RESOURCE_CHECKS:
        cloudformation_rollback.RESOURCE_CHECKS.append(check_resource)
    patch(CloudFormationBackend, "delete_stack", _delete_stack)
