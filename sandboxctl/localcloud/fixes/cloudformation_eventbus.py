"""``Ref`` of a CloudFormation event bus returns the bus name.

AWS behaviour restored: for ``AWS::Events::EventBus``, ``Ref`` returns the bus name (and
``Fn::GetAtt Name/Arn`` the name/ARN), so templates pass it to rules, policies and functions.

moto 5.2.5 gives the model no ``physical_resource_id``, so ``Ref`` yields the Python object
and the stack fails (``'EventBus' object has no attribute 'split'``). Hook:
``moto.events.models.EventBus.physical_resource_id``.
"""

from __future__ import annotations

from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import is_patched, patch


def _physical_resource_id(self: Any) -> str:
    return str(self.name)


def check() -> None:
    from moto.events.models import EventBus

    if "physical_resource_id" in EventBus.__dict__ and not is_patched(
        EventBus, "physical_resource_id"
    ):
        raise FidelityCheckError(
            "moto's EventBus now defines physical_resource_id: drop cloudformation_eventbus"
        )
    if not hasattr(EventBus, "create_from_cloudformation_json"):
        raise FidelityCheckError("moto's EventBus is no longer a CloudFormation model")


def apply() -> None:
    from moto.events.models import EventBus

    patch(EventBus, "physical_resource_id", property(_physical_resource_id))
