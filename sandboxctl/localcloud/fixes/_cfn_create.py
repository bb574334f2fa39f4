"""Finish a resource moto's CloudFormation created: apply the properties moto ignores."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from sandboxctl.localcloud.fixes._hooks import original, patch

# (resource moto created, its Properties, account id, region)
Finisher = Callable[[Any, dict[str, Any], str, str], None]


def after_create(owner: type, finish: Finisher) -> None:
    """Run ``finish`` after ``owner.create_from_cloudformation_json`` (once; idempotent)."""

    def create_from_cloudformation_json(
        cls: Any,
        resource_name: str,
        cloudformation_json: Any,
        account_id: str,
        region_name: str,
        **kwargs: Any,
    ) -> Any:
        create = original(owner, "create_from_cloudformation_json").__func__
        resource = create(
            cls, resource_name, cloudformation_json, account_id, region_name, **kwargs
        )
        finish(resource, cloudformation_json.get("Properties") or {}, account_id, region_name)
        return resource

    patch(owner, "create_from_cloudformation_json", classmethod(create_from_cloudformation_json))


def is_cfn_classmethod(owner: type) -> bool:
    return isinstance(owner.__dict__.get("create_from_cloudformation_json"), classmethod)
