"""What CloudFormation's resource handlers call, from the resource provider schemas.

Each resource type's schema (shipped with cfn-lint, as AWS publishes them) lists, per handler
(create, read, update, delete), the permissions the handler needs from the caller: for a stack
with a service role, from that role. Some are only used when the resource sets a property (a
KMS key, S3 code, layers …); ``ONLY_WITH`` names that property for each such permission, so a
resource that does not set it needs the rest. The template's CloudFormationServiceRole is
derived from the same data (tests/unit/test_service_role.py compares them) and the local cloud
enforces it (fix cloudformation_service_role).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

# The per-user stack's resource types (templates/user-sandbox.yaml).
TYPES = ("AWS::IAM::Role", "AWS::Lambda::Function", "AWS::Logs::LogGroup")
# Handlers CloudFormation runs during stack operations (``list`` is never run by a stack).
OPERATIONS = {"CREATE": ("create", "read"), "UPDATE": ("update", "read"), "DELETE": ("delete",)}

# permission -> (property whose presence makes the handler call it, why); per resource type.
ONLY_WITH: dict[str, dict[str, tuple[str, str]]] = {
    "AWS::Lambda::Function": {
        "s3:GetObject": ("Code.S3Bucket", "reads a .zip package from S3"),
        "s3:GetObjectVersion": ("Code.S3ObjectVersion", "reads a versioned .zip from S3"),
        "ec2:DescribeSecurityGroups": ("VpcConfig", "validates the function's VPC config"),
        "ec2:DescribeSubnets": ("VpcConfig", "validates the function's VPC config"),
        "ec2:DescribeVpcs": ("VpcConfig", "validates the function's VPC config"),
        "elasticfilesystem:DescribeMountTargets": ("FileSystemConfigs", "mounts EFS"),
        "s3files:ListMountTargets": ("FileSystemConfigs", "mounts S3 Files"),
        "kms:CreateGrant": ("KmsKeyArn", "encrypts the environment with a customer key"),
        "kms:Decrypt": ("KmsKeyArn", "encrypts the environment with a customer key"),
        "kms:DescribeKey": ("KmsKeyArn", "encrypts the environment with a customer key"),
        "kms:Encrypt": ("KmsKeyArn", "encrypts the environment with a customer key"),
        "kms:GenerateDataKey": ("KmsKeyArn", "encrypts the environment with a customer key"),
        "lambda:GetCodeSigningConfig": ("CodeSigningConfigArn", "reads the signing config"),
        "lambda:PutFunctionCodeSigningConfig": ("CodeSigningConfigArn", "sets code signing"),
        "lambda:DeleteFunctionCodeSigningConfig": ("CodeSigningConfigArn", "removes signing"),
        "lambda:GetLayerVersion": ("Layers", "attaches layers"),
        "lambda:PassCapacityProvider": ("CapacityProviderConfig", "runs on managed instances"),
    },
    "AWS::IAM::Role": {
        "iam:AttachRolePolicy": ("ManagedPolicyArns", "attaches managed policies"),
        "iam:DetachRolePolicy": ("ManagedPolicyArns", "detaches managed policies"),
        # Removing the boundary would lift the cap on a tenant's role: never granted, so an
        # update that drops PermissionsBoundary fails, as it must.
        "iam:DeleteRolePermissionsBoundary": ("PermissionsBoundary:removed", "lifts the cap"),
    },
    "AWS::Logs::LogGroup": {
        "logs:AssociateKmsKey": ("KmsKeyId", "encrypts the group with a customer key"),
        "logs:DisassociateKmsKey": ("KmsKeyId", "encrypts the group with a customer key"),
        "logs:PutDataProtectionPolicy": ("DataProtectionPolicy", "masks sensitive data"),
        "logs:PutIndexPolicy": ("FieldIndexPolicies", "indexes fields"),
        "logs:DeleteIndexPolicy": ("FieldIndexPolicies", "indexes fields"),
        "logs:PutResourcePolicy": ("ResourcePolicyDocument", "sets a resource policy"),
        "logs:DeleteResourcePolicy": ("ResourcePolicyDocument", "sets a resource policy"),
        "logs:CreateLogDelivery": ("ResourcePolicyDocument", "delivers to S3/Firehose"),
        "s3:REST.PUT.OBJECT": ("ResourcePolicyDocument", "delivers to S3"),
        "firehose:TagDeliveryStream": ("ResourcePolicyDocument", "delivers to Firehose"),
    },
}


class SchemasUnavailable(RuntimeError):
    """cfn-lint's resource provider schemas are not installed."""


@functools.cache
def _schema(resource_type: str, region: str = "us-east-1") -> dict[str, Any]:
    try:
        import cfnlint.data.schemas
    except ImportError as error:  # pragma: no cover - a dependency of the project
        raise SchemasUnavailable("cfn-lint (resource provider schemas) is not installed") from error
    root = Path(cfnlint.data.schemas.__file__).parent
    index = json.loads((root / "providers" / f"{region}.json").read_text())
    if resource_type not in index:
        raise SchemasUnavailable(f"no provider schema for {resource_type}")
    schema: dict[str, Any] = json.loads(
        (root / "resources" / f"{index[resource_type]}.json").read_text()
    )
    return schema


def handler_permissions(resource_type: str, handler: str) -> list[str]:
    """The schema's permission list for one handler (create/read/update/delete)."""
    handlers = _schema(resource_type).get("handlers", {})
    return list(handlers.get(handler, {}).get("permissions", []))


def all_permissions(resource_type: str) -> set[str]:
    """Every permission a stack operation on this type may need (create, read, update, delete)."""
    return {
        p
        for h in ("create", "read", "update", "delete")
        for p in handler_permissions(resource_type, h)
    }


def _has(properties: dict[str, Any], path: str) -> bool:
    if path.endswith(":removed"):
        return False  # only an update that removes the property needs it; checked on UPDATE
    node: Any = properties
    for part in path.split("."):
        if not isinstance(node, dict) or node.get(part) in (None, "", []):
            return False
        node = node[part]
    return True


def needed(resource_type: str, operation: str, properties: dict[str, Any]) -> list[str]:
    """Permissions the handlers of ``operation`` call for a resource with these properties."""
    optional = ONLY_WITH.get(resource_type, {})
    permissions: list[str] = []
    for handler in OPERATIONS[operation]:
        for permission in handler_permissions(resource_type, handler):
            trigger = optional.get(permission)
            if trigger and not _has(properties, trigger[0]):
                continue
            if permission not in permissions:
                permissions.append(permission)
    return permissions


def grantable(resource_type: str) -> set[str]:
    """What a service role for stacks of this type must grant: all but ``ONLY_WITH``."""
    return all_permissions(resource_type) - set(ONLY_WITH.get(resource_type, {}))
