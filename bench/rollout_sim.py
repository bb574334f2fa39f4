"""Discrete-event simulation of an image rollout under AWS's limits, against the serial loop.

Why a simulation: a real rollout to 50,000 functions cannot be run here, and the question it
answers is about limits, not code: how fast can the fleet move to a new image when every user
function's update goes through the Lambda control plane (15 requests/s per account and region,
shared by *all* control-plane calls, not raisable) and CloudFormation (API throttling
unpublished), and which Distributed Map concurrency gets there without throttling users into
failure. The model follows the RolloutImage workflow (statemachines/rollout_image.asl.json)
call by call; its assumptions are listed in ASSUMPTIONS and in docs/scaling.md.

    .venv/bin/python bench/rollout_sim.py            # the table in docs/scaling.md
    .venv/bin/python bench/rollout_sim.py --quick    # 1,000 and 5,000 users only

Pure Python, seeded: the same command prints the same table.
"""

from __future__ import annotations

import argparse
import heapq
import itertools
import math
import random
from collections import defaultdict
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

ASSUMPTIONS = {
    "lambda_control_plane_rps": 15.0,  # AWS quota, per account and region, all control-plane APIs
    "cfn_api_rps": 20.0,  # assumption: CloudFormation throttling is unpublished
    "cfn_api_burst": 40.0,
    "sfn_child_start_rps": 150.0,  # StartExecution refill for Standard children (token bucket 800)
    "sfn_child_start_burst": 800.0,
    "function_update_median_s": 20.0,  # UpdateFunctionCode -> LastUpdateStatus Successful (image)
    "function_update_sigma": 0.5,  # lognormal shape: p99 about 3.2x the median
    "cfn_overhead_median_s": 12.0,  # the rest of a one-resource stack update
    "cfn_overhead_sigma": 0.4,
    "cfn_poll_interval_s": 5.0,  # CloudFormation's Lambda handler polls the function state
    "cfn_post_update_reads": 3,  # GetFunction, ListTags, GetFunctionConcurrency after an update
    "cfn_handler_retries": 5,  # then the resource fails and the stack rolls back
    "smoke_run_median_s": 2.5,  # first invoke of a new image: cold start + 1+1
    "api_latency_s": 0.1,
}


class TokenBucket:
    """A rate limit: `rate` tokens per second, at most `burst` saved up."""

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


class World:
    """The event loop, the account's limits, and what was measured."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.now = 0.0
        self._queue: list[tuple[float, int, Process]] = []
        self._ids = itertools.count()
        a = ASSUMPTIONS
        self.lambda_cp = TokenBucket(a["lambda_control_plane_rps"], a["lambda_control_plane_rps"])
        self.cfn = TokenBucket(a["cfn_api_rps"], a["cfn_api_burst"])
        self.sfn_start = TokenBucket(a["sfn_child_start_rps"], a["sfn_child_start_burst"])
        self.lambda_meter, self.cfn_meter = Meter(), Meter()
        self.failed_users = 0
        self.done_users = 0

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

    def lambda_call(self) -> bool:
        ok = self.lambda_cp.take(self.now)
        self.lambda_meter.record(self.now, ok)
        return ok

    def cfn_call(self) -> bool:
        ok = self.cfn.take(self.now)
        self.cfn_meter.record(self.now, ok)
        return ok

    def full_jitter(self, attempt: int, base: float, cap: float) -> float:
        return self.rng.uniform(0.0, min(cap, base * 2**attempt)) + ASSUMPTIONS["api_latency_s"]


# ------------------------------------------------------------------ AWS-side behaviour
def stack_update(world: World, outcome: dict[str, str]) -> Process:
    """CloudFormation updating one user stack: the function's image, then its reads."""
    a = ASSUMPTIONS
    yield world.lognormal(a["cfn_overhead_median_s"], a["cfn_overhead_sigma"]) / 2
    for attempt in range(int(a["cfn_handler_retries"]) + 1):
        if world.lambda_call():
            break
        yield world.full_jitter(attempt, 1.0, 20.0)
    else:
        outcome["status"] = "UPDATE_ROLLBACK_COMPLETE"  # throttled past the handler's retries
        return
    ready_at = world.now + world.lognormal(
        a["function_update_median_s"], a["function_update_sigma"]
    )
    while world.now < ready_at:
        yield a["cfn_poll_interval_s"]
        world.lambda_call()  # a throttled poll is simply repeated at the next interval
    for _ in range(int(a["cfn_post_update_reads"])):
        attempt = 0
        while not world.lambda_call():
            yield world.full_jitter(attempt, 1.0, 20.0)
            attempt += 1
    yield world.lognormal(a["cfn_overhead_median_s"], a["cfn_overhead_sigma"]) / 2
    outcome["status"] = "UPDATE_COMPLETE"


# ------------------------------------------------------------------ the RolloutImage child
def rollout_child(world: World, on_done: Callable[[], None]) -> Process:
    """One Distributed Map child, state by state as in rollout_image.asl.json."""
    a = ASSUMPTIONS
    yield a["api_latency_s"] * 2  # two DynamoDB reads (desired image, user record)
    throttles = 0
    while not world.cfn_call():  # Read user stack
        yield world.full_jitter(throttles + 1, 1.0, 60.0)
        throttles += 1
    while not world.cfn_call():  # Update user stack
        yield world.full_jitter(throttles + 1, 1.0, 60.0)
        throttles += 1
    outcome: dict[str, str] = {"status": "UPDATE_IN_PROGRESS"}
    world.start(stack_update(world, outcome))
    polls = 0
    while outcome["status"] == "UPDATE_IN_PROGRESS":
        yield min(15.0, 2.0 + 2.0 * polls)  # Wait for stack update
        polls += 1
        while not world.cfn_call():  # Check stack update
            yield world.full_jitter(throttles + 1, 1.0, 60.0)
            throttles += 1
    if outcome["status"] != "UPDATE_COMPLETE":
        world.failed_users += 1
        on_done()
        return
    yield world.lognormal(a["smoke_run_median_s"], 0.5)  # Smoke run (data plane)
    attempt = 0
    while not world.lambda_call():  # Read function image (Retry: 2 s, x2, FULL jitter)
        yield world.rng.uniform(0.0, min(60.0, 2.0 * 2**attempt))
        attempt += 1
    yield a["api_latency_s"] * 2  # Record digest, Count outcome
    world.done_users += 1
    on_done()


def distributed_map(world: World, users: int, concurrency: int) -> Process:
    """The Map run: keep `concurrency` children running, child starts rate-limited."""
    started = 0
    running = [0]

    def finished() -> None:
        running[0] -= 1

    while started < users:
        if running[0] < concurrency and world.sfn_start.take(world.now):
            running[0] += 1
            started += 1
            world.start(rollout_child(world, finished))
            continue
        yield 0.05


def rollout(users: int, concurrency: int, canary: int, seed: int) -> dict[str, float]:
    """Canary wave (its own Map run), then the rest; returns what the table prints."""
    world = World(seed)

    def waves() -> Process:
        first = min(canary, users)
        world.start(distributed_map(world, first, concurrency))
        while world.done_users + world.failed_users < first:
            yield 1.0
        yield 1.0  # read progress, write the rest manifest
        world.start(distributed_map(world, users - first, concurrency))

    world.start(waves())
    world.run()
    return summary(world)


def serial_loop(users: int, seed: int) -> dict[str, float]:
    """Today's CI job: for each function, update-function-code then `aws lambda wait`."""
    world = World(seed)
    a = ASSUMPTIONS

    def loop() -> Process:
        for _ in range(users):
            world.lambda_call()
            ready_at = world.now + world.lognormal(
                a["function_update_median_s"], a["function_update_sigma"]
            )
            while world.now < ready_at:
                yield 5.0  # the function-updated waiter polls every 5 s
                world.lambda_call()
            world.done_users += 1

    world.start(loop())
    world.run()
    return summary(world)


def summary(world: World) -> dict[str, float]:
    return {
        "hours": world.now / 3600.0,
        "lambda_peak": world.lambda_meter.peak(),
        "lambda_peak_ok": world.lambda_meter.peak(admitted=True),
        "lambda_throttled": world.lambda_meter.throttled,
        "cfn_peak": world.cfn_meter.peak(),
        "cfn_throttled": world.cfn_meter.throttled,
        "failed": world.failed_users,
        "updated": world.done_users,
    }


def duration(hours: float) -> str:
    if hours >= 48:
        return f"{hours / 24:.1f} d"
    if hours >= 1:
        return f"{hours:.1f} h"
    return f"{hours * 60:.0f} min"


def choose_default(by_size: dict[int, dict[int, dict[str, float]]]) -> int:
    """The fastest concurrency that loses no user to throttling at any fleet size.

    Ties (within 5% at the largest size) go to the smaller value: it leaves more of the shared
    15 requests/s to signups and operators while the rollout runs.
    """
    sweep = sorted(next(iter(by_size.values())))
    clean = [c for c in sweep if all(results[c]["failed"] == 0 for results in by_size.values())]
    if not clean:
        return sweep[0]
    largest = by_size[max(by_size)]
    best = min(largest[c]["hours"] for c in clean)
    return min(c for c in clean if largest[c]["hours"] <= best * 1.05)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="skip the 50,000-user case")
    parser.add_argument("--canary", type=int, default=5)
    args = parser.parse_args()
    sizes = [1_000, 5_000] if args.quick else [1_000, 5_000, 50_000]
    sweep = [10, 20, 40, 80, 160]
    print("assumptions:", ", ".join(f"{k}={v}" for k, v in ASSUMPTIONS.items()))
    header = (
        "| users | strategy | time to full rollout | peak Lambda control-plane req/s "
        "(attempted / admitted) | Lambda calls throttled | peak CFN req/s (attempted) | "
        "CFN calls throttled | users failed |"
    )
    print(header)
    print("|" + "---|" * 8)
    by_size: dict[int, dict[int, dict[str, float]]] = {}
    for users in sizes:
        serial = serial_loop(users, args.seed)
        print(
            f"| {users:,} | serial loop | {duration(serial['hours'])} | "
            f"{serial['lambda_peak']:.0f} / {serial['lambda_peak_ok']:.0f} | "
            f"{serial['lambda_throttled']:.0f} | 0 | 0 | {serial['failed']:.0f} |"
        )
        results = {}
        for concurrency in sweep:
            result = rollout(users, concurrency, args.canary, args.seed)
            results[concurrency] = result
            print(
                f"| {users:,} | RolloutImage, MaxConcurrency {concurrency} | "
                f"{duration(result['hours'])} | {result['lambda_peak']:.0f} / "
                f"{result['lambda_peak_ok']:.0f} | {result['lambda_throttled']:.0f} | "
                f"{result['cfn_peak']:.0f} | {result['cfn_throttled']:.0f} | "
                f"{result['failed']:.0f} |"
            )
        by_size[users] = results
    print()
    print(f"default RolloutMaxConcurrency: {choose_default(by_size)}")


if __name__ == "__main__":
    main()
