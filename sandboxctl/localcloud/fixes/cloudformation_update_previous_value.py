"""AWS behaviour restored: ``UpdateStack`` with ``UsePreviousValue: true`` keeps the value the
parameter had, also when that value came from the template's ``Default`` at creation.

moto looks the key up only among the parameters passed explicitly when the stack was created,
so a defaulted parameter raises ``KeyError`` (HTTP 500) and no rollout can keep "every other
parameter at its previous value". Hook: ``CloudFormationBackend._resolve_update_parameters``.
"""

from __future__ import annotations

from typing import Any

from moto.cloudformation.models import CloudFormationBackend

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

FIX = "cloudformation_update_previous_value"


def _previous_values(instance: Any) -> dict[str, str]:
    """Every parameter's value as DescribeStacks reports it (explicit or defaulted)."""
    values: dict[str, str] = {}
    resource_map = getattr(instance, "resource_map", None)
    resolved = getattr(resource_map, "resolved_parameters", None) or {}
    for key, value in resolved.items():
        if not str(key).startswith("AWS::"):
            # CommaDelimitedList parameters resolve to lists; the API value is the joined string.
            values[str(key)] = ",".join(map(str, value)) if isinstance(value, list) else value
    values.update(getattr(instance, "parameters", None) or {})
    return values


def _resolve_update_parameters(
    self: Any, instance: Any, incoming_params: list[dict[str, Any]]
) -> dict[str, Any]:
    previous = _previous_values(instance)
    missing = [
        p["ParameterKey"]
        for p in incoming_params
        if p.get("UsePreviousValue", False) and p["ParameterKey"] not in previous
    ]
    if missing:
        # AWS answers a ValidationError for a key the stack never had; moto would 500.
        from moto.cloudformation.exceptions import ValidationError

        raise ValidationError(
            message=f"Parameters: [{', '.join(missing)}] do not exist in the template"
        )
    known = dict(getattr(instance, "parameters", None) or {})
    try:
        instance.parameters = previous
        return original(CloudFormationBackend, "_resolve_update_parameters")(
            self, instance, incoming_params
        )
    finally:
        instance.parameters = known


def _names(code: Any) -> set[str]:
    """Names a function reads, including inside its comprehensions (nested code objects)."""
    names = set(code.co_names)
    for const in code.co_consts:
        if hasattr(const, "co_names"):
            names |= _names(const)
    return names


def check() -> None:
    method = getattr(CloudFormationBackend, "_resolve_update_parameters", None)
    if method is None:
        raise FidelityCheckError(f"{FIX}: CloudFormationBackend._resolve_update_parameters is gone")
    if not getattr(method, "__sandbox_fleet_hook__", False) and "parameters" not in _names(
        method.__code__
    ):
        raise FidelityCheckError(
            f"{FIX}: _resolve_update_parameters no longer reads instance.parameters"
        )


def apply() -> None:
    patch(CloudFormationBackend, "_resolve_update_parameters", _resolve_update_parameters)
