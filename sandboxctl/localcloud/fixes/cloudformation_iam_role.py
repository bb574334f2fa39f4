"""CloudFormation IAM roles get usable inline policies and their managed policies attached.

AWS behaviour restored: an ``AWS::IAM::Role`` has the inline ``Policies`` and the
``ManagedPolicyArns`` (customer managed, or AWS managed such as
``service-role/AWSLambdaBasicExecutionRole`` that SAM adds) its template declares, and callers
holding the role's credentials are authorized by them.

moto 5.2.5 stores CloudFormation inline policies as dicts, so the IAM enforcement code crashes
(``KeyError: 'policy_document'``) on the first call made with the role, and it ignores
``ManagedPolicyArns`` entirely (and, once they are attached, cannot delete the role).
AWS managed policies are loaded on demand from moto's bundled
copy (loading all of them at start-up costs seconds). Hook:
``moto.iam.models.Role.{create,delete}_from_cloudformation_json``.
"""

from __future__ import annotations

import json
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch


def _ensure_aws_managed_policy(backend: Any, arn: str) -> None:
    """Make an AWS managed policy exist in the account's IAM backend (as it does in AWS)."""
    from moto.iam.aws_managed_policies import aws_managed_policies_data
    from moto.iam.models import AWSManagedPolicy

    if arn in backend.managed_policies or ":iam::aws:policy/" not in arn:
        return
    name = arn.rsplit("/", 1)[-1]
    data = json.loads(aws_managed_policies_data).get(name)
    if data is None:
        return  # attach_role_policy reports it as AWS does: "does not exist or is not attachable"
    policy = AWSManagedPolicy.from_data(name, backend.account_id, backend.region_name, data)
    backend.managed_policies[policy.arn] = policy


def _create(
    cls: Any,
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> Any:
    from moto.iam.models import iam_backends
    from moto.utilities.utils import get_partition

    role = original(cls, "create_from_cloudformation_json").__func__(
        cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
    )
    properties = cloudformation_json["Properties"]
    for name, document in list(role.policies.items()):
        if not isinstance(document, str):
            role.policies[name] = json.dumps(document)
    backend = iam_backends[account_id][get_partition(region_name)]
    for arn in properties.get("ManagedPolicyArns") or []:
        _ensure_aws_managed_policy(backend, arn)
        backend.attach_role_policy(policy_arn=arn, role_name=role.name)
    return role


def _delete(
    cls: Any,
    resource_name: str,
    cloudformation_json: dict[str, Any],
    account_id: str,
    region_name: str,
) -> None:
    """CloudFormation detaches the managed policies it attached before deleting the role."""
    from moto.iam.models import iam_backends
    from moto.utilities.utils import get_partition

    backend = iam_backends[account_id][get_partition(region_name)]
    for role in list(backend.roles.values()):
        if role.name == resource_name:
            for arn in list(role.managed_policies):
                backend.detach_role_policy(arn, role.name)
    original(cls, "delete_from_cloudformation_json").__func__(
        cls, resource_name, cloudformation_json, account_id, region_name
    )


def check() -> None:
    from moto.iam import aws_managed_policies
    from moto.iam.access_control import IAMPolicy
    from moto.iam.models import AWSManagedPolicy, Role

    if not isinstance(original(Role, "create_from_cloudformation_json"), classmethod):
        raise FidelityCheckError("Role.create_from_cloudformation_json is no longer a classmethod")
    if not hasattr(aws_managed_policies, "aws_managed_policies_data"):
        raise FidelityCheckError("moto no longer bundles aws_managed_policies_data")
    if not hasattr(AWSManagedPolicy, "from_data"):
        raise FidelityCheckError("AWSManagedPolicy.from_data is gone")
    try:
        IAMPolicy({"Version": "2012-10-17", "Statement": []})
    except KeyError:
        return  # still the dict bug this fix works around
    raise FidelityCheckError("moto's IAMPolicy now accepts dict documents: revisit this fix")


def apply() -> None:
    from moto.iam.models import Role

    patch(Role, "create_from_cloudformation_json", classmethod(_create))
    patch(Role, "delete_from_cloudformation_json", classmethod(_delete))
