"""Benchmark the client path: POST /run over the local HTTP API with a verified Firebase token.

    .venv/bin/python bench/http_api.py [--requests 60] [--rounds 3] [--json]

Starts its own LocalCloud (the real template, IAM enforced), pushes the first image, signs up 16
users and uploads a small CSV for each through POST /datasets, then measures end to end (client
socket to client socket, through the JWT authorizer, RunCode and the user's sandbox function):
1. warm sequential runs of `len(df)` for one user: p50/p95, and the overhead over the sandbox's
   own `metrics.wall_ms` (what the HTTP API, the authorizer, RunCode and two Lambda hops add);
2. 1, 4 and 16 concurrent requests from one user (after a warm-up round at that concurrency,
   so each request has a warm environment; with the per-user cap of 10, requests beyond it are
   answered 429 and counted, not timed);
3. 16 users with one request each, all at once.
Prints a table; never used as a test (figures depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any

import requests

from sandboxctl.apiclient import ApiClient
from sandboxctl.controlplane import ControlPlane
from sandboxctl.localcloud.server import LocalCloud, push_first_image

CSV = b"city,sales\n" + b"".join(b"c%d,%d\n" % (i, i) for i in range(200))
CODE = "len(df)"


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def timed_run(session: requests.Session, url: str, token: str) -> tuple[int, float, float]:
    """(status code, end-to-end ms, sandbox wall_ms or 0)."""
    began = time.perf_counter()
    reply = session.post(
        url + "/run",
        json={"code": CODE, "dataset": "bench.csv"},
        headers={"authorization": f"Bearer {token}"},
        timeout=60,
    )
    elapsed = (time.perf_counter() - began) * 1000
    wall = reply.json()["metrics"]["wall_ms"] if reply.status_code == 200 else 0.0
    return reply.status_code, elapsed, float(wall)


def burst(url: str, tokens: list[str]) -> list[tuple[int, float, float]]:
    """One request per token, all released at once."""
    barrier = threading.Barrier(len(tokens))

    def one(token: str) -> tuple[int, float, float]:
        with requests.Session() as session:
            barrier.wait()
            return timed_run(session, url, token)

    with ThreadPoolExecutor(max_workers=len(tokens)) as pool:
        return list(pool.map(one, tokens))


def summarise(label: str, results: list[tuple[int, float, float]]) -> dict[str, Any]:
    ok = [r for r in results if r[0] == 200]
    e2e = [r[1] for r in ok]
    overhead = [r[1] - r[2] for r in ok]
    return {
        "case": label,
        "requests": len(results),
        "ok": len(ok),
        "429": sum(1 for r in results if r[0] == 429),
        "p50_ms": round(pct(e2e, 0.5), 1) if e2e else None,
        "p95_ms": round(pct(e2e, 0.95), 1) if e2e else None,
        "overhead_p50_ms": round(pct(overhead, 0.5), 1) if overhead else None,
        "overhead_p95_ms": round(pct(overhead, 0.95), 1) if overhead else None,
        "wall_p50_ms": round(statistics.median(r[2] for r in ok), 1) if ok else None,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=60, help="sequential warm requests")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds per concurrency")
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()

    with LocalCloud() as cloud:
        import io

        push_first_image(cloud, io.StringIO())
        cp = ControlPlane.from_local_cloud(cloud)
        uids = [f"bench-{i}-{uuid.uuid4().hex[:6]}" for i in range(args.users)]
        for uid in uids:
            cp.signup(uid)
        for uid in uids:
            user = cp.wait_for_user(uid, {"READY", "FAILED"}, 600)
            assert user is not None and user["status"] == "READY", user
        url = cp.api_url()
        tokens = {uid: cloud.id_token(uid) for uid in uids}
        for uid in uids:
            ApiClient(url, partial(tokens.__getitem__, uid)).upload("bench.csv", CSV, "text/csv")

        rows = []
        first = uids[0]
        with requests.Session() as session:
            for _ in range(3):  # warm RunCode's and the sandbox's environments
                timed_run(session, url, tokens[first])
            sequential = [timed_run(session, url, tokens[first]) for _ in range(args.requests)]
        rows.append(summarise("1 user, sequential, warm", sequential))
        # The same run invoked on the user's function directly (no API, authorizer, RunCode).
        lam = cloud.client("lambda")
        function = str(cp.require_user(first)["function_name"])
        direct = []
        for _ in range(args.requests):
            began = time.perf_counter()
            answer = lam.invoke(
                FunctionName=function,
                Payload=json.dumps({"code": CODE, "dataset": "bench.csv"}).encode(),
            )
            envelope = json.loads(answer["Payload"].read())
            elapsed = (time.perf_counter() - began) * 1000
            direct.append((200, elapsed, float(envelope["metrics"]["wall_ms"])))
        rows.append(summarise("1 user, sequential, sandbox invoked directly", direct))
        for concurrency in (1, 4, 16):
            burst(url, [tokens[first]] * concurrency)  # warm-up: one environment per request
            results: list[tuple[int, float, float]] = []
            for _ in range(args.rounds):
                results += burst(url, [tokens[first]] * concurrency)
            rows.append(summarise(f"1 user, {concurrency} concurrent", results))
        everyone = [tokens[uid] for uid in uids]
        burst(url, everyone)
        results = []
        for _ in range(args.rounds):
            results += burst(url, everyone)
        rows.append(summarise(f"{len(uids)} users, 1 each, concurrent", results))

    if args.json:
        print(json.dumps({"load_average": os.getloadavg(), "rows": rows}, indent=2))
        return 0
    columns = list(rows[0])
    print(f"load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores")
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(str(row[c]) for c in columns) + " |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
