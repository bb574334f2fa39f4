"""Step Functions fidelity fixes, each observed through the public API of the local cloud."""

from __future__ import annotations

import copy
import json
import threading

import pytest
from botocore.exceptions import ClientError

from tests.integration.fidelity_support import (
    ACCOUNT,
    cloud,
    create_machine,
    make_role,
    run,
)
from tests.integration.localcloud_support import unique

pytestmark = pytest.mark.integration
__all__ = ["cloud"]

STATES = "states.amazonaws.com"
PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


@pytest.fixture(scope="module")
def plain_role(cloud) -> str:
    return make_role(cloud, STATES, [])


def test_unnamed_executions_get_unique_names(cloud, plain_role) -> None:
    machine = create_machine(cloud, PASS, plain_role)
    sfn = cloud.client("stepfunctions")
    first = sfn.start_execution(stateMachineArn=machine)["executionArn"]
    second = sfn.start_execution(stateMachineArn=machine)["executionArn"]

    assert first != second
    names = {arn.rsplit(":", 1)[-1] for arn in (first, second)}
    assert "None" not in names
    assert all(len(name) == 36 for name in names)  # a UUID, as AWS generates


def test_invalid_execution_name_is_rejected_and_starts_nothing(cloud, plain_role) -> None:
    machine = create_machine(cloud, PASS, plain_role)
    sfn = cloud.client("stepfunctions")
    with pytest.raises(ClientError) as raised:
        sfn.start_execution(stateMachineArn=machine, name="bad name/with*chars")
    assert raised.value.response["Error"]["Code"] == "InvalidName"
    assert sfn.list_executions(stateMachineArn=machine)["executions"] == []


def test_repeated_starts_while_earlier_executions_run(cloud, plain_role) -> None:
    waiting = {"StartAt": "Wait", "States": {"Wait": {"Type": "Wait", "Seconds": 1, "End": True}}}
    machine = create_machine(cloud, waiting, plain_role)
    sfn = cloud.client("stepfunctions")
    arns = [sfn.start_execution(stateMachineArn=machine)["executionArn"] for _ in range(3)]
    # The earlier executions are still running (live threads and locks) when later ones start.
    assert len(set(arns)) == 3
    from tests.integration.fidelity_support import finished

    assert {finished(cloud, arn)["status"] for arn in arns} == {"SUCCEEDED"}


def test_state_machine_snapshot_never_copies_live_executions() -> None:
    """The snapshot rule itself: deep-copying a machine that has run keeps working."""
    from moto.stepfunctions.models import StateMachine

    class LiveExecution:
        def __init__(self) -> None:
            self.lock = threading.RLock()

    backend = type("Backend", (), {"lock": threading.RLock()})()
    machine = StateMachine(  # type: ignore[abstract]
        arn=f"arn:aws:states:us-east-1:{ACCOUNT}:stateMachine:snap",
        name="snap",
        definition=json.dumps(PASS),
        roleArn=f"arn:aws:iam::{ACCOUNT}:role/x",
        backend=backend,
    )
    machine.executions.append(LiveExecution())  # type: ignore[arg-type]

    clone = copy.deepcopy(machine)

    assert clone.executions == []
    assert clone.backend is backend
    assert clone.definition == machine.definition
    assert machine.executions  # the original keeps its history


def test_definite_jsonpath_yields_the_value(cloud, plain_role) -> None:
    machine = create_machine(
        cloud,
        {
            "StartAt": "Read",
            "States": {
                "Read": {
                    "Type": "Pass",
                    "Parameters": {
                        "status.$": "$.Stacks[0].StackStatus",
                        "all.$": "$.Stacks[*].StackStatus",
                    },
                    "Next": "Complete?",
                },
                "Complete?": {
                    "Type": "Choice",
                    "Choices": [
                        {"Variable": "$.status", "StringEquals": "CREATE_COMPLETE", "Next": "Ok"}
                    ],
                    "Default": "NeverMatched",
                },
                "Ok": {"Type": "Succeed"},
                "NeverMatched": {"Type": "Fail", "Error": "NeverMatched"},
            },
        },
        plain_role,
    )
    result = run(cloud, machine, {"Stacks": [{"StackStatus": "CREATE_COMPLETE"}]})

    assert result["status"] == "SUCCEEDED", result.get("error")
    assert json.loads(result["output"]) == {
        "status": "CREATE_COMPLETE",
        "all": ["CREATE_COMPLETE"],  # an indefinite path is still a list
    }


def test_jsonata_expressions_evaluate(cloud, plain_role) -> None:
    machine = create_machine(
        cloud,
        {
            "QueryLanguage": "JSONata",
            "StartAt": "Compute",
            "States": {
                "Compute": {
                    "Type": "Pass",
                    "Assign": {"quoted": '{% $states.input.name & " said \\"hi\\"" %}'},
                    "Output": {
                        "total": "{% $sum($states.input.items.price) %}",
                        "names": "{% $states.input.items[price > 1].name %}",
                    },
                    "Next": "Echo",
                },
                "Echo": {
                    "Type": "Pass",
                    "Output": {"total": "{% $states.input.total %}", "quoted": "{% $quoted %}"},
                    "End": True,
                },
            },
        },
        plain_role,
    )
    items = [{"name": "a", "price": 1}, {"name": "b", "price": 2}, {"name": "c", "price": 3}]
    result = run(cloud, machine, {"name": "Ann", "items": items})

    assert result["status"] == "SUCCEEDED", result.get("cause")
    assert json.loads(result["output"]) == {"total": 6, "quoted": 'Ann said "hi"'}


def test_jsonata_failure_is_a_query_evaluation_error(cloud, plain_role) -> None:
    machine = create_machine(
        cloud,
        {
            "QueryLanguage": "JSONata",
            "StartAt": "Bad",
            "States": {
                "Bad": {"Type": "Pass", "Output": '{% "text" + 1 %}', "End": True},
            },
        },
        plain_role,
    )
    result = run(cloud, machine, {})
    assert result["status"] == "FAILED"
    assert result["error"] == "States.QueryEvaluationError"


def test_sdk_errors_are_named_as_aws_names_them_and_retry_matches(cloud) -> None:
    role = make_role(
        cloud,
        STATES,
        [
            {"Effect": "Allow", "Action": "lambda:InvokeFunction", "Resource": "*"},
            {"Effect": "Allow", "Action": "cloudformation:DescribeStacks", "Resource": "*"},
        ],
    )
    machine = create_machine(
        cloud,
        {
            "StartAt": "Invoke function",
            "States": {
                "Invoke function": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:lambda:invoke",
                    "Parameters": {"FunctionName": unique("missing"), "Payload": "{}"},
                    "Retry": [
                        {
                            "ErrorEquals": ["Lambda.ResourceNotFoundException"],
                            "IntervalSeconds": 1,
                            "MaxAttempts": 1,
                            "BackoffRate": 1,
                        }
                    ],
                    "Catch": [
                        {
                            "ErrorEquals": ["Lambda.ResourceNotFoundException"],
                            "ResultPath": "$.lambdaError",
                            "Next": "Describe stack",
                        }
                    ],
                    "End": True,
                },
                "Describe stack": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:cloudformation:describeStacks",
                    "Parameters": {"StackName": unique("missing")},
                    "Catch": [
                        {
                            "ErrorEquals": ["CloudFormation.CloudFormationException"],
                            "ResultPath": "$.cfnError",
                            "Next": "Handled",
                        }
                    ],
                    "End": True,
                },
                "Handled": {"Type": "Succeed"},
            },
        },
        role,
    )
    result = run(cloud, machine, {})

    assert result["status"] == "SUCCEEDED", (result.get("error"), result.get("cause"))
    output = json.loads(result["output"])
    assert output["lambdaError"]["Error"] == "Lambda.ResourceNotFoundException"
    assert output["cfnError"]["Error"] == "CloudFormation.CloudFormationException"
    history = cloud.client("stepfunctions").get_execution_history(
        executionArn=result["executionArn"]
    )["events"]
    failures = [e for e in history if e["type"] == "TaskFailed"]
    assert len(failures) == 3  # invoke, its one retry, describeStacks


def test_states_all_does_not_catch_states_runtime(cloud) -> None:
    role = make_role(cloud, STATES, [])
    machine = create_machine(
        cloud,
        {
            "StartAt": "Who am I",
            "States": {
                "Who am I": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:sts:getCallerIdentity",
                    "Parameters": {"Missing.$": "$.not.there"},
                    "Catch": [{"ErrorEquals": ["States.ALL"], "Next": "Swallowed"}],
                    "End": True,
                },
                "Swallowed": {"Type": "Succeed"},
            },
        },
        role,
    )
    result = run(cloud, machine, {})
    assert result["status"] == "FAILED"
    assert result["error"] == "States.Runtime"


def test_sdk_service_names_resolve_as_step_functions_spells_them(cloud) -> None:
    role = make_role(
        cloud, STATES, [{"Effect": "Allow", "Action": "logs:DescribeLogGroups", "Resource": "*"}]
    )
    machine = create_machine(
        cloud,
        {
            "StartAt": "List",
            "States": {
                "List": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:cloudwatchlogs:describeLogGroups",
                    "Parameters": {"Limit": 1},
                    "End": True,
                }
            },
        },
        role,
    )
    result = run(cloud, machine, {})
    assert result["status"] == "SUCCEEDED", (result.get("error"), result.get("cause"))
    assert "LogGroups" in json.loads(result["output"])  # PascalCase, as AWS returns it


def test_interpreter_calls_are_signed_as_the_machine_role(cloud) -> None:
    dynamodb = cloud.client("dynamodb")
    table = unique("registry")
    dynamodb.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    # Least privilege: the role may read items, not write them.
    role = make_role(
        cloud, STATES, [{"Effect": "Allow", "Action": "dynamodb:GetItem", "Resource": "*"}]
    )
    key = {"pk": {"S": "x"}}
    machine = create_machine(
        cloud,
        {
            "StartAt": "Who am I",
            "States": {
                "Who am I": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:sts:getCallerIdentity",
                    "ResultSelector": {"Arn.$": "$.Arn"},
                    "ResultPath": "$.caller",
                    "Next": "Read item",
                },
                "Read item": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:dynamodb:getItem",
                    "Parameters": {"TableName": table, "Key": key},
                    "ResultPath": None,
                    "Next": "Write item",
                },
                "Write item": {
                    "Type": "Task",
                    "Resource": "arn:aws:states:::aws-sdk:dynamodb:putItem",
                    "Parameters": {"TableName": table, "Item": key},
                    "End": True,
                },
            },
        },
        role,
    )
    result = run(cloud, machine, {})

    assert result["status"] == "FAILED"
    assert result["error"].startswith("DynamoDb.")
    assert "not authorized to perform: dynamodb:PutItem" in result["cause"]
    history = cloud.client("stepfunctions").get_execution_history(
        executionArn=result["executionArn"]
    )["events"]
    succeeded = [e for e in history if e["type"] == "TaskSucceeded"]
    caller = json.loads(succeeded[0]["taskSucceededEventDetails"]["output"])["Arn"]
    role_name = role.rsplit("/", 1)[-1]
    assert f":assumed-role/{role_name}/" in caller
    assert len(succeeded) == 2  # the read was allowed; the write was denied
    assert "Item" not in dynamodb.get_item(TableName=table, Key=key)
