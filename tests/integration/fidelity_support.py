"""Shared pieces of the fidelity tests: a local cloud with every fix and IAM enforced, roles.

The tests use the integration suite's shared ``local_cloud`` fixture when there is one; otherwise
one template-less LocalCloud per process (fixes applied, IAM enforced, operator user), which is
all a fidelity test needs, stopped at exit. Every test creates its own uniquely named resources.
"""

from __future__ import annotations

import atexit
import json
import tempfile
from pathlib import Path
from typing import Any, TypeVar

import pytest

from sandboxctl.localcloud import server
from tests.integration.localcloud_support import unique, wait_for

T = TypeVar("T")
ACCOUNT = server.DEFAULT_ACCOUNT


_own: server.LocalCloud | None = None


def _own_cloud() -> server.LocalCloud:
    """One template-less LocalCloud per process (moto's state is process-global)."""
    global _own
    if server._active is not None:
        return server._active
    if _own is None:
        missing = Path(tempfile.mkdtemp(prefix="fidelity-")) / "no-template.yaml"
        _own = server.LocalCloud(template=missing)
        _own.start()
        atexit.register(_own.stop)
    return _own


@pytest.fixture(scope="module")
def cloud(request: pytest.FixtureRequest) -> server.LocalCloud:
    """The suite's shared local cloud if the integration conftest provides one, else our own."""
    try:
        shared: server.LocalCloud = request.getfixturevalue("local_cloud")
    except pytest.FixtureLookupError:
        return _own_cloud()
    return shared


def make_role(cloud: server.LocalCloud, principal: str, statements: list[dict[str, Any]]) -> str:
    """A role trusting ``principal`` with exactly ``statements``; returns its ARN."""
    iam = cloud.client("iam")
    name = unique("fid")
    arn: str = iam.create_role(
        RoleName=name,
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": principal},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    if statements:
        iam.put_role_policy(
            RoleName=name,
            PolicyName="least-privilege",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": statements}),
        )
    return arn


def create_machine(cloud: server.LocalCloud, definition: dict[str, Any], role_arn: str) -> str:
    sfn = cloud.client("stepfunctions")
    arn: str = sfn.create_state_machine(
        name=unique("fid"), definition=json.dumps(definition), roleArn=role_arn
    )["stateMachineArn"]
    return arn


def finished(cloud: server.LocalCloud, execution_arn: str, timeout: float = 30.0) -> dict[str, Any]:
    """DescribeExecution once the execution left RUNNING."""
    sfn = cloud.client("stepfunctions")

    def probe() -> dict[str, Any] | None:
        described: dict[str, Any] = sfn.describe_execution(executionArn=execution_arn)
        return None if described["status"] == "RUNNING" else described

    return wait_for(probe, timeout, f"execution {execution_arn}")


def run(
    cloud: server.LocalCloud, machine_arn: str, payload: Any = None, **kwargs: Any
) -> dict[str, Any]:
    sfn = cloud.client("stepfunctions")
    started = sfn.start_execution(
        stateMachineArn=machine_arn, input=json.dumps(payload or {}), **kwargs
    )
    return finished(cloud, started["executionArn"])


def queue(cloud: server.LocalCloud) -> tuple[str, str]:
    """A fresh SQS queue: (url, arn)."""
    sqs = cloud.client("sqs")
    url: str = sqs.create_queue(QueueName=unique("fid"))["QueueUrl"]
    arn: str = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    return url, arn


def receive(cloud: server.LocalCloud, url: str, count: int = 1) -> list[dict[str, Any]]:
    """Wait until ``count`` messages arrived on the queue; return them all."""
    sqs = cloud.client("sqs")
    got: list[dict[str, Any]] = []

    def probe() -> list[dict[str, Any]] | None:
        got.extend(
            sqs.receive_message(
                QueueUrl=url, MaxNumberOfMessages=10, MessageAttributeNames=["All"]
            ).get("Messages", [])
        )
        return got if len(got) >= count else None

    return wait_for(probe, 30.0, f"{count} message(s) on {url}")
