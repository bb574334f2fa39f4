"""Discrete-event simulation of an image rollout under AWS's published Lambda quotas.

Why a simulation: a real rollout to 50,000 functions cannot be run here, and the question it
answers is about limits, not code. The Lambda quotas page gives the control plane three buckets
(none raisable): GetFunction 100 requests/s, GetPolicy 15 requests/s, and 15 requests/s shared by
*every other* control-plane API (UpdateFunctionCode, CreateFunction, GetFunctionConfiguration,
ListTags, ...). Invoke is data plane. CloudFormation's own API limits are unpublished and modelled
as a parameter. The model follows the workflows call by call; its assumptions are in ASSUMPTIONS
and docs/scaling.md.

Strategies:
- ``moving-tag`` (shipped): user stacks reference ``<repo>:live``; the rollout moves the tag, then
  per user draws one token from the account-wide limiter (DynamoDB, rollout share), calls
  UpdateFunctionCode (the user's only shared-bucket call), waits with GetFunction (its own bucket),
  smoke-runs (data plane) and records the digest.
- ``stack-update``: the previous design: per user DescribeStacks + UpdateStack with a new ImageUri
  parameter, CloudFormation's handler calls UpdateFunctionCode and waits with GetFunction, and the
  workflow polls DescribeStacks (2, 4, ... 15 s) against CloudFormation's API limit.

Signups arrive during every rollout (Poisson); each draws its shared-bucket calls from the same
limiter with the full rate, so the figures show what a rollout costs a signup.

    .venv/bin/python bench/rollout_sim.py            # the table in docs/scaling.md
    .venv/bin/python bench/rollout_sim.py --json     # one JSON object per case
    .venv/bin/python bench/rollout_sim.py --quick    # 1,000 and 5,000 users only

Pure Python, seeded: the same command prints the same figures.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import json
import math
import random
from collections import defaultdict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from statistics import NormalDist
from typing import Any

ASSUMPTIONS: dict[str, float] = {
    # AWS Lambda quotas page ("Lambda API requests"), none raisable: token buckets, burst = rate.
    "lambda_shared_rps": 15.0,  # remainder of the control plane, all those APIs together
    "lambda_get_function_rps": 100.0,
    "lambda_get_policy_rps": 15.0,
    # CloudFormation API: unpublished; public reports show throttling at a sustained 8-10 req/s.
    "cfn_api_rps": 10.0,
    "cfn_api_burst": 20.0,
    # Step Functions Distributed Map child starts (unpublished; StartExecution is 300/s refill).
    "sfn_child_start_rps": 150.0,
    "sfn_child_start_burst": 800.0,
    # Our limiter (template parameters LambdaSharedRps / SignupReservedRps).
    "limiter_rps": 15.0,
    "limiter_rollout_burst": 3.0,  # tokens a rollout may run ahead of the bucket
    "limiter_signup_burst": 10.0,  # signups may run further ahead: their reserved share
    "limiter_retry_s": 1.0,  # a refused acquisition waits 1 or 2 s (Wait state, jittered)
    # Image function update, UpdateFunctionCode -> LastUpdateStatus Successful: lognormal.
    "function_update_median_s": 20.0,
    "function_update_sigma": 0.5,  # p99 about 3.2x the median (64 s)
    "function_wait_first_s": 5.0,  # RolloutImage: FunctionUpdateWaitSeconds, then
    "function_wait_poll_s": 5.0,  # every FunctionUpdateWaitSeconds
    "cfn_overhead_median_s": 12.0,  # rest of a one-resource stack update
    "cfn_overhead_sigma": 0.4,
    "cfn_handler_poll_s": 5.0,  # CloudFormation's Lambda handler waits with GetFunction
    "smoke_run_median_s": 2.5,  # first invoke of a new image: cold start + 1+1
    "api_latency_s": 0.1,
    "sfn_transition_s": 0.05,  # one state transition (DynamoDB task, Choice, ...)
    # Signups during the rollout.
    "signup_rps": 0.2,  # 12 a minute, far above the fleet's normal rate
    "signup_shared_calls": 2.0,  # CloudFormation's CreateFunction (+ one remainder call)
    "signup_stack_create_median_s": 25.0,
}

CANARY_SIZE = 5
SHIPPED = {"strategy": "moving-tag", "max_concurrency": 600}


class TokenBucket:
    """An AWS rate limit: `rate` tokens per second, at most `burst` saved up."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate, self.burst = rate, burst
        self.tokens, self.last = burst, 0.0

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False


class Limiter:
    """Our limiter, as RolloutImage and ProvisionUser run it: one DynamoDB item, GCRA.

    The item holds `tat`, the time the bucket is next empty. An acquisition is one conditional
    write: `tat = max(tat, now) + 1/rate` if `tat <= now + tolerance`. Signups may run further
    ahead (a larger tolerance) than rollouts and the reconciler: that is their reserved share.
    A refused acquisition reads the item (one GetItem) and waits (Step Functions: whole seconds).
    """

    def __init__(self, rate: float, rollout_burst: float, signup_burst: float) -> None:
        self.interval = 1.0 / rate
        self.tolerance = {False: rollout_burst * self.interval, True: signup_burst * self.interval}
        self.tat = 0.0
        self.writes: dict[int, int] = defaultdict(int)

    def acquire(self, now: float, signup: bool) -> bool:
        self.writes[int(now)] += 1
        if self.tat > now + self.tolerance[signup]:
            return False
        self.tat = max(self.tat, now) + self.interval
        return True


@dataclass
class Meter:
    """Requests per whole second, attempted and admitted, for the peak-rate columns."""

    attempted: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    admitted: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    throttled: int = 0

    def record(self, now: float, ok: bool) -> None:
        second = int(now)
        self.attempted[second] += 1
        if ok:
            self.admitted[second] += 1
        else:
            self.throttled += 1

    def peak(self, admitted: bool = False) -> int:
        table = self.admitted if admitted else self.attempted
        return max(table.values(), default=0)


Process = Generator[float, None, None]
BUCKETS = ("lambda_shared", "lambda_get_function", "lambda_get_policy", "cloudformation")


class World:
    """The event loop, the account's limits, and what was measured."""

    def __init__(self, seed: int) -> None:
        a = ASSUMPTIONS
        self.rng = random.Random(seed)
        self.now = 0.0
        self._queue: list[tuple[float, int, Process]] = []
        self._ids = itertools.count()
        self.buckets = {
            "lambda_shared": TokenBucket(a["lambda_shared_rps"], a["lambda_shared_rps"]),
            "lambda_get_function": TokenBucket(
                a["lambda_get_function_rps"], a["lambda_get_function_rps"]
            ),
            "lambda_get_policy": TokenBucket(
                a["lambda_get_policy_rps"], a["lambda_get_policy_rps"]
            ),
            "cloudformation": TokenBucket(a["cfn_api_rps"], a["cfn_api_burst"]),
        }
        self.meters = {name: Meter() for name in BUCKETS}
        self.invokes = Meter()
        self.limiter = Limiter(
            a["limiter_rps"], a["limiter_rollout_burst"], a["limiter_signup_burst"]
        )
        self.sfn_start = TokenBucket(a["sfn_child_start_rps"], a["sfn_child_start_burst"])
        self.failed_users = 0
        self.done_users = 0
        self.rollout_done = False
        self.signup_delays: list[float] = []

    def start(self, process: Process, delay: float = 0.0) -> None:
        heapq.heappush(self._queue, (self.now + delay, next(self._ids), process))

    def run(self) -> None:
        while self._queue:
            self.now, _, process = heapq.heappop(self._queue)
            try:
                delay = next(process)
            except StopIteration:
                continue
            heapq.heappush(self._queue, (self.now + delay, next(self._ids), process))

    def lognormal(self, median: float, sigma: float) -> float:
        return median * math.exp(self.rng.gauss(0.0, sigma))

    def call(self, bucket: str) -> bool:
        ok = self.buckets[bucket].take(self.now)
        self.meters[bucket].record(self.now, ok)
        return ok

    def full_jitter(self, attempt: int, base: float, cap: float) -> float:
        return self.rng.uniform(0.0, min(cap, base * 2**attempt)) + ASSUMPTIONS["api_latency_s"]

    def retried(self, bucket: str, base: float = 1.0, cap: float = 20.0) -> Process:
        """A call with the SDK's/ASL's Retry on throttling: full-jitter exponential backoff."""
        attempt = 0
        while not self.call(bucket):
            yield self.full_jitter(attempt, base, cap)
            attempt += 1

    def limited(self, signup: bool) -> Process:
        """Acquire one token from our limiter: conditional write, refused -> wait and retry."""
        a = ASSUMPTIONS
        while True:
            yield a["api_latency_s"]
            if self.limiter.acquire(self.now, signup):
                return
            yield a["api_latency_s"]  # read the item
            yield a["limiter_retry_s"] * self.rng.choice((1, 2))

    def update_duration(self) -> float:
        a = ASSUMPTIONS
        return self.lognormal(a["function_update_median_s"], a["function_update_sigma"])


# ------------------------------------------------------------------ the moving-tag child
def moving_tag_child(world: World, on_done: Callable[[], None]) -> Process:
    """One RolloutImage child, state by state as in rollout_image.asl.json."""
    a = ASSUMPTIONS
    yield a["api_latency_s"] * 2  # desired image, user record (DynamoDB)
    yield from world.limited(signup=False)  # Acquire a control-plane token
    yield a["sfn_transition_s"]
    yield from world.retried("lambda_shared", 2.0, 30.0)  # Update function code
    ready_at = world.now + world.update_duration()
    yield a["function_wait_first_s"]
    while True:  # Read function state (GetFunction, own bucket)
        yield from world.retried("lambda_get_function", 2.0, 30.0)
        if world.now >= ready_at:
            break
        yield a["function_wait_poll_s"]
    world.invokes.record(world.now, True)
    yield world.lognormal(a["smoke_run_median_s"], 0.5)  # Smoke run (data plane)
    yield a["api_latency_s"] * 2  # Record digest, Count outcome
    world.done_users += 1
    on_done()


# ------------------------------------------------------------------ the stack-update child
def stack_update(world: World, outcome: dict[str, str]) -> Process:
    """CloudFormation updating one user stack: UpdateFunctionCode, then it waits (GetFunction)."""
    a = ASSUMPTIONS
    yield world.lognormal(a["cfn_overhead_median_s"], a["cfn_overhead_sigma"]) / 2
    for attempt in range(6):  # the handler's retries, then the stack rolls back
        if world.call("lambda_shared"):
            break
        yield world.full_jitter(attempt, 1.0, 20.0)
    else:
        outcome["status"] = "UPDATE_ROLLBACK_COMPLETE"
        return
    ready_at = world.now + world.update_duration()
    while world.now < ready_at:
        yield a["cfn_handler_poll_s"]
        world.call("lambda_get_function")  # a throttled poll is repeated at the next interval
    yield from world.retried("lambda_get_function")  # the read handler
    yield world.lognormal(a["cfn_overhead_median_s"], a["cfn_overhead_sigma"]) / 2
    outcome["status"] = "UPDATE_COMPLETE"


def stack_update_child(world: World, on_done: Callable[[], None]) -> Process:
    a = ASSUMPTIONS
    yield a["api_latency_s"] * 2
    yield from world.retried("cloudformation", 1.0, 60.0)  # Read user stack
    yield from world.retried("cloudformation", 1.0, 60.0)  # Update user stack
    outcome: dict[str, str] = {"status": "UPDATE_IN_PROGRESS"}
    world.start(stack_update(world, outcome))
    polls = 0
    while outcome["status"] == "UPDATE_IN_PROGRESS":
        yield min(15.0, 2.0 + 2.0 * polls)  # Wait for stack update
        polls += 1
        yield from world.retried("cloudformation", 1.0, 60.0)  # Check stack update
    if outcome["status"] != "UPDATE_COMPLETE":
        world.failed_users += 1
        on_done()
        return
    world.invokes.record(world.now, True)
    yield world.lognormal(a["smoke_run_median_s"], 0.5)
    yield from world.retried("lambda_get_function", 2.0, 60.0)  # Read function image
    yield a["api_latency_s"] * 2
    world.done_users += 1
    on_done()


CHILDREN = {"moving-tag": moving_tag_child, "stack-update": stack_update_child}


# ------------------------------------------------------------------ the fleet around it
def distributed_map(world: World, users: int, concurrency: int, strategy: str) -> Process:
    """The Map run: at most `concurrency` children at once, child starts rate-limited."""
    started = 0
    running = [0]

    def finished() -> None:
        running[0] -= 1

    child = CHILDREN[strategy]
    while started < users:
        if running[0] < concurrency and world.sfn_start.take(world.now):
            running[0] += 1
            started += 1
            world.start(child(world, finished))
            continue
        yield 0.05


def signups(world: World, strategy: str) -> Process:
    """Users signing up while the rollout runs; each records how long its Lambda calls waited."""
    a = ASSUMPTIONS

    def one() -> Process:
        asked = world.now
        for _ in range(int(a["signup_shared_calls"])):
            if strategy == "moving-tag":
                yield from world.limited(signup=True)
        world.signup_delays.append(world.now - asked)
        yield from world.retried("cloudformation", 1.0, 60.0)  # CreateStack
        for _ in range(int(a["signup_shared_calls"])):  # CloudFormation's own calls
            for attempt in range(6):
                if world.call("lambda_shared"):
                    break
                yield world.full_jitter(attempt, 1.0, 20.0)

    while not world.rollout_done:
        yield world.rng.expovariate(a["signup_rps"])
        if not world.rollout_done:
            world.start(one())


def rollout(users: int, strategy: str, concurrency: int, seed: int) -> dict[str, Any]:
    """Canary wave (its own Map run), then the rest."""
    world = World(seed)
    a = ASSUMPTIONS
    canary = min(CANARY_SIZE, users)

    def waves() -> Process:
        if strategy == "moving-tag":
            yield a["api_latency_s"] * 4  # BatchGetImage + PutImage: move the live tag
        world.start(distributed_map(world, canary, concurrency, strategy))
        while world.done_users + world.failed_users < canary:
            yield 0.5
        yield 1.0  # read progress, write the rest manifest
        world.start(distributed_map(world, users - canary, concurrency, strategy))
        while world.done_users + world.failed_users < users:
            yield 0.5
        world.rollout_done = True

    world.start(waves())
    world.start(signups(world, strategy))
    world.run()
    return summary(world, users, strategy, concurrency)


def floor_seconds(users: int) -> float:
    """The floor the issue defines, computed as docs/scaling.md explains: every user's one
    shared-bucket call at 15/s, plus the canary gate (the slowest of the canary's updates, in
    expectation, and a smoke run), plus one update at the end (p99: the slowest of the hundreds
    issued in the last minute is at least that, in expectation) and its smoke run."""
    a = ASSUMPTIONS
    median, sigma = a["function_update_median_s"], a["function_update_sigma"]
    canary = min(CANARY_SIZE, users)
    # Blom's approximation of the expected maximum of `canary` normal draws.
    z_max = NormalDist().inv_cdf((canary - 0.375) / (canary + 0.25)) if canary > 1 else 0.0
    canary_gate = median * math.exp(z_max * sigma) + a["smoke_run_median_s"]
    last_update = median * math.exp(NormalDist().inv_cdf(0.99) * sigma) + a["smoke_run_median_s"]
    return users / a["lambda_shared_rps"] + canary_gate + last_update


def summary(world: World, users: int, strategy: str, concurrency: int) -> dict[str, Any]:
    floor = floor_seconds(users)
    delays = sorted(world.signup_delays)
    peaks = {
        name: {
            "attempted": meter.peak(),
            "admitted": meter.peak(admitted=True),
            "throttled": meter.throttled,
            "limit": world.buckets[name].rate,
        }
        for name, meter in world.meters.items()
    }
    peaks["lambda_invoke"] = {"attempted": world.invokes.peak(), "admitted": world.invokes.peak()}
    return {
        "users": users,
        "strategy": strategy,
        "max_concurrency": concurrency,
        "default": strategy == SHIPPED["strategy"] and concurrency == SHIPPED["max_concurrency"],
        "seconds": round(world.now, 1),
        "floor_seconds": round(floor, 1),
        "ratio": round(world.now / floor, 3),
        "failed_users": world.failed_users,
        "updated_users": world.done_users,
        "peak_rps": peaks,
        "limiter_writes_peak_per_s": max(world.limiter.writes.values(), default=0),
        "signups": len(delays),
        "signup_limiter_wait_max_s": round(delays[-1], 2) if delays else 0.0,
        "signup_limiter_wait_p50_s": round(delays[len(delays) // 2], 2) if delays else 0.0,
    }


def duration(seconds: float) -> str:
    hours = seconds / 3600
    if hours >= 48:
        return f"{hours / 24:.1f} d"
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{seconds / 60:.1f} min"


CASES = [("moving-tag", 600), ("moving-tag", 200), ("stack-update", 40), ("stack-update", 160)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="skip the 50,000-user case")
    parser.add_argument("--json", action="store_true", help="one JSON object per case")
    args = parser.parse_args()
    sizes = [1_000, 5_000] if args.quick else [1_000, 5_000, 50_000]
    if not args.json:
        print("assumptions:", ", ".join(f"{k}={v}" for k, v in ASSUMPTIONS.items()))
        print(
            "| users | strategy | time to full rollout | floor | ratio | peak req/s attempted/"
            "admitted: shared 15/s, GetFunction 100/s, CloudFormation ~10/s | throttled "
            "(shared, GetFunction, CFN) | signup wait on limiter (max) | users failed |"
        )
        print("|" + "---|" * 9)
    for users in sizes:
        for strategy, concurrency in CASES:
            result = rollout(users, strategy, concurrency, args.seed)
            if args.json:
                print(json.dumps(result, sort_keys=True))
                continue
            p = result["peak_rps"]
            mark = " (default)" if result["default"] else ""
            print(
                f"| {users:,} | {strategy}, MaxConcurrency {concurrency}{mark} | "
                f"{duration(result['seconds'])} | {duration(result['floor_seconds'])} | "
                f"{result['ratio']:.2f} | "
                + ", ".join(
                    f"{p[b]['attempted']}/{p[b]['admitted']}"
                    for b in ("lambda_shared", "lambda_get_function", "cloudformation")
                )
                + " | "
                + ", ".join(
                    str(p[b]["throttled"])
                    for b in ("lambda_shared", "lambda_get_function", "cloudformation")
                )
                + f" | {result['signup_limiter_wait_max_s']:.1f} s | {result['failed_users']} |"
            )


if __name__ == "__main__":
    main()
