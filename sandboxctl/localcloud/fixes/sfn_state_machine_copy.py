"""AWS behaviour restored: every StartExecution of a machine works, however many executions
already ran or are running; each execution runs on a snapshot of the definition it started with.

moto snapshots the machine with ``copy.deepcopy``. A plain deep copy also copies the machine's
earlier executions (live worker threads, ``RLock``s) and the backend holding every other
machine, and fails with ``TypeError: cannot pickle '_thread.RLock' object`` once one execution
has run (measured on moto 5.2.1). moto 5.2.5 passes a memo that skips both; this fix makes the
snapshot rule part of the state machine itself (``__deepcopy__``), so it holds whichever way
moto copies it.
"""

from __future__ import annotations

import copy
from typing import Any

from moto.stepfunctions.models import StateMachine

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._moto_refs import is_marked, mark

FIX = "sfn_state_machine_copy"

# Attributes shared with the snapshot instead of copied: the backend (it holds every machine)
# and nothing else. Executions are not part of a definition snapshot: the copy starts empty.
_SHARED = ("backend",)
_EMPTIED = ("executions",)


def _snapshot(self: StateMachine, memo: dict[int, Any]) -> StateMachine:
    """Copy the definition-level state of a machine, never its executions or backend."""
    clone = object.__new__(type(self))
    memo[id(self)] = clone
    for key, value in vars(self).items():
        if key in _SHARED:
            setattr(clone, key, value)
        elif key in _EMPTIED:
            setattr(clone, key, [])
        else:
            setattr(clone, key, copy.deepcopy(value, memo))
    return clone


def check() -> None:
    # The snapshot rule names attributes moto sets in these constructors; if they move, the rule
    # would silently copy them again.
    from moto.stepfunctions.models import StateMachineInstance

    names = set(StateMachine.__init__.__code__.co_names)
    names |= set(StateMachineInstance.__init__.__code__.co_names)
    for attr in (*_SHARED, *_EMPTIED):
        if attr not in names:
            raise FidelityCheckError(f"{FIX}: moto's StateMachine no longer sets {attr!r}")


def apply() -> None:
    if is_marked(getattr(StateMachine, "__deepcopy__", None), FIX):
        return
    StateMachine.__deepcopy__ = mark(_snapshot, FIX)  # type: ignore[attr-defined]
