"""Benchmark the local cloud: start-up, Step Functions executions/s, signup-to-READY latency.

    .venv/bin/python bench/local_cloud.py [--users 100] [--executions 200] [--concurrency 8]

Starts its own LocalCloud (the real template, IAM enforced), then measures
1. start-up time (fixes, server, offline SAM deploy);
2. executions per second of a one-state machine and of a machine whose task invokes a Lambda
   function (a real worker process per warm environment);
3. signup-to-READY latency for --users users: an image is pushed and rolled out first (the
   provisioning workflow needs a desired image), then every user signs up through the real
   signup webhook, the ProvisionUser workflow creates each user's stack, and the time until the
   registry says READY is recorded per user.
Prints a table; never used as a test (figures depend on the machine and its load).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from sandboxctl.controlplane import ControlPlane
from sandboxctl.localcloud.server import LocalCloud

DEADLINE_S = 600.0


def _role(cloud: LocalCloud, service: str, statements: list[dict[str, Any]]) -> str:
    iam = cloud.client("iam")
    name = f"bench-{uuid.uuid4().hex[:8]}"
    trust = {
        "Version": "2012-10-17",
        "Statement": [
            {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
        ],
    }
    arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"][
        "Arn"
    ]
    if statements:
        iam.put_role_policy(
            RoleName=name,
            PolicyName="bench",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
    return arn


def progress(message: str) -> None:
    print(f"... {message}", file=sys.stderr, flush=True)


def executions_per_second(
    cloud: LocalCloud, definition: dict[str, Any], role: str, count: int, concurrency: int
) -> tuple[float, int]:
    """Start `count` executions (from `concurrency` threads), wait for all; (rate, failures)."""
    sfn = cloud.client("stepfunctions")
    machine = sfn.create_state_machine(
        name=f"bench-{uuid.uuid4().hex[:8]}", definition=json.dumps(definition), roleArn=role
    )["stateMachineArn"]
    began = time.monotonic()

    def start(i: int) -> None:
        sfn.start_execution(stateMachineArn=machine, input=json.dumps({"i": i}))

    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(start, range(count)))
    # One listing per poll, so the measurement does not compete with its own polling.
    deadline = time.monotonic() + DEADLINE_S
    while True:
        statuses = [
            e["status"]
            for page in sfn.get_paginator("list_executions").paginate(stateMachineArn=machine)
            for e in page["executions"]
        ]
        if "RUNNING" not in statuses or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    elapsed = time.monotonic() - began
    return count / elapsed, sum(1 for s in statuses if s != "SUCCEEDED")


def lambda_task_machine(cloud: LocalCloud) -> tuple[dict[str, Any], str]:
    """A machine whose one task invokes the deployed signup webhook (rejects: 4xx, no writes)."""
    function = cloud.outputs["SignupWebhookFunctionName"]
    arn = f"arn:aws:lambda:{cloud.region}:{cloud.account_id}:function:{function}"
    definition = {
        "StartAt": "Invoke",
        "States": {
            "Invoke": {
                "Type": "Task",
                "Resource": "arn:aws:states:::lambda:invoke",
                "Parameters": {"FunctionName": arn, "Payload": {"body": "{}"}},
                "End": True,
            }
        },
    }
    role = _role(
        cloud,
        "states.amazonaws.com",
        [{"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": arn}],
    )
    return definition, role


def signup_to_ready(cloud: LocalCloud, users: int, concurrency: int) -> dict[str, Any]:
    """Sign `users` users up through the webhook; latency until each is READY (or FAILED)."""
    cp = ControlPlane.from_local_cloud(cloud)
    progress("pushing an image and waiting for its rollout")
    pushed = cp.push_image(f"bench-{uuid.uuid4().hex[:8]}")
    cp.wait_for_rollout(pushed["image_digest"], timeout_s=120)
    progress(f"signing up {users} users")
    run = uuid.uuid4().hex[:6]

    def one(i: int) -> tuple[str, float]:
        uid = f"bench-{run}-{i:04d}"
        started = time.monotonic()
        cp.signup(uid, email=f"{uid}@example.com")
        user = cp.wait_for_user(uid, {"READY", "FAILED"}, timeout_s=DEADLINE_S)
        return (str(user["status"]) if user else "GONE", time.monotonic() - started)

    began = time.monotonic()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(one, range(users)))
    wall = time.monotonic() - began
    ready = sorted(latency for status, latency in results if status == "READY")
    return {
        "users": users,
        "ready": len(ready),
        "failed": users - len(ready),
        "wall_s": wall,
        "p50_s": statistics.median(ready) if ready else float("nan"),
        "p95_s": ready[int(0.95 * (len(ready) - 1))] if ready else float("nan"),
        "max_s": ready[-1] if ready else float("nan"),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=100)
    parser.add_argument("--executions", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args(argv)
    if args.users < 0 or args.executions < 1 or args.concurrency < 1:
        parser.error("--users >= 0, --executions >= 1 and --concurrency >= 1")

    rows: list[tuple[str, str]] = []
    progress("starting the local cloud")
    with LocalCloud() as cloud:
        rows.append(("local cloud start-up", f"{cloud.startup_seconds:.1f} s"))
        progress(f"{args.executions} executions of a one-state machine")
        pass_machine = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}
        rate, failed = executions_per_second(
            cloud,
            pass_machine,
            _role(cloud, "states.amazonaws.com", []),
            args.executions,
            args.concurrency,
        )
        rows.append(("executions/s (1 Pass state)", f"{rate:.1f}  ({failed} not SUCCEEDED)"))
        progress(f"{args.executions} executions of a lambda:invoke task")
        definition, role = lambda_task_machine(cloud)
        rate, failed = executions_per_second(
            cloud, definition, role, args.executions, args.concurrency
        )
        rows.append(("executions/s (1 lambda:invoke task)", f"{rate:.1f}  ({failed} failed)"))
        if args.users:
            try:
                figures = signup_to_ready(cloud, args.users, args.concurrency)
            except Exception as exc:  # report what is missing rather than no figures at all
                rows.append(("signup-to-READY", f"not measured: {type(exc).__name__}: {exc}"))
            else:
                rows.append(
                    (
                        f"signup-to-READY, {figures['users']} users",
                        f"p50 {figures['p50_s']:.2f} s, p95 {figures['p95_s']:.2f} s, "
                        f"max {figures['max_s']:.2f} s; {figures['ready']} READY, "
                        f"{figures['failed']} not; all done in {figures['wall_s']:.1f} s",
                    )
                )
    width = max(len(name) for name, _ in rows)
    print(f"local cloud benchmark (concurrency {args.concurrency})")
    for name, value in rows:
        print(f"  {name:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
