"""Builders shared by the control-plane unit tests (moto resources shaped like template.yaml)."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"


def sample_event(name: str) -> dict[str, Any]:
    return copy.deepcopy(json.loads((EVENTS / name).read_text()))


def http_event(
    body: str | bytes, headers: dict[str, str], route: str = "POST /hooks/firebase"
) -> dict[str, Any]:
    """An HTTP API (payload v2) event for `route` with `body` and lower-cased headers."""
    event = sample_event("signup_webhook.json")
    event["routeKey"] = event["requestContext"]["routeKey"] = route
    path = route.split(" ", 1)[1]
    event["rawPath"] = event["requestContext"]["http"]["path"] = path
    event["headers"] = {"content-type": "application/json"} | {
        k.lower(): v for k, v in headers.items()
    }
    if isinstance(body, bytes):
        import base64

        event["body"] = base64.b64encode(body).decode()
        event["isBase64Encoded"] = True
    else:
        event["body"] = body
        event["isBase64Encoded"] = False
    return event


def create_registry_table(dynamodb: Any, name: str = "registry") -> str:
    """The registry table exactly as template.yaml declares it (key pk, GSI ByStatus)."""
    dynamodb.create_table(
        TableName=name,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "status", "AttributeType": "S"},
        ],
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        GlobalSecondaryIndexes=[
            {
                "IndexName": "ByStatus",
                "KeySchema": [
                    {"AttributeName": "status", "KeyType": "HASH"},
                    {"AttributeName": "pk", "KeyType": "RANGE"},
                ],
                "Projection": {"ProjectionType": "ALL"},
            }
        ],
    )
    return name


def capture_bus(events: Any, sqs: Any, bus_name: str) -> str:
    """A rule sending everything on `bus_name` to a queue, so tests can see what was emitted."""
    events.create_event_bus(Name=bus_name)
    queue_url = sqs.create_queue(QueueName=f"{bus_name}-capture")["QueueUrl"]
    queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
        "Attributes"
    ]["QueueArn"]
    events.put_rule(
        Name="capture-all",
        EventBusName=bus_name,
        EventPattern=json.dumps({"source": [{"prefix": ""}]}),
    )
    events.put_targets(
        Rule="capture-all", EventBusName=bus_name, Targets=[{"Id": "q", "Arn": queue_arn}]
    )
    return queue_url


def drain(sqs: Any, queue_url: str) -> list[dict[str, Any]]:
    """Every event delivered to the capture queue so far."""
    out: list[dict[str, Any]] = []
    while True:
        messages = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10).get(
            "Messages", []
        )
        if not messages:
            return out
        for message in messages:
            out.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=message["ReceiptHandle"])
