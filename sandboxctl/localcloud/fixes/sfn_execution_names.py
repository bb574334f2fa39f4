"""AWS behaviour restored: StartExecution without ``name`` gets a unique name (a UUID), and a
given name is validated (length, forbidden characters) before anything starts.

moto's executing backend builds ``…:execution:<machine>:None`` instead, so the second unnamed
start of a machine (every EventBridge-started execution) fails with ExecutionAlreadyExists.
"""

from __future__ import annotations

import functools
import uuid
from typing import Any

from moto.stepfunctions.parser.models import StepFunctionsParserBackend

from sandboxctl.localcloud.fixes._moto_refs import (
    is_marked,
    mark,
    require_attr,
    require_params,
)

FIX = "sfn_execution_names"


def check() -> None:
    start = require_attr(StepFunctionsParserBackend, "start_execution", FIX)
    require_params(start, ["state_machine_arn", "name", "execution_input"], FIX)
    require_attr(StepFunctionsParserBackend, "_validate_name", FIX)


def apply() -> None:
    current = StepFunctionsParserBackend.start_execution
    if is_marked(current, FIX):
        return

    @functools.wraps(current)
    def start_execution(
        self: StepFunctionsParserBackend,
        state_machine_arn: str,
        name: str | None = None,
        execution_input: str | None = None,
        trace_header: str | None = None,
    ) -> Any:
        if name is None:
            name = str(uuid.uuid4())
        else:
            # Same rules as AWS: ≤ 80 characters, no whitespace, brackets, wildcards, control
            # or URL-special characters. Rejected before anything starts.
            self._validate_name(name)
        return current(self, state_machine_arn, name, execution_input, trace_header)  # type: ignore[arg-type]

    StepFunctionsParserBackend.start_execution = mark(start_execution, FIX)  # type: ignore[method-assign]
