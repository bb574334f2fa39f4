"""A repository created by CloudFormation keeps its ``RepositoryPolicyText``.

AWS behaviour restored: ``AWS::ECR::Repository`` with ``RepositoryPolicyText`` gets that
repository policy (``GetRepositoryPolicy`` returns it); the sandbox repository's policy is what
lets ``lambda.amazonaws.com`` pull the image for every user function.

moto 5.2.5 ignores the property, so ``GetRepositoryPolicy`` answers
``RepositoryPolicyNotFoundException`` and ``sandboxctl doctor`` cannot see that Lambda may pull.
Hook: ``Repository.create_from_cloudformation_json`` (then ``ECRBackend.set_repository_policy``,
which validates the document as ECR does).
"""

from __future__ import annotations

import json
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._cfn_create import after_create, is_cfn_classmethod

FIX = "cloudformation_ecr_repository_policy"


def _policy(repository: Any, properties: dict[str, Any], account_id: str, region: str) -> None:
    from moto.ecr.models import ecr_backends

    policy = properties.get("RepositoryPolicyText")
    if policy:
        ecr_backends[account_id][region].set_repository_policy(
            registry_id=None,  # type: ignore[arg-type]
            repository_name=repository.name,
            policy_text=policy if isinstance(policy, str) else json.dumps(policy),
        )


def check() -> None:
    from moto.ecr.models import ECRBackend, Repository

    if not is_cfn_classmethod(Repository):
        raise FidelityCheckError(f"{FIX}: Repository.create_from_cloudformation_json changed")
    if not hasattr(ECRBackend, "set_repository_policy"):
        raise FidelityCheckError(f"{FIX}: ECRBackend.set_repository_policy is gone")


def apply() -> None:
    from moto.ecr.models import Repository

    after_create(Repository, _policy)
