"""Names CloudFormation generates are valid for the resource type (ECR repositories: lowercase).

AWS behaviour restored: when a template gives no name, CloudFormation generates one that the
service accepts; for ``AWS::ECR::Repository`` that is ``<stack>-<logicalid>-<suffix>`` in lowercase,
since repository names must match ``[a-z0-9]+(?:[._-][a-z0-9]+)*``.

moto 5.2.5 keeps the logical id's capitals, so ECR rejects the repository and the stack fails
(``Invalid parameter at 'repositoryName'``). Hook:
``moto.cloudformation.parsing.generate_resource_name``.
"""

from __future__ import annotations

import inspect
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

LOWERCASE_TYPES = frozenset({"AWS::ECR::Repository"})


def _generate_resource_name(resource_type: str, stack_name: str, logical_id: str) -> str:
    from moto.cloudformation import parsing

    name: str = original(parsing, "generate_resource_name")(resource_type, stack_name, logical_id)
    return name.lower() if resource_type in LOWERCASE_TYPES else name


def check() -> None:
    from moto.cloudformation import parsing

    function: Any = original(parsing, "generate_resource_name")
    if list(inspect.signature(function).parameters) != [
        "resource_type",
        "stack_name",
        "logical_id",
    ]:
        raise FidelityCheckError("moto's generate_resource_name signature changed")
    if "generate_resource_name(" not in inspect.getsource(parsing.parse_resource_and_generate_name):
        raise FidelityCheckError("parse_resource_and_generate_name no longer calls the hook")


def apply() -> None:
    from moto.cloudformation import parsing

    patch(parsing, "generate_resource_name", _generate_resource_name)
