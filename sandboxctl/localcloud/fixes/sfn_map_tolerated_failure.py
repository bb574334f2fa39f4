"""AWS behaviour restored: a Distributed Map fails with ``States.ExceedToleratedFailureThreshold``
once more of its items failed than ``ToleratedFailureCount``/``ToleratedFailurePercentage``
(either, or their ``…Path`` forms) allow; with neither set, any failed item fails the Map.

moto parses both fields ("currently have no effect") and counts failed items in the map run
record, but its distributed worker swallows each child failure (the item's output becomes
``null``) and the Map always succeeds: a rollout could never halt on its failure budget.
Hook: ``DistributedIterationComponent._map_run`` (the item counters are complete when it returns).
"""

from __future__ import annotations

from typing import Any

from moto.stepfunctions.parser.api import HistoryEventType, MapRunFailedEventDetails
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
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    distributed_iteration_component as dic,
)
from moto.stepfunctions.parser.asl.eval.event.event_detail import EventDetails

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

FIX = "sfn_map_tolerated_failure"
_Component = dic.DistributedIterationComponent


def exceeds(failed: int, total: int, count: int | None, percentage: float | None) -> bool:
    """AWS's rule: over the count, or over the percentage of all items; no budget means zero."""
    if failed <= 0:
        return False
    if count is None and percentage is None:
        return True
    if count is not None and failed > count:
        return True
    return percentage is not None and total > 0 and failed * 100.0 / total > percentage


def _configured(value: Any, default: Any) -> Any:
    """moto fills an absent field with 0; a zero budget and no budget both tolerate nothing."""
    return None if value is None or value == default else value


def _map_run(self: Any, env: Any, eval_input: Any) -> None:
    original(_Component, "_map_run")(self, env, eval_input)
    record = eval_input.map_run_record
    counter = record.item_counter
    failed = counter.failed.get() + counter.timed_out.get()
    total = counter.total.get()
    count = _configured(eval_input.tolerated_failure_count, 0)
    percentage = _configured(eval_input.tolerated_failure_percentage, 0.0)
    if not exceeds(failed, total, count, percentage):
        return
    env.stack.pop()  # the outputs the Map would have returned
    error = StatesErrorName(typ=StatesErrorNameType.StatesExceedToleratedFailureThreshold)
    cause = (
        f"The specified tolerated failure threshold was exceeded: {failed} of {total} items failed"
    )
    raise FailureEventException(
        failure_event=FailureEvent(
            env=env,
            error_name=error,
            event_type=HistoryEventType.MapRunFailed,
            event_details=EventDetails(  # type: ignore[typeddict-item]
                mapRunFailedEventDetails=MapRunFailedEventDetails(
                    error=error.error_name, cause=cause
                )
            ),
        )
    )


def check() -> None:
    if not callable(getattr(_Component, "_map_run", None)):
        raise FidelityCheckError(f"{FIX}: DistributedIterationComponent._map_run is gone")
    names = set(_Component._map_run.__code__.co_names)
    if "map_run_record" not in names and not getattr(
        _Component._map_run, "__sandbox_fleet_hook__", False
    ):
        raise FidelityCheckError(f"{FIX}: _map_run no longer reads the map run record")
    record_cls = dic.MapRunRecord
    if "item_counter" not in set(record_cls.__init__.__code__.co_names):
        raise FidelityCheckError(f"{FIX}: MapRunRecord has no item_counter any more")


def apply() -> None:
    patch(_Component, "_map_run", _map_run)
