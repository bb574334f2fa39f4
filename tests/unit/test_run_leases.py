"""The per-user run cap: leases with expiry in the registry, and POST /run's 429."""

from __future__ import annotations

import io
import json
import threading
from typing import Any

import pytest
import run_code
from fleet.leases import RunLeases, TooManyRuns

from tests.unit.test_run_code import GOOD, STAGE, TABLE, api_event, register
from tests.unit.test_run_code import dynamodb as dynamodb  # the same moto registry fixture


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def leases(dynamodb: Any, cap: int = 3, clock: Clock | None = None) -> RunLeases:
    return RunLeases(dynamodb, TABLE, cap, 30.0, now=clock or Clock(), sleep=lambda s: None)


def test_a_user_gets_at_most_cap_leases_and_one_back_after_a_release(dynamodb: Any) -> None:
    runs = leases(dynamodb)
    for rid in ("r1", "r2", "r3"):
        runs.acquire("alice", rid)
    with pytest.raises(TooManyRuns) as busy:
        runs.acquire("alice", "r4")
    assert busy.value.cap == 3 and busy.value.retry_after >= 1
    runs.acquire("bob", "b1")  # another user's cap is their own

    runs.release("alice", "r2")
    runs.acquire("alice", "r4")


def test_a_lease_never_released_stops_counting_when_it_expires(dynamodb: Any) -> None:
    clock = Clock()
    runs = leases(dynamodb, cap=1, clock=clock)
    runs.acquire("alice", "crashed")
    with pytest.raises(TooManyRuns):
        runs.acquire("alice", "next")
    clock.t += 31
    runs.acquire("alice", "next")
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "RUNS#alice"}})["Item"]
    assert set(item["leases"]["M"]) == {"next"}  # the expired lease was dropped
    assert "status" not in item  # never in the ByStatus index


class AtomicCalls:
    """Each DynamoDB call atomic, as the service guarantees: moto's in-process backend is not
    thread-safe, so a conditional write racing another could be lost there (never on AWS).
    Read-modify-write cycles of different threads still interleave freely between calls."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._client, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return method(*args, **kwargs)

        return call


def test_racing_requests_never_exceed_the_cap_and_each_is_answered(dynamodb: Any) -> None:
    runs = RunLeases(AtomicCalls(dynamodb), TABLE, 4, 30.0)
    outcomes: dict[str, str] = {}
    start = threading.Barrier(12)

    def request(rid: str) -> None:
        start.wait()
        try:
            runs.acquire("alice", rid)
            outcomes[rid] = "leased"
        except TooManyRuns:
            outcomes[rid] = "429"

    threads = [threading.Thread(target=request, args=(f"r{i}",)) for i in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "RUNS#alice"}})["Item"]
    leased = {rid for rid, outcome in outcomes.items() if outcome == "leased"}
    assert len(outcomes) == 12
    assert set(item["leases"]["M"]) == leased
    assert 1 <= len(leased) <= 4


class SlowLambda:
    def __init__(self) -> None:
        self.calls = 0

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        body = json.dumps({"status": "ok", "result": 1}).encode()
        return {"StatusCode": 200, "Payload": io.BytesIO(body)}


def test_run_beyond_the_cap_is_429_with_retry_after_and_invokes_nothing(dynamodb: Any) -> None:
    register(dynamodb, "alice", "READY")
    fake = SlowLambda()
    deps = run_code.Dependencies(dynamodb, fake, TABLE, STAGE, runs_per_user=2)
    held = RunLeases(dynamodb, TABLE, 2, 30.0)
    held.acquire("alice", "in-flight-1")
    held.acquire("alice", "in-flight-2")

    refused = run_code.handle(api_event("POST /run", "alice", GOOD), deps)

    assert refused["statusCode"] == 429
    assert int(refused["headers"]["retry-after"]) >= 1
    assert "at most 2 at once" in json.loads(refused["body"])["message"]
    assert fake.calls == 0

    held.release("alice", "in-flight-1")
    answered = run_code.handle(api_event("POST /run", "alice", GOOD), deps)
    assert answered["statusCode"] == 200 and fake.calls == 1
    # The run gave its lease back: only the other in-flight run still holds one.
    item = dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "RUNS#alice"}})["Item"]
    assert set(item["leases"]["M"]) == {"in-flight-2"}
