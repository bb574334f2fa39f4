"""AWS behaviour restored: aws-sdk task resources name services as Step Functions does
(``aws-sdk:eventbridge:putEvents``, ``aws-sdk:cloudwatchlogs:…``, ``aws-sdk:acmpca:…``), i.e. the
SDK v2 client name in lower case, even where boto3 calls the service differently
(``events``, ``logs``, ``acm-pca``).

moto passes the resource name straight to ``boto3.client`` and fails with UnknownServiceError
for every service whose boto3 name differs (it maps only ``sfn``/``states``).
"""

from __future__ import annotations

from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service as service_module,
)

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._sdk_names import sdk_services

FIX = "sfn_sdk_service_names"


def _overrides() -> dict[str, str]:
    return {
        resource: boto_name
        for resource, (_, boto_name) in sdk_services().items()
        if resource != boto_name
    }


def check() -> None:
    table = getattr(service_module.StateTaskService, "_SERVICE_NAME_SFN_TO_BOTO_OVERRIDES", None)
    if not isinstance(table, dict):
        raise FidelityCheckError(f"{FIX}: StateTaskService has no service-name override table")
    if _overrides().get("eventbridge") != "events":
        raise FidelityCheckError(f"{FIX}: botocore no longer maps EventBridge to 'events'")


def apply() -> None:
    table = service_module.StateTaskService._SERVICE_NAME_SFN_TO_BOTO_OVERRIDES
    for resource, boto_name in _overrides().items():
        # moto's own entries (sfn/states → stepfunctions) win.
        table.setdefault(resource, boto_name)
