"""AWS behaviour restored: aws-sdk task parameters are written in PascalCase even where the
service API is camelCase (``"Limit"`` for CloudWatch Logs' ``limit``), and aws-sdk task results
come back with PascalCase keys (``LogGroups``, ``ImageDetails``), as the Step Functions developer
guide states ("Parameters in Step Functions are expressed in PascalCase").

moto ships LocalStack's request/response normalisers (``_to_boto_request``,
``_from_boto_response``) but never calls them for aws-sdk tasks, so a camelCase service fails
with ``States.Runtime KeyError('Limit')`` and results keep the wire casing.
"""

from __future__ import annotations

import functools
from typing import Any

import botocore.session
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk as aws_sdk,
)

from sandboxctl.localcloud.fixes._moto_refs import is_marked, mark, require_attr

FIX = "sfn_sdk_casing"


@functools.lru_cache(maxsize=512)
def _operation(boto_service: str, api_action: str) -> Any:
    model = botocore.session.get_session().get_service_model(boto_service)
    return model.operation_model(api_action[:1].upper() + api_action[1:])


def _normalise_parameters(
    self: Any,
    parameters: dict[str, Any],
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    operation = _operation(self._get_boto_service_name(), self.resource.api_action)
    if operation.input_shape is not None:
        self._to_boto_request(parameters, operation.input_shape)


def _normalise_response(
    self: Any,
    response: Any,
    boto_service_name: str | None = None,
    service_action_name: str | None = None,
) -> None:
    operation = _operation(self._get_boto_service_name(), self.resource.api_action)
    if operation.output_shape is not None:
        self._from_boto_response(response, operation.output_shape)


def check() -> None:
    cls = aws_sdk.StateTaskServiceAwsSdk
    for name in (
        "_to_boto_request",
        "_from_boto_response",
        "_normalise_parameters",
        "_normalise_response",
        "_get_boto_service_name",
    ):
        require_attr(cls, name, FIX)


def apply() -> None:
    cls = aws_sdk.StateTaskServiceAwsSdk
    if is_marked(cls.__dict__.get("_normalise_parameters"), FIX):
        return
    cls._normalise_parameters = mark(_normalise_parameters, FIX)  # type: ignore[method-assign]
    cls._normalise_response = mark(_normalise_response, FIX)  # type: ignore[method-assign]
