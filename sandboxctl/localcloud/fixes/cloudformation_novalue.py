"""``AWS::NoValue`` removes a list element, as it removes a property.

AWS behaviour restored: ``!If [cond, value, !Ref AWS::NoValue]`` inside a list (a policy
statement in ``Statement``, a policy in a role's ``Policies``, a SAM ``Policies`` entry) drops that
element when the condition is false.

moto 5.2.5 drops ``NoValue`` properties of objects but leaves ``None`` in lists, so a role whose
``Policies`` holds a conditional entry fails to create (``'NoneType' object is not
subscriptable``) and a conditional statement becomes ``null`` in the policy document. Hook:
``moto.cloudformation.parsing.clean_json`` (recursive through the module global).
"""

from __future__ import annotations

import inspect
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch


def _clean_json(resource_json: Any, resources_map: Any) -> Any:
    from moto.cloudformation import parsing

    if isinstance(resource_json, list):
        cleaned = (_clean_json(value, resources_map) for value in resource_json)
        return [value for value in cleaned if value is not None]
    return original(parsing, "clean_json")(resource_json, resources_map)


def check() -> None:
    from moto.cloudformation import parsing

    source = inspect.getsource(original(parsing, "clean_json"))
    if "return [clean_json(val, resources_map) for val in resource_json]" not in source:
        raise FidelityCheckError("moto's clean_json no longer maps lists element by element")


def apply() -> None:
    from moto.cloudformation import parsing

    patch(parsing, "clean_json", _clean_json)
