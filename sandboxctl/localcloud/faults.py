"""Fault profiles for the local cloud: AWS's slow, throttled and failing paths, on demand.

moto answers instantly, never throttles and never fails a stack on its own, so a workflow's wait
loops, Retry blocks and rollback branches would never run locally. A profile makes them run, the
way AWS behaves under load, deterministically for a given seed:

- ``slow``: per-user stacks stay ``CREATE_IN_PROGRESS``/``UPDATE_IN_PROGRESS``/
  ``DELETE_IN_PROGRESS`` for a few seconds before the final status (and their outputs and later
  events) become visible; UpdateStack on a stack in progress is refused as on AWS. A function
  update keeps ``LastUpdateStatus: InProgress`` for a few seconds, and another update meanwhile
  gets ``ResourceConflictException``.
- ``throttle``: the Lambda quotas page's buckets, each a token bucket (burst = one second):
  ``GetFunction`` 100 requests/s, ``GetPolicy`` 15 requests/s, and 15 requests/s shared by every
  other control-plane API (invocations are data plane and not limited); the rest is answered
  with HTTP 429 ``TooManyRequestsException``. CloudFormation's API (limits unpublished) is
  modelled at 10 requests/s and answers ``Throttling`` ("Rate exceeded"). ``quota_scale``
  scales every rate (e.g. 0.2 for a 300-user fleet benchmark that runs in minutes);
  ``rates()`` says what is applied.
- ``flaky``: a seeded share of per-user stack creations and updates fail: the stack's function
  fails to create/update with a service error, CloudFormation records the failed resource with
  that ``ResourceStatusReason`` and rolls back (``ROLLBACK_COMPLETE``/``UPDATE_ROLLBACK_COMPLETE``).
  A direct ``UpdateFunctionCode`` of a per-user function (a rollout) is accepted and then ends
  ``LastUpdateStatus: Failed`` with that reason; the function keeps its previous code.

Profiles combine: ``"throttle,slow"``. ``install_faults`` may be called again to change or clear
them (``None``). Per-user stacks are those whose name matches ``FaultProfile.stack_pattern``
(``sbx-…`` by the naming contract), so the control-plane deployment itself is never delayed or
failed.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
import re
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sandboxctl.localcloud.fixes._moto_refs import is_marked, mark
from sandboxctl.localcloud.fixes._scheduler import Scheduler

PROFILES = frozenset({"slow", "throttle", "flaky"})
_HOOK = "faults"


class FaultProfileError(ValueError):
    """An unknown or malformed fault profile name."""


@dataclass(frozen=True)
class FaultProfile:
    """Which faults are on, and their parameters (defaults follow AWS's published limits)."""

    names: frozenset[str] = frozenset()
    seed: int = 0
    stack_pattern: str = r"^sbx-"
    stack_delay_seconds: float = 3.0
    function_update_delay_seconds: float = 2.0
    lambda_control_plane_rps: float = 15.0
    lambda_get_function_rps: float = 100.0
    lambda_get_policy_rps: float = 15.0
    cloudformation_rps: float = 10.0
    quota_scale: float = 1.0
    flaky_failure_rate: float = 0.3

    @classmethod
    def parse(cls, spec: str | None, seed: int = 0, **overrides: Any) -> FaultProfile:
        """``"throttle,slow"`` → a profile; rejects unknown names with the valid ones listed."""
        names = frozenset(p.strip().lower() for p in (spec or "").split(",") if p.strip())
        unknown = names - PROFILES
        if unknown:
            raise FaultProfileError(
                f"unknown fault profile(s) {sorted(unknown)}; choose from {sorted(PROFILES)}"
            )
        return cls(names=names, seed=seed, **overrides)

    @property
    def slow(self) -> bool:
        return "slow" in self.names

    @property
    def throttle(self) -> bool:
        return "throttle" in self.names

    @property
    def flaky(self) -> bool:
        return "flaky" in self.names

    def rates(self) -> dict[str, float]:
        """Requests per second admitted per bucket (after ``quota_scale``)."""
        k = self.quota_scale
        return {
            "lambda_shared": self.lambda_control_plane_rps * k,
            "lambda_get_function": self.lambda_get_function_rps * k,
            "lambda_get_policy": self.lambda_get_policy_rps * k,
            "lambda_invoke": float("inf"),
            "cloudformation": self.cloudformation_rps * k,
        }

    def applies_to(self, stack_name: str) -> bool:
        return re.search(self.stack_pattern, stack_name) is not None

    def jitter(self, *key: object) -> float:
        """A deterministic factor in [0.5, 1.5) for ``key`` under this seed."""
        return 0.5 + _unit(self.seed, "jitter", *key)

    def fails(self, operation: str, stack_name: str, attempt: int) -> bool:
        """Does the ``attempt``-th ``operation`` on ``stack_name`` fail? Order-independent."""
        return _unit(self.seed, operation, stack_name, attempt) < self.flaky_failure_rate


def _unit(seed: int, *key: object) -> float:
    digest = hashlib.sha256(json.dumps([seed, *map(str, key)]).encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


class TokenBucket:
    """``rate`` requests per second with a burst of one second's worth; thread-safe."""

    def __init__(self, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.capacity = max(1.0, rate)
        self._clock = clock
        self._tokens = self.capacity
        self._stamp = clock()
        self._lock = threading.Lock()

    def admit(self) -> bool:
        with self._lock:
            now = self._clock()
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now
            if self._tokens >= 1.0:
                self._tokens -= 1.0
                return True
            return False


@dataclass
class _State:
    profile: FaultProfile
    lambda_control: TokenBucket
    lambda_get_function: TokenBucket
    lambda_get_policy: TokenBucket
    cloudformation: TokenBucket
    attempts: Counter[tuple[str, str]] = dataclasses.field(default_factory=Counter)
    throttled: Counter[str] = dataclasses.field(default_factory=Counter)
    admitted: Counter[str] = dataclasses.field(default_factory=Counter)
    lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)


_state: _State | None = None
_scheduler = Scheduler("fault-profiles", workers=2)
_stack_op = threading.local()

# Lambda actions outside the 15 requests/s control-plane quota.
_LAMBDA_DATA_PLANE = frozenset({"Invoke", "InvokeAsync", "InvokeWithResponseStream"})
# The quotas page's own buckets; every other control-plane action shares one.
_LAMBDA_GET_FUNCTION = frozenset({"GetFunction"})
_LAMBDA_GET_POLICY = frozenset({"GetPolicy"})


def active_profile() -> FaultProfile | None:
    """The installed profile, or None."""
    return _state.profile if _state else None


def throttled_counts() -> dict[str, int]:
    """How many requests each throttle refused since install, per bucket (reports and tests).

    Keys: ``lambda`` (all Lambda buckets together, kept for older callers), ``lambda_shared``,
    ``lambda_get_function``, ``lambda_get_policy``, ``cloudformation``.
    """
    return dict(_state.throttled) if _state else {}


def admitted_counts() -> dict[str, int]:
    """How many requests each bucket admitted since install."""
    return dict(_state.admitted) if _state else {}


def check() -> None:
    """Fail loudly when the pinned moto no longer has the hook points the profiles use."""
    from moto.awslambda.models import LambdaBackend, LambdaFunction
    from moto.cloudformation import parsing
    from moto.cloudformation.models import CloudFormationBackend, Stack

    from sandboxctl.localcloud.fixes import FidelityCheckError

    hooks = {
        CloudFormationBackend: ("create_stack", "update_stack", "delete_stack"),
        Stack: ("outputs", "_add_stack_event"),
        LambdaBackend: ("create_function", "update_function_code", "get_function"),
        LambdaFunction: ("update_function_code", "update_configuration", "get_configuration"),
        parsing: ("MAX_UPDATE_ATTEMPTS",),
    }
    for owner, names in hooks.items():
        for name in names:
            if not hasattr(owner, name):
                raise FidelityCheckError(f"faults: moto no longer has {owner}.{name}")


def install_faults(profile: str | FaultProfile | None, seed: int = 0) -> FaultProfile | None:
    """Install (or, with None/"", clear) the fault profile. Call after ``fixes.apply_all()``."""
    global _state
    check()
    if isinstance(profile, str) or profile is None:
        parsed = FaultProfile.parse(profile, seed)
    else:
        parsed = profile
    _install_hooks()
    if not parsed.names:
        _state = None
        return None
    rates = parsed.rates()
    _state = _State(
        profile=parsed,
        lambda_control=TokenBucket(rates["lambda_shared"]),
        lambda_get_function=TokenBucket(rates["lambda_get_function"]),
        lambda_get_policy=TokenBucket(rates["lambda_get_policy"]),
        cloudformation=TokenBucket(rates["cloudformation"]),
    )
    return parsed


def configure(profile: str | None, seed: int = 0) -> FaultProfile | None:
    """Alias used by LocalCloud: same as ``install_faults``."""
    return install_faults(profile, seed)


# ---------------------------------------------------------------------- throttle


def _lambda_throttle_response() -> tuple[int, dict[str, str], str]:
    body = {"Type": "User", "message": "Rate exceeded", "Reason": "CallerRateLimitExceeded"}
    headers = {
        "x-amzn-ErrorType": "TooManyRequestsException",
        "Content-Type": "application/json",
        "x-amzn-RequestId": str(uuid.uuid4()),
    }
    return 429, headers, json.dumps(body)


def _cloudformation_throttle_response() -> tuple[int, dict[str, str], str]:
    body = (
        '<ErrorResponse xmlns="http://cloudformation.amazonaws.com/doc/2010-05-15/">'
        "<Error><Type>Sender</Type><Code>Throttling</Code><Message>Rate exceeded</Message>"
        f"</Error><RequestId>{uuid.uuid4()}</RequestId></ErrorResponse>"
    )
    return 400, {"Content-Type": "text/xml"}, body


def _lambda_call_action(original: Any) -> Any:
    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        state = _state
        if state is not None and state.profile.throttle:
            action = self._get_action() or ""
            if action not in _LAMBDA_DATA_PLANE:
                if action in _LAMBDA_GET_FUNCTION:
                    name, bucket = "lambda_get_function", state.lambda_get_function
                elif action in _LAMBDA_GET_POLICY:
                    name, bucket = "lambda_get_policy", state.lambda_get_policy
                else:
                    name, bucket = "lambda_shared", state.lambda_control
                if not bucket.admit():
                    with state.lock:
                        state.throttled["lambda"] += 1
                        state.throttled[name] += 1
                    return _lambda_throttle_response()
                with state.lock:
                    state.admitted[name] += 1
        return original(self)

    return call_action


def _cloudformation_call_action(original: Any) -> Any:
    @functools.wraps(original)
    def call_action(self: Any) -> Any:
        state = _state
        if state is not None and state.profile.throttle:
            if not state.cloudformation.admit():
                with state.lock:
                    state.throttled["cloudformation"] += 1
                return _cloudformation_throttle_response()
            with state.lock:
                state.admitted["cloudformation"] += 1
        return original(self)

    return call_action


# ---------------------------------------------------------------------- flaky


class InjectedServiceError(Exception):
    """A provisioning failure injected by the ``flaky`` profile, worded like AWS's."""

    def __init__(self, operation: str, function_name: str) -> None:
        request_id = uuid.uuid4()
        self.message = (
            f'Resource handler returned message: "Service error while {operation} function '
            f"{function_name}: InternalFailure (Service: Lambda, Status Code: 500, "
            f'Request ID: {request_id})" (HandlerErrorCode: ServiceInternalError) '
            "[injected by the local cloud's flaky fault profile]"
        )
        super().__init__(self.message)


def _failures_per_operation() -> int:
    # moto retries a failing resource update MAX_UPDATE_ATTEMPTS - 1 times before giving up;
    # the injected failure must outlast them, and then stop so the rollback itself succeeds.
    from moto.cloudformation import parsing

    return max(1, int(parsing.MAX_UPDATE_ATTEMPTS) - 1)


def _claim_failure(function_name: str, operation: str) -> None:
    """Raise while the current stack operation still owes injected failures."""
    pending = int(getattr(_stack_op, "fail", 0) or 0)
    if pending > 0:
        _stack_op.fail = pending - 1
        raise InjectedServiceError(operation, function_name)


def _decide(operation: str, stack_name: str) -> bool:
    state = _state
    if state is None or not state.profile.flaky or not state.profile.applies_to(stack_name):
        return False
    with state.lock:
        state.attempts[(operation, stack_name)] += 1
        attempt = state.attempts[(operation, stack_name)]
    return state.profile.fails(operation, stack_name, attempt)


# ---------------------------------------------------------------------- slow: stacks


def _stack_by_name(backend: Any, name_or_id: str) -> Any:
    stack = backend.stacks.get(name_or_id)
    if stack is not None:
        return stack
    for candidate in backend.stacks.values():
        if candidate.name == name_or_id:
            return candidate
    return None


def _hide_until_done(stack: Any, in_progress: str, marker_index: int, delay: float) -> None:
    """Show ``in_progress`` (and no later events, no outputs) for ``delay`` seconds."""
    final_status = stack.status
    hidden = stack.events[marker_index + 1 :]
    del stack.events[marker_index + 1 :]
    stack.status = in_progress
    token = object()
    stack._sandbox_fleet_pending = token

    def reveal() -> None:
        if getattr(stack, "_sandbox_fleet_pending", None) is not token:
            return
        stack.events.extend(hidden)
        stack.status = final_status
        stack._sandbox_fleet_pending = None

    stack._sandbox_fleet_reveal = reveal
    _scheduler.submit(reveal, delay)


def _finish_pending(stack: Any) -> None:
    reveal = getattr(stack, "_sandbox_fleet_reveal", None)
    if reveal is not None and getattr(stack, "_sandbox_fleet_pending", None) is not None:
        reveal()


def _last_event_index(stack: Any, status: str) -> int:
    for index in range(len(stack.events) - 1, -1, -1):
        event = stack.events[index]
        if event.resource_status == status and event.resource_type == "AWS::CloudFormation::Stack":
            return index
    return len(stack.events) - 1


def _slow_for(stack_name: str) -> FaultProfile | None:
    state = _state
    if state is None or not state.profile.slow or not state.profile.applies_to(stack_name):
        return None
    return state.profile


def _create_stack(original: Any) -> Any:
    @functools.wraps(original)
    def create_stack(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        _stack_op.fail = _failures_per_operation() if _decide("create", name) else 0
        try:
            stack = original(self, name, *args, **kwargs)
        finally:
            _stack_op.fail = 0
        profile = _slow_for(name)
        if profile is not None:
            marker = _last_event_index(stack, "CREATE_IN_PROGRESS")
            delay = profile.stack_delay_seconds * profile.jitter("create", name)
            _hide_until_done(stack, "CREATE_IN_PROGRESS", marker, delay)
        return stack

    return create_stack


def _update_stack(original: Any) -> Any:
    @functools.wraps(original)
    def update_stack(self: Any, name: str, *args: Any, **kwargs: Any) -> Any:
        from moto.cloudformation.exceptions import ValidationError

        stack = _stack_by_name(self, name)
        if stack is not None and getattr(stack, "_sandbox_fleet_pending", None) is not None:
            raise ValidationError(
                name,
                message=f"Stack:{stack.stack_id} is in {stack.status} state and can not be "
                "updated.",
            )
        stack_name = stack.name if stack is not None else name
        _stack_op.fail = _failures_per_operation() if _decide("update", stack_name) else 0
        try:
            result = original(self, name, *args, **kwargs)
        finally:
            _stack_op.fail = 0
        profile = _slow_for(stack_name)
        if profile is not None:
            marker = _last_event_index(result, "UPDATE_IN_PROGRESS")
            attempt = len(result.events)
            delay = profile.stack_delay_seconds * profile.jitter("update", stack_name, attempt)
            _hide_until_done(result, "UPDATE_IN_PROGRESS", marker, delay)
        return result

    return update_stack


def _delete_stack(original: Any) -> Any:
    @functools.wraps(original)
    def delete_stack(self: Any, name_or_stack_id: str) -> None:
        stack = _stack_by_name(self, name_or_stack_id)
        profile = _slow_for(stack.name) if stack is not None else None
        if stack is None or profile is None:
            return original(self, name_or_stack_id)
        if stack.status == "DELETE_IN_PROGRESS":
            return None  # AWS: deleting a stack already being deleted is a no-op
        _finish_pending(stack)
        stack.status = "DELETE_IN_PROGRESS"
        stack._add_stack_event("DELETE_IN_PROGRESS", resource_status_reason="User Initiated")
        ours = len(stack.events) - 1

        def finish() -> None:
            original(self, stack.stack_id)
            # moto adds its own DELETE_IN_PROGRESS: one is enough.
            duplicates = [
                i
                for i, e in enumerate(stack.events)
                if i > ours and e.resource_status == "DELETE_IN_PROGRESS"
            ]
            for index in reversed(duplicates):
                del stack.events[index]

        delay = profile.stack_delay_seconds * profile.jitter("delete", stack.stack_id)
        _scheduler.submit(finish, delay)
        return None

    return delete_stack


def _outputs(original: property) -> property:
    getter = original.fget
    assert getter is not None

    @functools.wraps(getter)
    def outputs(self: Any) -> Any:
        # AWS shows outputs only once the stack operation completed.
        if getattr(self, "_sandbox_fleet_pending", None) is not None:
            return None
        return getter(self)

    return property(mark(outputs, _HOOK))


# ---------------------------------------------------------------------- slow + flaky: functions


def _function_update(original: Any, operation: str) -> Any:
    @functools.wraps(original)
    def update(self: Any, *args: Any, **kwargs: Any) -> Any:
        _claim_failure(self.function_name, operation)
        state = _state
        previous = getattr(self, "_sandbox_fleet_update_until", 0.0)
        if state is not None and state.profile.slow:
            # Set first: the update's own response already says InProgress, as on AWS.
            profile = state.profile
            delay = profile.function_update_delay_seconds * profile.jitter(
                "function", self.function_name, time.monotonic()
            )
            self._sandbox_fleet_update_until = time.monotonic() + delay
        try:
            return original(self, *args, **kwargs)
        except Exception:
            self._sandbox_fleet_update_until = previous
            raise

    return update


def _update_in_progress(fn: Any) -> bool:
    return float(getattr(fn, "_sandbox_fleet_update_until", 0.0)) > time.monotonic()


_FAILED_UPDATE = "_sandbox_fleet_failed_update"


def _get_configuration(original: Any) -> Any:
    @functools.wraps(original)
    def get_configuration(self: Any, *args: Any, **kwargs: Any) -> Any:
        config = original(self, *args, **kwargs)
        if "LastUpdateStatus" in config and _update_in_progress(self):
            config["LastUpdateStatus"] = "InProgress"
        elif "LastUpdateStatus" in config and self.__dict__.get(_FAILED_UPDATE):
            # AWS: the update failed, the function keeps running its previous code.
            config["LastUpdateStatus"] = "Failed"
            config["LastUpdateStatusReason"] = self.__dict__[_FAILED_UPDATE]
            config["LastUpdateStatusReasonCode"] = "InternalError"
        return config

    return get_configuration


def _backend_update(original: Any, code: bool = False) -> Any:
    @functools.wraps(original)
    def update(self: Any, function_name: str, qualifier: Any, body: Any) -> Any:
        from moto.awslambda.exceptions import LambdaClientError

        fn = self.get_function(function_name, qualifier)
        if _update_in_progress(fn):
            conflict = LambdaClientError(
                "ResourceConflictException",
                "The operation cannot be performed at this time. An update is in progress for "
                f"resource: {fn.function_arn}",
            )
            conflict.code = 409
            raise conflict
        if code and _decide("update", fn.function_name):
            # flaky, UpdateFunctionCode called directly (a rollout): accepted, then Failed.
            _mark_in_progress(fn)
            fn.__dict__[_FAILED_UPDATE] = InjectedServiceError("updating", fn.function_name).message
            return fn.get_configuration()
        fn.__dict__.pop(_FAILED_UPDATE, None)
        return original(self, function_name, qualifier, body)

    return update


def _mark_in_progress(fn: Any) -> None:
    state = _state
    if state is not None and state.profile.slow:
        profile = state.profile
        delay = profile.function_update_delay_seconds * profile.jitter(
            "function", fn.function_name, time.monotonic()
        )
        fn._sandbox_fleet_update_until = time.monotonic() + delay


def _create_function(original: Any) -> Any:
    @functools.wraps(original)
    def create_function(self: Any, spec: dict[str, Any]) -> Any:
        _claim_failure(str(spec.get("FunctionName", "")), "creating")
        return original(self, spec)

    return create_function


# ---------------------------------------------------------------------- installation


def _wrap(owner: Any, name: str, factory: Any) -> None:
    current = owner.__dict__[name]
    if is_marked(current if not isinstance(current, property) else current.fget, _HOOK):
        return
    if isinstance(current, property):
        setattr(owner, name, factory(current))
        return
    setattr(owner, name, mark(factory(current), _HOOK))


def _install_hooks() -> None:
    from moto.awslambda.models import LambdaBackend, LambdaFunction
    from moto.awslambda.responses import LambdaResponse
    from moto.cloudformation.models import CloudFormationBackend, Stack
    from moto.cloudformation.responses import CloudFormationResponse
    from moto.core.responses import BaseResponse

    for response_cls, factory in (
        (LambdaResponse, _lambda_call_action),
        (CloudFormationResponse, _cloudformation_call_action),
    ):
        if "call_action" not in response_cls.__dict__:
            # Inherited from BaseResponse: give the subclass its own wrapper.
            response_cls.call_action = mark(factory(BaseResponse.call_action), _HOOK)  # type: ignore[method-assign]
        else:
            _wrap(response_cls, "call_action", factory)
    _wrap(CloudFormationBackend, "create_stack", _create_stack)
    _wrap(CloudFormationBackend, "update_stack", _update_stack)
    _wrap(CloudFormationBackend, "delete_stack", _delete_stack)
    _wrap(Stack, "outputs", _outputs)
    _wrap(LambdaBackend, "create_function", _create_function)
    _wrap(LambdaBackend, "update_function_code", lambda o: _backend_update(o, code=True))
    _wrap(LambdaBackend, "update_function_configuration", _backend_update)
    _wrap(LambdaFunction, "update_function_code", lambda o: _function_update(o, "updating"))
    _wrap(LambdaFunction, "update_configuration", lambda o: _function_update(o, "updating"))
    _wrap(LambdaFunction, "get_configuration", _get_configuration)
