"""AWS behaviour restored: errors of aws-sdk tasks are named ``<Service>.<Error>`` with the
service in the SDK's PascalCase (``Lambda.ResourceNotFoundException``,
``CloudFormation.CloudFormationException``, ``DynamoDb.ConditionalCheckFailedException``,
``AcmPca.…``), so a Retry/Catch written for AWS matches here; and ``States.ALL`` does not catch
or retry ``States.Runtime`` (nor ``States.DataLimitExceeded``), which AWS treats as terminal.

moto names only DynamoDB and SFN this way and keeps the lower-case resource name for the rest
(``lambda.ResourceNotFoundException``), and its ``States.ALL`` matches every error.
"""

from __future__ import annotations

import functools
from typing import Any

from moto.stepfunctions.parser.asl.component.common.error_name.error_equals_decl import (
    ErrorEqualsDecl,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
    StatesErrorName,
)
from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
    StatesErrorNameType,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_task.service import (
    state_task_service_aws_sdk as aws_sdk,
)

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._moto_refs import is_marked, mark, require_attr
from sandboxctl.localcloud.fixes._sdk_names import sdk_services

FIX = "sfn_error_names"

# AWS: "A retrier or catcher on States.ALL won't catch States.Runtime"; DataLimitExceeded
# is likewise terminal.
_TERMINAL = frozenset(
    {StatesErrorNameType.StatesRuntime, StatesErrorNameType.StatesStatesDataLimitExceeded}
)


def service_error_prefix(resource_service: str) -> str:
    """``lambda`` → ``Lambda``; unknown names keep moto's spelling."""
    entry = sdk_services().get(resource_service.lower())
    return entry[0] if entry else resource_service


def check() -> None:
    cls = aws_sdk.StateTaskServiceAwsSdk
    require_attr(cls, "_normalise_service_error_name", FIX)
    require_attr(cls, "_normalise_exception_name", FIX)
    require_attr(ErrorEqualsDecl, "_eval_body", FIX)
    require_attr(ErrorEqualsDecl, "_STATE_ALL_ERROR", FIX)
    require_attr(StatesErrorNameType, "StatesRuntime", FIX)
    if service_error_prefix("lambda") != "Lambda" or service_error_prefix("acmpca") != "AcmPca":
        raise FidelityCheckError(f"{FIX}: botocore service ids no longer give SDK v2 names")


def apply() -> None:
    cls = aws_sdk.StateTaskServiceAwsSdk
    if not is_marked(cls.__dict__["_normalise_service_error_name"].__func__, FIX):
        cls._normalise_service_error_name = staticmethod(mark(service_error_prefix, FIX))  # type: ignore[method-assign]

    original = ErrorEqualsDecl._eval_body
    if is_marked(original, FIX):
        return

    @functools.wraps(original)
    def _eval_body(self: ErrorEqualsDecl, env: Any) -> None:
        error_name = env.stack[-1]
        terminal = isinstance(error_name, StatesErrorName) and error_name.typ in _TERMINAL
        if terminal and ErrorEqualsDecl._STATE_ALL_ERROR in self.error_names:
            env.stack.pop()
            env.stack.append(False)
            return
        original(self, env)

    ErrorEqualsDecl._eval_body = mark(_eval_body, FIX)  # type: ignore[method-assign]
