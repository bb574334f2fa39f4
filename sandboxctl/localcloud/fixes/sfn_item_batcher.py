"""AWS behaviour restored: a Distributed Map with ``ItemBatcher`` hands each child execution a
batch, ``{"Items": [...]}`` (with ``"BatchInput": {...}`` when given), of at most
``MaxItemsPerBatch`` items, so one child can work through many items (one ``DeleteObjects`` call
for a page of S3 objects) and a large listing stays within the execution history and payload
limits.

moto 5.2.5's ASL grammar has no ``ItemBatcher``: a definition using it fails CreateStateMachine
with a parser error. The fix takes the field out of each Map state before moto parses the
definition (the state machine keeps the definition as given), and groups the items the Map read
into batches just before its children start.

Emulated: ``MaxItemsPerBatch`` and a static ``BatchInput``. Refused at CreateStateMachine with
the reason (rather than guessed): the ``…Path`` forms, ``MaxInputBytesPerBatch``, a
``BatchInput`` with JSONPath (``.$``) or JSONata values, and ``ItemSelector`` beside
``ItemBatcher``. Hooks: ``AmazonStateLanguageParser.parse``, ``StateMap.from_state_props`` and
``_map_run`` of the two Distributed Map components.
"""

from __future__ import annotations

import json
import threading
from typing import Any

from moto.stepfunctions.parser.asl.component.state.exec.state_map import state_map
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration import (
    distributed_iteration_component as dic,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.itemprocessor import (
    distributed_item_processor as dip,
)
from moto.stepfunctions.parser.asl.component.state.exec.state_map.iteration.iterator import (
    distributed_iterator as dit,
)
from moto.stepfunctions.parser.asl.parse.asl_parser import AmazonStateLanguageParser

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

FIX = "sfn_item_batcher"
_Map = state_map.StateMap
_COMPONENTS = (dip.DistributedItemProcessor, dit.DistributedIterator)
_EMULATED = {"MaxItemsPerBatch", "BatchInput"}
_KNOWN = _EMULATED | {"MaxItemsPerBatchPath", "MaxInputBytesPerBatch", "MaxInputBytesPerBatchPath"}
# The ItemBatcher configurations of the definition being parsed on this thread, by state name
# (state names are unique across a whole state machine, nested ones included).
_parsing = threading.local()


def batcher_config(state_name: str, raw: Any) -> dict[str, Any]:
    """Validate one state's ItemBatcher; what the emulator applies, or ValueError (why)."""
    where = f"state {state_name!r}: ItemBatcher"
    if not isinstance(raw, dict):
        raise ValueError(f"{where} must be an object")
    unknown = sorted(set(raw) - _KNOWN)
    if unknown:
        raise ValueError(f"{where} has unknown fields {unknown}")
    not_emulated = sorted(set(raw) - _EMULATED)
    if not_emulated:
        raise ValueError(f"{where}: {not_emulated} not emulated by the local cloud")
    size = raw.get("MaxItemsPerBatch")
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise ValueError(f"{where}.MaxItemsPerBatch must be a positive integer")
    batch_input = raw.get("BatchInput")
    if batch_input is not None:
        if not isinstance(batch_input, dict):
            raise ValueError(f"{where}.BatchInput must be an object")
        text = json.dumps(batch_input)
        if '.$"' in text or "{%" in text:
            raise ValueError(f"{where}.BatchInput with paths or JSONata: not emulated")
    return {"size": size, "batch_input": batch_input}


def _states_of(container: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Every (name, state) of a definition, nested Map and Parallel states included."""
    found: list[tuple[str, dict[str, Any]]] = []
    for name, state in (container.get("States") or {}).items():
        if not isinstance(state, dict):
            continue
        found.append((name, state))
        for key in ("ItemProcessor", "Iterator"):
            if isinstance(state.get(key), dict):
                found.extend(_states_of(state[key]))
        for branch in state.get("Branches") or []:
            if isinstance(branch, dict):
                found.extend(_states_of(branch))
    return found


def strip_batchers(definition: str) -> tuple[str, dict[str, dict[str, Any]]]:
    """The definition without ItemBatcher fields (for moto's grammar), and what they said."""
    if "ItemBatcher" not in definition:
        return definition, {}
    try:
        document = json.loads(definition)
    except ValueError:
        return definition, {}  # moto's parser reports what is wrong with it
    if not isinstance(document, dict):
        return definition, {}
    batchers: dict[str, dict[str, Any]] = {}
    for name, state in _states_of(document):
        if "ItemBatcher" not in state:
            continue
        if state.get("Type") != "Map":
            raise ValueError(f"state {name!r}: ItemBatcher is a field of Map states")
        config = batcher_config(name, state.pop("ItemBatcher"))
        if "ItemSelector" in state:
            raise ValueError(
                f"state {name!r}: ItemSelector beside ItemBatcher: not emulated by the local cloud"
            )
        batchers[name] = config
    return json.dumps(document), batchers


def batches(items: list[Any], config: dict[str, Any]) -> list[dict[str, Any]]:
    """The children's inputs: consecutive runs of at most `size` items, in order."""
    size, batch_input = config["size"], config["batch_input"]
    out = []
    for start in range(0, len(items), size):
        batch: dict[str, Any] = {"Items": items[start : start + size]}
        if batch_input is not None:
            batch["BatchInput"] = json.loads(json.dumps(batch_input))
        out.append(batch)
    return out


def _parse(definition: str) -> Any:
    stripped, found = strip_batchers(definition)
    _parsing.batchers = found
    try:
        return original(AmazonStateLanguageParser, "parse")(stripped)
    finally:
        _parsing.batchers = {}


def _from_state_props(self: Any, state_props: Any) -> None:
    original(_Map, "from_state_props")(self, state_props)
    config = getattr(_parsing, "batchers", {}).get(self.name)
    if config is None:
        return
    if not isinstance(self.iteration_component, dic.DistributedIterationComponent):
        raise ValueError(f"state {self.name!r}: ItemBatcher needs a DISTRIBUTED ItemProcessor")
    setattr(self.iteration_component, "sandbox_fleet_item_batcher", config)  # noqa: B010


def _map_run(self: Any, env: Any, eval_input: Any) -> None:
    config = getattr(self, "sandbox_fleet_item_batcher", None)
    if config is not None:
        env.stack.append(batches(env.stack.pop(), config))
    # The shared implementation, with the fixes installed on it (tolerated failures).
    dic.DistributedIterationComponent._map_run(self, env, eval_input)


def check() -> None:
    if not isinstance(AmazonStateLanguageParser.__dict__.get("parse"), staticmethod):
        raise FidelityCheckError(f"{FIX}: AmazonStateLanguageParser.parse is not a staticmethod")
    if "from_state_props" not in _Map.__dict__:
        raise FidelityCheckError(f"{FIX}: StateMap.from_state_props moved")
    if "_map_run" not in dic.DistributedIterationComponent.__dict__:
        raise FidelityCheckError(f"{FIX}: DistributedIterationComponent._map_run moved")
    for component in _COMPONENTS:
        if "_map_run" in component.__dict__ and not getattr(
            component.__dict__["_map_run"], "__sandbox_fleet_hook__", False
        ):
            raise FidelityCheckError(f"{FIX}: {component.__name__} has its own _map_run")


def apply() -> None:
    patch(AmazonStateLanguageParser, "parse", staticmethod(_parse))
    patch(_Map, "from_state_props", _from_state_props)
    for component in _COMPONENTS:
        patch(component, "_map_run", _map_run)
