"""How the workflows treat AWS errors that retrying cannot fix, and events the bus refused.

- CloudFormation names throttling, transient 5xx, validation errors and access denials all
  ``CloudFormation.CloudFormationException`` (only a few errors are modelled), so a Retry on it
  retries a refusal that will never succeed. Each CloudFormation task instead catches it and a
  Choice looks at the cause: throttling/transient → back off and call again (bounded); anything
  else → fail fast with the reason.
- ``events:putEvents`` fails with ``EventBridge.FailedEntry`` when the bus refused an entry
  (``FailedEntryCount`` > 0): retried like throttling. An announcement that still cannot be made
  is caught, so a finished workflow never ends FAILED just because its event was lost.

ASL_FILES lists the workflows written this way; add one when it is.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

import pytest

from tests.unit import sfn_harness

ASL_FILES = ["provision_user", "deprovision_user", "reconcile"]
# The image rollout makes no CloudFormation call (it moves a tag and updates functions), but
# announces like the others.
EVENT_FILES = [*ASL_FILES, "rollout_image"]
CFN = "arn:aws:states:::aws-sdk:cloudformation:"
PUT_EVENTS = "arn:aws:states:::events:putEvents"
CFN_EXCEPTION = "CloudFormation.CloudFormationException"
THROTTLE_WORDS = ("Rate exceeded", "Throttl")


def all_states(states: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any], dict[str, Any]]]:
    """(name, state, the States map it lives in) for every state, Map bodies included."""
    for name, state in states.items():
        yield name, state, states
        processor = state.get("ItemProcessor") or state.get("Iterator")
        if processor:
            yield from all_states(processor["States"])
        for branch in state.get("Branches", []):
            yield from all_states(branch["States"])


def machine(name: str) -> dict[str, Any]:
    return dict(json.loads(sfn_harness.definition(name))["States"])


def tasks(name: str, prefix: str) -> list[tuple[str, dict[str, Any], dict[str, Any]]]:
    return [
        t
        for t in all_states(machine(name))
        if t[1]["Type"] == "Task" and t[1]["Resource"].startswith(prefix)
    ]


_DISPATCH = re.compile(r"^\{% \$(\w+) = '([^']*)' %\}$")


def _targets(state: dict[str, Any], known: dict[str, str]) -> list[str | None]:
    """Where a state can go next. A Choice that dispatches on a variable assigned a literal
    earlier on this path (a shared step's return address, e.g. `$tokenFor = 'stack'`) goes
    only where that value leads."""
    rules = state.get("Choices", [])
    for rule in rules:
        match = _DISPATCH.match(str(rule.get("Condition", "")))
        if match and match.group(1) in known:
            chosen = [
                r["Next"]
                for r in rules
                if (m := _DISPATCH.match(str(r.get("Condition", ""))))
                and m.group(1) == match.group(1)
                and m.group(2) == known[match.group(1)]
            ]
            return chosen[:1] or [state.get("Default")]
    return [state.get("Next"), state.get("Default"), *(r["Next"] for r in rules)]


def reachable(states: dict[str, Any], start: str, limit: int = 4) -> set[str]:
    """States reachable from ``start`` within ``limit`` transitions (Next, Choices, Default)."""
    seen = {start}
    frontier: list[tuple[str, dict[str, str]]] = [(start, {})]
    for _ in range(limit):
        following = []
        for name, known in frontier:
            state = states[name]
            assigned = {k: v for k, v in (state.get("Assign") or {}).items() if isinstance(v, str)}
            known = {**known, **{k: v for k, v in assigned.items() if "{%" not in v}}
            for target in _targets(state, known):
                if target and target not in seen:
                    following.append((target, known))
        seen |= {name for name, _ in following}
        frontier = following
    return seen


def rule_text(rule: dict[str, Any]) -> str:
    return json.dumps(rule)


@pytest.mark.parametrize("name", ASL_FILES)
def test_cloudformation_tasks_do_not_retry_every_cloudformation_exception(name: str) -> None:
    found = tasks(name, CFN)
    assert found, f"{name} makes no CloudFormation call"
    for task, state, _ in found:
        for retrier in state.get("Retry", []):
            errors = set(retrier["ErrorEquals"])
            assert not errors & {CFN_EXCEPTION, "States.ALL", "States.TaskFailed"}, (task, errors)


@pytest.mark.parametrize("name", ASL_FILES)
def test_cloudformation_errors_are_classified_throttling_retried_the_rest_failed_fast(
    name: str,
) -> None:
    for task, state, states in tasks(name, CFN):
        catches = [c for c in state.get("Catch", []) if CFN_EXCEPTION in c["ErrorEquals"]]
        assert catches, f"{task}: CloudFormationException is not caught"
        classifier = states[catches[0]["Next"]]
        assert classifier["Type"] == "Choice", task
        rules = classifier["Choices"]
        throttle_rules = [r for r in rules if any(w in rule_text(r) for w in THROTTLE_WORDS)]
        assert throttle_rules, f"{task}: the classifier does not look for throttling"
        for rule in throttle_rules:
            # A bound on the retries: a counter compared in the same rule.
            assert " < " in rule_text(rule) or "NumericLessThan" in rule_text(rule), (task, rule)
            again = reachable(states, rule["Next"])
            assert task in again, f"{task}: a throttled call is not made again"
            assert any(states[s]["Type"] == "Wait" for s in again), f"{task}: no back-off"
        # Everything not throttling leaves the loop: no other rule leads back to the call soon.
        # (A shared classifier routes by the call that failed: only this call's route counts.)
        others = [
            r["Next"]
            for r in rules
            if r not in throttle_rules and r.get("StringEquals", task) == task
        ]
        others.append(classifier["Default"])
        for target in others:
            assert task not in reachable(states, target, limit=3), (task, target)


@pytest.mark.parametrize("name", EVENT_FILES)
def test_put_events_retries_failed_entries_and_a_lost_event_is_caught(name: str) -> None:
    found = tasks(name, PUT_EVENTS)
    assert found, f"{name} sends no event"
    for task, state, _ in found:
        retried = {e for r in state.get("Retry", []) for e in r["ErrorEquals"]}
        assert "EventBridge.FailedEntry" in retried, task
        assert retried & {"EventBridge.ThrottlingException", "EventBridge.EventBridgeException"}
        assert all(r["JitterStrategy"] == "FULL" for r in state["Retry"]), task
        caught = {e for c in state.get("Catch", []) for e in c["ErrorEquals"]}
        assert "States.ALL" in caught, f"{task}: a lost event fails the whole execution"


@pytest.mark.parametrize(
    ("name", "announcement", "outcome"),
    [
        ("provision_user", "Announce sandbox ready", "Succeed"),
        ("deprovision_user", "Announce sandbox deleted", "Succeed"),
        ("provision_user", "Announce sandbox failed", "Fail"),
        ("deprovision_user", "Announce deletion failed", "Fail"),
    ],
)
def test_a_lost_announcement_keeps_the_outcome_already_recorded(
    name: str, announcement: str, outcome: str
) -> None:
    states = machine(name)
    [catch] = states[announcement]["Catch"]
    after = reachable(states, catch["Next"], limit=2)
    assert {states[s]["Type"] for s in after} & {outcome}, (announcement, after)
    assert "Fail" not in {states[s]["Type"] for s in after} or outcome == "Fail"
