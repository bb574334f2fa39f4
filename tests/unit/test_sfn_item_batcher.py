"""The local cloud's ItemBatcher fix: moto 5.2.5 cannot parse the field at all."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from sandboxctl.localcloud.fixes import _hooks, sfn_item_batcher, sfn_map_tolerated_failure

ROLE = "arn:aws:iam::123456789012:role/state-machine"
BUCKET = "batcher-tests"


def batched_map(batcher: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """A Distributed Map over a JSON array in S3 whose children report what they were given."""
    return {
        "StartAt": "Each",
        "States": {
            "Each": {
                "Type": "Map",
                "ItemReader": {
                    "Resource": "arn:aws:states:::s3:getObject",
                    "ReaderConfig": {"InputType": "JSON"},
                    "Parameters": {"Bucket": BUCKET, "Key": "items.json"},
                },
                "ItemBatcher": batcher,
                "ItemProcessor": {
                    "ProcessorConfig": {"Mode": "DISTRIBUTED", "ExecutionType": "STANDARD"},
                    "StartAt": "Report",
                    "States": {"Report": {"Type": "Pass", "End": True}},
                },
                **extra,
                "End": True,
            }
        },
    }


@pytest.fixture
def sfn() -> Iterator[Any]:
    with mock_aws(config={"stepfunctions": {"execute_state_machine": True}}):
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        items = [{"n": i} for i in range(7)]
        s3.put_object(Bucket=BUCKET, Key="items.json", Body=json.dumps(items).encode())
        yield boto3.client("stepfunctions", region_name="us-east-1")


@pytest.fixture
def fixed() -> Iterator[None]:
    _hooks.remember_moto()
    for fix in (sfn_map_tolerated_failure, sfn_item_batcher):
        fix.check()
        fix.apply()
    yield
    _hooks.unpatch_all()


def run(sfn: Any, definition: dict[str, Any]) -> dict[str, Any]:
    machine = sfn.create_state_machine(
        name=f"batcher-{time.monotonic_ns()}", definition=json.dumps(definition), roleArn=ROLE
    )["stateMachineArn"]
    arn = sfn.start_execution(stateMachineArn=machine, input="{}")["executionArn"]
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        described: dict[str, Any] = sfn.describe_execution(executionArn=arn)
        if described["status"] != "RUNNING":
            return described
        time.sleep(0.05)
    raise AssertionError("the execution did not finish")


def test_plain_moto_cannot_even_create_a_batched_map(sfn: Any) -> None:
    with pytest.raises(ClientError, match="ItemBatcher"):
        sfn.create_state_machine(
            name="plain", definition=json.dumps(batched_map({"MaxItemsPerBatch": 3})), roleArn=ROLE
        )


@pytest.mark.usefixtures("fixed")
def test_children_get_batches_of_at_most_max_items_with_the_batch_input(sfn: Any) -> None:
    described = run(sfn, batched_map({"MaxItemsPerBatch": 3, "BatchInput": {"run": "r1"}}))

    assert described["status"] == "SUCCEEDED", described
    outputs = json.loads(described["output"])
    assert [[item["n"] for item in child["Items"]] for child in outputs] == [
        [0, 1, 2],
        [3, 4, 5],
        [6],
    ]
    assert all(child["BatchInput"] == {"run": "r1"} for child in outputs)


@pytest.mark.usefixtures("fixed")
def test_without_batch_input_a_child_gets_only_its_items(sfn: Any) -> None:
    described = run(sfn, batched_map({"MaxItemsPerBatch": 5}))

    assert described["status"] == "SUCCEEDED", described
    assert [sorted(child) for child in json.loads(described["output"])] == [["Items"], ["Items"]]


@pytest.mark.usefixtures("fixed")
@pytest.mark.parametrize(
    ("batcher", "extra", "reason"),
    [
        ({"MaxItemsPerBatch": 0}, {}, "MaxItemsPerBatch must be a positive integer"),
        ({"MaxInputBytesPerBatch": 1000}, {}, "not emulated"),
        ({"MaxItemsPerBatch": 2, "BatchInput": {"x.$": "$.y"}}, {}, "not emulated"),
        ({"MaxItemsPerBatch": 2, "Bogus": 1}, {}, "unknown fields"),
        ({"MaxItemsPerBatch": 2}, {"ItemSelector": {"v.$": "$$.Map.Item.Value"}}, "ItemSelector"),
    ],
)
def test_what_is_not_emulated_is_refused_with_the_reason_and_nothing_is_created(
    sfn: Any, batcher: dict[str, Any], extra: dict[str, Any], reason: str
) -> None:
    with pytest.raises(ClientError, match=reason):
        sfn.create_state_machine(
            name="refused", definition=json.dumps(batched_map(batcher, **extra)), roleArn=ROLE
        )
    assert sfn.list_state_machines()["stateMachines"] == []


def test_batches_are_consecutive_and_keep_every_item() -> None:
    items = list(range(10))
    got = sfn_item_batcher.batches(items, {"size": 4, "batch_input": None})
    assert [b["Items"] for b in got] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert sfn_item_batcher.batches([], {"size": 4, "batch_input": None}) == []
