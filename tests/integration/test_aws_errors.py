"""Errors that retrying cannot fix end the workflow at once, with the reason (issue 10, item 8).

CloudFormation reports an access denial as ``CloudFormationException``, the same name as
throttling: the workflows used to retry it 8 times per attempt, 3 attempts, minutes of retries
that could never succeed. Now the first refusal is the answer.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import pytest

from tests.integration.test_control_plane import FINAL, Plane, new_uid
from tests.integration.test_control_plane import plane as plane

pytestmark = pytest.mark.integration


def scheduled(plane: Plane, execution_arn: str, state: str) -> int:
    history = plane.sfn.get_execution_history(executionArn=execution_arn, maxResults=1000)
    entered = [e.get("stateEnteredEventDetails", {}).get("name") for e in history["events"]]
    return entered.count(state)


@pytest.fixture
def deny_create_stack(plane: Plane) -> Iterator[Callable[[str], None]]:
    """An explicit Deny on the ProvisionUser role for one stack name, removed afterwards."""
    machine = plane.sfn.describe_state_machine(
        stateMachineArn=plane.out["ProvisionUserStateMachineArn"]
    )
    role = machine["roleArn"].rsplit("/", 1)[-1]
    policy = "test-deny-create-stack"

    def deny(stack_name: str) -> None:
        document = {
            "Version": "2012-10-17",
            "Statement": [
                {
                    "Effect": "Deny",
                    "Action": "cloudformation:CreateStack",
                    "Resource": f"arn:aws:cloudformation:*:*:stack/{stack_name}/*",
                }
            ],
        }
        plane.iam.put_role_policy(
            RoleName=role, PolicyName=policy, PolicyDocument=json.dumps(document)
        )

    try:
        yield deny
    finally:
        plane.iam.delete_role_policy(RoleName=role, PolicyName=policy)


def test_an_access_denied_create_stack_fails_at_once_with_the_reason(
    plane: Plane, deny_create_stack: Callable[[str], None]
) -> None:
    uid = new_uid("denied")
    deny_create_stack(plane.name(uid))
    plane.cp.signup(uid)
    user = plane.wait_user(uid, FINAL, timeout=120)

    assert user["status"] == "FAILED"
    assert "not authorized to perform: cloudformation:CreateStack" in user["last_error"]
    assert int(user["attempts"]) == 1  # no second attempt: it would be refused the same way
    [execution] = plane.wait_executions_done("ProvisionUserStateMachineArn", uid, 1)
    assert execution["status"] == "FAILED"
    assert scheduled(plane, execution["executionArn"], "Create user stack") == 1
    assert scheduled(plane, execution["executionArn"], "Back off CloudFormation") == 0
    assert plane.live_stack(uid) is None
