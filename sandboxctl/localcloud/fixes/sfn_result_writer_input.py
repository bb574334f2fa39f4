"""AWS behaviour restored: a Distributed Map's ``ResultWriter`` parameters (``"Prefix.$"``,
``"Bucket.$"``) are evaluated against the Map state's input, like every other path of the state.

moto evaluates them against the Map's result list (the top of its evaluation stack), so
``"Prefix.$": "$.results_prefix"`` fails with ``States.Runtime`` ("could not be found in the
input '[…]'"). Hook: ``ResultWriter._eval_body``.
"""

from __future__ import annotations

from typing import Any

from moto.stepfunctions.parser.asl.component.state.exec.state_map.result_writer import (
    result_writer_decl,
)

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import patch

FIX = "sfn_result_writer_input"
_ResultWriter = result_writer_decl.ResultWriter


def _eval_body(self: Any, env: Any) -> None:
    results = env.stack.pop()
    env.stack.append(env.states.get_input())
    self.parargs.eval(env=env)
    parameters = env.stack.pop()
    env.stack.pop()  # the state input pushed above
    env.stack.append(results)
    env.stack.append(parameters)
    self.resource_eval.eval_resource(env=env)


def check() -> None:
    body = getattr(_ResultWriter, "_eval_body", None)
    if body is None or getattr(body, "__sandbox_fleet_hook__", False):
        return
    names = set(body.__code__.co_names)
    if not {"parargs", "resource_eval", "eval_resource"} <= names:
        raise FidelityCheckError(
            f"{FIX}: ResultWriter._eval_body no longer evaluates parargs then the resource"
        )


def apply() -> None:
    patch(_ResultWriter, "_eval_body", _eval_body)
