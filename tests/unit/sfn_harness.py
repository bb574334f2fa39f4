"""Runs the project's ASL files in moto's Step Functions interpreter (decorator mode).

Only for branches that moto executes as AWS does without the local cloud's fixes; the rest
run in tests/integration against the local cloud.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
ROLE = "arn:aws:iam::123456789012:role/state-machine"


class _Loader(yaml.SafeLoader):
    """Reads CloudFormation short-form tags (!Ref, !Sub, ...) as plain data."""


def _tag(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return {suffix: loader.construct_scalar(node)}
    if isinstance(node, yaml.SequenceNode):
        return {suffix: loader.construct_sequence(node, deep=True)}
    return {suffix: loader.construct_mapping(node, deep=True)}  # type: ignore[arg-type]


_Loader.add_multi_constructor("!", _tag)


def template(path: str = "template.yaml") -> dict[str, Any]:
    return yaml.load((ROOT / path).read_text(), Loader=_Loader)  # noqa: S506 - SafeLoader subclass


def definition(name: str) -> str:
    return (ROOT / "statemachines" / f"{name}.asl.json").read_text()


def placeholders(text: str) -> set[str]:
    return set(re.findall(r"\$\{(\w+)\}", text))


def substitute(text: str, values: dict[str, str]) -> str:
    missing = placeholders(text) - set(values)
    if missing:
        raise KeyError(f"no test value for {sorted(missing)}")
    return re.sub(r"\$\{(\w+)\}", lambda m: values[m.group(1)], text)


def create(sfn: Any, name: str, values: dict[str, str]) -> str:
    return str(
        sfn.create_state_machine(
            name=name, definition=substitute(definition(name), values), roleArn=ROLE
        )["stateMachineArn"]
    )


def run(sfn: Any, machine_arn: str, payload: dict[str, Any], name: str, deadline: float = 60):
    """Start an execution and poll until it ends (or the deadline passes)."""
    arn = sfn.start_execution(stateMachineArn=machine_arn, name=name, input=json.dumps(payload))[
        "executionArn"
    ]
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        description = sfn.describe_execution(executionArn=arn)
        if description["status"] != "RUNNING":
            return description
        time.sleep(0.05)
    raise TimeoutError(f"{name} still running after {deadline} s")
