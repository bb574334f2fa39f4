"""Helpers for the local cloud's own tests: unique names, polling, roles, small stacks."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

import pytest

T = TypeVar("T")
LAMBDA = "lambda.amazonaws.com"


def unique(prefix: str = "lc") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def wait_for(probe: Callable[[], T | None], timeout: float = 30.0, what: str = "condition") -> T:
    """Poll `probe` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def wait_for_value(probe: Callable[[], T | None], timeout: float, what: str) -> T:
    """Poll `probe`, backing off to 2 s, until it returns anything but None (0 and {} count).

    For the slower control-plane and rollout waits, where polling less often also spares the
    throttled APIs the test is exercising.
    """
    deadline = time.monotonic() + timeout
    delay = 0.1
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(delay)
        delay = min(delay * 1.5, 2.0)


def trust(service: str = LAMBDA) -> str:
    return json.dumps(
        {
            "Version": "2012-10-17",
            "Statement": [
                {"Effect": "Allow", "Principal": {"Service": service}, "Action": "sts:AssumeRole"}
            ],
        }
    )


def make_role(
    cloud: Any,
    statements: list[dict[str, Any]],
    *,
    service: str = LAMBDA,
    boundary: str | None = None,
) -> str:
    """A role trusted by `service` with exactly `statements` inline; returns its ARN."""
    iam = cloud.client("iam")
    name = unique("lc-role")
    extra = {"PermissionsBoundary": boundary} if boundary else {}
    arn: str = iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust(service), **extra)[
        "Role"
    ]["Arn"]
    if statements:
        iam.put_role_policy(
            RoleName=name,
            PolicyName="only-this",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
    return arn


def deploy_stack(cloud: Any, template: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """CreateStack and wait for a final status; returns DescribeStacks' stack."""
    cfn = cloud.client("cloudformation")
    name = unique("lc-stack")
    cfn.create_stack(
        StackName=name,
        TemplateBody=json.dumps(template),
        Capabilities=["CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"],
        **kwargs,
    )

    def final() -> dict[str, Any] | None:
        stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
        return None if stack["StackStatus"].endswith("IN_PROGRESS") else stack

    return wait_for(final, 60, f"stack {name}")


def outputs(stack: dict[str, Any]) -> dict[str, str]:
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def error_code(exc: Any) -> str:
    return str(exc.response["Error"]["Code"])


def ensure_desired_image(cp: Any, label: str = "base") -> dict[str, Any]:
    """Push a first sandbox image unless one is desired already (CI does it after a deploy)."""
    desired = cp.desired_image()
    if desired is None:
        cp.push_image(f"{label}-{uuid.uuid4().hex[:6]}")
        desired = wait_for_value(cp.desired_image, 120, "the rollout to record the desired image")
    return dict(desired)


def registry_entry(dynamodb: Any, table: str, pk: str) -> dict[str, Any] | None:
    """A registry item with each attribute's value as DynamoDB wrote it (numbers as strings)."""
    item = dynamodb.get_item(TableName=table, Key={"pk": {"S": pk}}, ConsistentRead=True).get(
        "Item"
    )
    return {k: next(iter(v.values())) for k, v in item.items()} if item else None


def put_signups(events: Any, bus: str, uids: list[str], created_at: str | None = None) -> None:
    """UserSignedUp on the bus exactly as the webhook emits it (bulk and duplicate deliveries)."""
    from datetime import UTC, datetime

    from fleet import naming
    from fleet.models import iso_utc

    entries = [
        {
            "Source": "sandbox-fleet",
            "DetailType": "UserSignedUp",
            "EventBusName": bus,
            "Detail": json.dumps(
                {
                    "uid": uid,
                    "user_digest": naming.user_digest(uid),
                    "email": None,
                    "event_id": str(uuid.uuid4()),
                    "created_at": created_at or iso_utc(datetime.now(UTC)),
                }
            ),
        }
        for uid in uids
    ]
    for start in range(0, len(entries), 10):
        response = events.put_events(Entries=entries[start : start + 10])
        assert response["FailedEntryCount"] == 0, response
