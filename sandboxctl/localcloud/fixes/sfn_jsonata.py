"""AWS behaviour restored: ``QueryLanguage: JSONata`` states evaluate their ``{% … %}``
expressions (here with the pinned ``jsonata-python`` package), a failing expression fails the
state with ``States.QueryEvaluationError`` as on AWS, and string variables containing quotes or
backslashes reach the expression intact.

moto ships the LocalStack bridge without its JVM: ``_eval_jsonata`` is ``None`` and every JSONata
state fails with ``States.Runtime TypeError('NoneType' object is not callable)``. moto also
splices string variables into the expression unescaped (``"<value>"``).
"""

from __future__ import annotations

import functools
import json
from typing import Any

import jsonata
from moto.stepfunctions.parser.asl.jsonata import jsonata as moto_jsonata
from moto.stepfunctions.parser.asl.utils.encoding import to_json_str

from sandboxctl.localcloud.fixes._moto_refs import (
    import_tree,
    is_marked,
    mark,
    replace_everywhere,
    require_attr,
)

FIX = "sfn_jsonata"
_PREFIXES = ("moto.stepfunctions.parser",)


@functools.lru_cache(maxsize=2048)
def _compiled(expression: str) -> jsonata.Jsonata:
    return jsonata.Jsonata(expression)


def eval_jsonata(expression: str) -> Any:
    """Evaluate a composed JSONata expression; results are plain JSON values like on AWS."""
    try:
        result = _compiled(expression).evaluate(None)
        # Round-trip: drop jsonata-python's list/sequence subclasses; functions are not JSON.
        return None if result is None else json.loads(json.dumps(result))
    except (jsonata.JException, TypeError, ValueError, RecursionError) as error:
        raise moto_jsonata.JSONataException("States.QueryEvaluationError", str(error)) from error


def encode_jsonata_variable_declarations(bindings: dict[str, Any]) -> str:
    """``$name := <JSON literal>;`` for each binding; a JSON literal is a valid JSONata literal."""
    return "".join(
        f"{reference}:={to_json_str(value, separators=(',', ':'))};"
        for reference, value in bindings.items()
    )


def _query_evaluation_failure(env: Any, expression: str, error: Exception) -> Exception:
    from moto.stepfunctions.parser.api import EvaluationFailedEventDetails, HistoryEventType
    from moto.stepfunctions.parser.asl.component.common.error_name.failure_event import (
        FailureEvent,
        FailureEventException,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name import (
        StatesErrorName,
    )
    from moto.stepfunctions.parser.asl.component.common.error_name.states_error_name_type import (
        StatesErrorNameType,
    )
    from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

    error_name = StatesErrorName(typ=StatesErrorNameType.StatesQueryEvaluationError)
    details = getattr(error, "details", None) or str(error)
    return FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=error_name,
            event_type=HistoryEventType.EvaluationFailed,
            event_details=EventDetails(  # type: ignore[typeddict-item]
                evaluationFailedEventDetails=EvaluationFailedEventDetails(
                    error=error_name.error_name,
                    cause=f"An error occurred while evaluating the JSONata expression "
                    f"'{expression}': {details}",
                )
            ),
        )
    )


def _wrap_eval_body(cls: type) -> None:
    original = cls._eval_body  # type: ignore[attr-defined]
    if is_marked(original, FIX):
        return

    @functools.wraps(original)
    def _eval_body(self: Any, env: Any) -> None:
        try:
            original(self, env)
        except moto_jsonata.JSONataException as error:
            raise _query_evaluation_failure(env, self.expression, error) from error

    cls._eval_body = mark(_eval_body, FIX)  # type: ignore[attr-defined]


def check() -> None:
    require_attr(moto_jsonata, "_eval_jsonata", FIX)
    require_attr(moto_jsonata, "JSONataException", FIX)
    require_attr(moto_jsonata, "encode_jsonata_variable_declarations", FIX)
    from moto.stepfunctions.parser.asl.component.common.string import string_expression

    for name in ("StringJSONata", "StringVariableSample"):
        require_attr(require_attr(string_expression, name, FIX), "_eval_body", FIX)


def apply() -> None:
    from moto.stepfunctions.parser.asl.component.common.string import string_expression

    moto_jsonata._eval_jsonata = eval_jsonata
    if not is_marked(moto_jsonata.encode_jsonata_variable_declarations, FIX):
        import_tree("moto.stepfunctions.parser.asl")
        replace_everywhere(
            moto_jsonata,
            "encode_jsonata_variable_declarations",
            mark(encode_jsonata_variable_declarations, FIX),
            _PREFIXES,
        )
    _wrap_eval_body(string_expression.StringJSONata)
    _wrap_eval_body(string_expression.StringVariableSample)
