"""Measure an image rollout of a real fleet in the local cloud under the `throttle` profile.

    .venv/bin/python -m bench.rollout_local --users 300 --quota-scale 0.2 [--faults throttle]

Starts its own LocalCloud (the real template, ASL and functions, IAM enforced) with the limiter's
rate scaled like the profile's quotas (`LambdaSharedRps` = 15 x scale), provisions --users users
without faults, then installs the fault profile (quotas x --quota-scale, so a run takes minutes
instead of hours of moto time), pushes a new image and waits for the rollout. Prints one JSON
object: the rollout's time against the profile's floor (users / shared rate + two one-user
updates, as docs/scaling.md defines it), calls admitted and throttled per bucket, and the
checks: every function on the new digest, every registry entry on it, every stack unchanged
(still CREATE_COMPLETE, ImageUri the live tag). Never used as a test.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import uuid
from datetime import datetime
from typing import Any

from fleet import naming

from sandboxctl.localcloud import faults
from sandboxctl.localcloud.faults import FaultProfile
from sandboxctl.localcloud.server import LocalCloud
from tests.integration.test_rollout import Fleet, make_fleet, new_uids


def progress(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def wait(predicate: Any, timeout: float, what: str, every: float = 2.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(every)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--users", type=int, default=300)
    parser.add_argument("--quota-scale", type=float, default=0.2)
    parser.add_argument("--faults", default="throttle")
    parser.add_argument("--max-concurrency", type=int, default=20)
    parser.add_argument("--function-wait", type=int, default=1)
    parser.add_argument(
        "--rollout-burst",
        type=int,
        default=1,
        help="RolloutBurst: keep it below the scaled bucket's capacity (15 x scale)",
    )
    args = parser.parse_args(argv)
    shared = 15.0 * args.quota_scale
    parameters = {
        "LambdaSharedRps": f"{shared:g}",
        "RolloutMaxConcurrency": str(args.max_concurrency),
        "FunctionUpdateWaitSeconds": str(args.function_wait),
        "RolloutBurst": str(args.rollout_burst),
    }
    progress(f"starting the local cloud with {parameters}")
    with LocalCloud(faults=None, parameters=parameters) as cloud:
        fleet: Fleet = make_fleet(cloud)
        uids = new_uids("bench", args.users)
        progress(f"provisioning {args.users} users")
        started = time.monotonic()
        fleet.sign_up(uids)
        fleet.wait_status(uids, {"READY"}, 3600)
        provision_s = time.monotonic() - started
        progress(f"{args.users} users READY in {provision_s:.0f}s")
        profile = FaultProfile.parse(args.faults, seed=1, quota_scale=args.quota_scale)
        faults.install_faults(profile)
        progress(f"faults {args.faults}: {profile.rates()}")
        digest = fleet.push(f"bench-{uuid.uuid4()}")
        pushed = time.monotonic()
        rollout = fleet.wait_rollout(digest, 7200)
        wall_s = time.monotonic() - pushed
        throttled, admitted = faults.throttled_counts(), faults.admitted_counts()
        faults.install_faults(None)
        progress(f"rollout {rollout['status']['S']} after {wall_s:.0f}s; checking the fleet")
        started_at = datetime.fromisoformat(rollout["started_at"]["S"].replace("Z", "+00:00"))
        finished_at = datetime.fromisoformat(rollout["finished_at"]["S"].replace("Z", "+00:00"))
        seconds = (finished_at - started_at).total_seconds()
        off_digest, registry_off, stacks_changed = [], [], []
        for uid in uids:
            if fleet.function_digest(uid) != digest:
                off_digest.append(uid)
            if fleet.record(uid).get("image_digest") != digest:
                registry_off.append(uid)
            stack = fleet.cfn.describe_stacks(
                StackName=naming.resource_name(fleet.stage, naming.user_digest(uid))
            )["Stacks"][0]
            image = {p["ParameterKey"]: p["ParameterValue"] for p in stack["Parameters"]}
            if stack["StackStatus"] != "CREATE_COMPLETE" or image["ImageUri"] != fleet.live_uri:
                stacks_changed.append(uid)
        # Canary gate and last user: one update (the profile's slow delay, at most 1.5x) plus
        # the ASL's first GetFunction wait; the smoke run is about a second here.
        one_user = float(args.function_wait) + (3.0 if "slow" in args.faults else 0.0) + 1.0
        floor = args.users / shared + 2 * one_user
        result = {
            "users": args.users,
            "faults": args.faults,
            "quota_scale": args.quota_scale,
            "rates": profile.rates() | {"lambda_invoke": None},
            "parameters": parameters,
            "status": rollout["status"]["S"],
            "seconds": round(seconds, 1),
            "wall_seconds_from_push": round(wall_s, 1),
            "floor_seconds": round(floor, 1),
            "ratio": round(seconds / floor, 3),
            "failed_users": int(rollout.get("failed", {"N": "0"})["N"]),
            "admitted": admitted,
            "throttled": throttled,
            "functions_not_on_digest": len(off_digest),
            "registry_not_on_digest": len(registry_off),
            "stacks_changed": len(stacks_changed),
            "provision_seconds": round(provision_s, 1),
        }
        print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
