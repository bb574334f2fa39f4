"""EventBridge target delivery and ECR image events, observed through the local cloud's API."""

from __future__ import annotations

import hashlib
import io
import json
import zipfile

import pytest
from botocore.exceptions import ClientError

from sandboxctl.localcloud.fixes import events_targets
from tests.integration.fidelity_support import (
    cloud,
    create_machine,
    finished,
    make_role,
    queue,
    receive,
)
from tests.integration.localcloud_support import unique, wait_for

pytestmark = pytest.mark.integration
__all__ = ["cloud"]

EVENTS = "events.amazonaws.com"
STATES = "states.amazonaws.com"
PASS = {"StartAt": "Done", "States": {"Done": {"Type": "Pass", "End": True}}}


def _rule(cloud, pattern: dict, targets: list[dict], bus: str = "default") -> str:
    events = cloud.client("events")
    name = unique("fid")
    arn: str = events.put_rule(Name=name, EventPattern=json.dumps(pattern), EventBusName=bus)[
        "RuleArn"
    ]
    events.put_targets(Rule=name, EventBusName=bus, Targets=targets)
    return arn


def _put(cloud, source: str, detail: dict, count: int = 1) -> None:
    entry = {"Source": source, "DetailType": "UserSignedUp", "Detail": json.dumps(detail)}
    response = cloud.client("events").put_events(Entries=[entry] * count)
    assert response["FailedEntryCount"] == 0


def test_rule_starts_state_machine_with_input_transformer(cloud) -> None:
    machine = create_machine(cloud, PASS, make_role(cloud, STATES, []))
    target_role = make_role(
        cloud, EVENTS, [{"Effect": "Allow", "Action": "states:StartExecution", "Resource": "*"}]
    )
    source = unique("app")
    rule_arn = _rule(
        cloud,
        {"source": [source]},
        [
            {
                "Id": "provision",
                "Arn": machine,
                "RoleArn": target_role,
                "InputTransformer": {
                    "InputPathsMap": {"uid": "$.detail.uid", "n": "$.detail.n"},
                    "InputTemplate": (
                        '{"uid": <uid>, "greeting": "hello <uid>", "n": <n>, '
                        '"rule": "<aws.events.rule-arn>"}'
                    ),
                },
            }
        ],
    )
    _put(cloud, source, {"uid": 'Al "x" ice', "n": 7}, count=2)

    sfn = cloud.client("stepfunctions")
    executions = wait_for(
        lambda: (
            (e := sfn.list_executions(stateMachineArn=machine)["executions"]) and len(e) == 2 and e
        ),
        what="two rule-started executions",
    )
    assert len({e["name"] for e in executions}) == 2
    for execution in executions:
        described = finished(cloud, execution["executionArn"])
        assert described["status"] == "SUCCEEDED"
        assert json.loads(described["input"]) == {
            "uid": 'Al "x" ice',
            "greeting": 'hello Al "x" ice',
            "n": 7,
            "rule": rule_arn,
        }


def test_target_role_without_permission_goes_to_the_dead_letter_queue(cloud) -> None:
    machine = create_machine(cloud, PASS, make_role(cloud, STATES, []))
    powerless = make_role(
        cloud, EVENTS, [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": "*"}]
    )
    dlq_url, dlq_arn = queue(cloud)
    source = unique("app")
    rule_arn = _rule(
        cloud,
        {"source": [source]},
        [
            {
                "Id": "provision",
                "Arn": machine,
                "RoleArn": powerless,
                "RetryPolicy": {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 60},
                "DeadLetterConfig": {"Arn": dlq_arn},
            }
        ],
    )
    _put(cloud, source, {"uid": "bob"})

    [message] = receive(cloud, dlq_url)
    attributes = {k: v["StringValue"] for k, v in message["MessageAttributes"].items()}
    assert attributes["ERROR_CODE"] == "NO_PERMISSIONS"
    assert "states:StartExecution" in attributes["ERROR_MESSAGE"]
    assert attributes["RULE_ARN"] == rule_arn
    assert attributes["TARGET_ARN"] == machine
    assert json.loads(message["Body"])["detail"] == {"uid": "bob"}
    sfn = cloud.client("stepfunctions")
    assert sfn.list_executions(stateMachineArn=machine)["executions"] == []


def test_sqs_targets_honour_input_and_input_path_and_event_shape(cloud) -> None:
    whole_url, whole_arn = queue(cloud)
    path_url, path_arn = queue(cloud)
    const_url, const_arn = queue(cloud)
    source = unique("app")
    _rule(
        cloud,
        {"source": [source], "detail": {"plan": ["pro"]}},
        [
            {"Id": "whole", "Arn": whole_arn},
            {"Id": "path", "Arn": path_arn, "InputPath": "$.detail.user"},
            {"Id": "const", "Arn": const_arn, "Input": '{"fixed": true}'},
        ],
    )
    _put(cloud, source, {"plan": "free", "user": {"id": "skip"}})  # does not match
    _put(cloud, source, {"plan": "pro", "user": {"id": "u1"}})

    [whole] = receive(cloud, whole_url)
    event = json.loads(whole["Body"])
    assert list(event) == [
        "version",
        "id",
        "detail-type",
        "source",
        "account",
        "time",
        "region",
        "resources",
        "detail",
    ]
    assert event["version"] == "0"
    assert event["time"].endswith("Z") and "T" in event["time"]
    assert event["detail"] == {"plan": "pro", "user": {"id": "u1"}}
    assert json.loads(receive(cloud, path_url)[0]["Body"]) == {"id": "u1"}
    assert json.loads(receive(cloud, const_url)[0]["Body"]) == {"fixed": True}


def test_disabled_rule_delivers_nothing(cloud) -> None:
    on_url, on_arn = queue(cloud)
    off_url, off_arn = queue(cloud)
    source = unique("app")
    _rule(cloud, {"source": [source]}, [{"Id": "on", "Arn": on_arn}])
    events = cloud.client("events")
    off_name = unique("off")
    events.put_rule(Name=off_name, EventPattern=json.dumps({"source": [source]}), State="DISABLED")
    events.put_targets(Rule=off_name, Targets=[{"Id": "off", "Arn": off_arn}])
    _put(cloud, source, {"x": 1})

    receive(cloud, on_url)
    wait_for(events_targets.deliveries_idle, what="deliveries to finish")
    sqs = cloud.client("sqs")
    assert "Messages" not in sqs.receive_message(QueueUrl=off_url, WaitTimeSeconds=0)


def _zip(source: str) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("handler.py", source)
    return buffer.getvalue()


FORWARDER = """
import json, os
import boto3

def handler(event, context):
    boto3.client("sqs").send_message(QueueUrl=os.environ["OUT"], MessageBody=json.dumps(event))
"""


def test_rule_invokes_lambda_allowed_by_its_resource_policy(cloud) -> None:
    out_url, out_arn = queue(cloud)
    role = make_role(
        cloud,
        "lambda.amazonaws.com",
        [{"Effect": "Allow", "Action": "sqs:SendMessage", "Resource": out_arn}],
    )
    lam = cloud.client("lambda")
    name = unique("fid")
    fn_arn = lam.create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role,
        Handler="handler.handler",
        Code={"ZipFile": _zip(FORWARDER)},
        Environment={"Variables": {"OUT": out_url}},
        Timeout=30,
    )["FunctionArn"]
    source = unique("app")
    rule_arn = _rule(
        cloud,
        {"source": [source]},
        [
            {
                "Id": "fn",
                "Arn": fn_arn,
                "InputTransformer": {
                    "InputPathsMap": {"uid": "$.detail.uid"},
                    "InputTemplate": '{"user": <uid>}',
                },
            }
        ],
    )
    lam.add_permission(
        FunctionName=name,
        StatementId="events",
        Action="lambda:InvokeFunction",
        Principal=EVENTS,
        SourceArn=rule_arn,
    )
    _put(cloud, source, {"uid": "carol"})

    [message] = receive(cloud, out_url)
    assert json.loads(message["Body"]) == {"user": "carol"}


def _manifest(tag: str) -> str:
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 7,
                "digest": "sha256:" + hashlib.sha256(tag.encode()).hexdigest(),
            },
            "layers": [],
        }
    )


def test_ecr_push_and_delete_emit_image_action_events(cloud) -> None:
    ecr = cloud.client("ecr")
    repository = unique("sandbox")
    ecr.create_repository(repositoryName=repository, imageTagMutability="IMMUTABLE")
    url, arn = queue(cloud)
    _rule(
        cloud,
        {
            "source": ["aws.ecr"],
            "detail-type": ["ECR Image Action"],
            "detail": {"repository-name": [repository]},
        },
        [{"Id": "capture", "Arn": arn}],
    )
    manifest = _manifest("v1")
    pushed = ecr.put_image(repositoryName=repository, imageManifest=manifest, imageTag="v1")
    digest = pushed["image"]["imageId"]["imageDigest"]
    assert digest == "sha256:" + hashlib.sha256(manifest.encode()).hexdigest()
    assert (
        digest
        != ecr.put_image(repositoryName=repository, imageManifest=_manifest("v2"), imageTag="v2")[
            "image"
        ]["imageId"]["imageDigest"]
    )
    with pytest.raises(ClientError):  # immutable tag: a failed push emits nothing
        ecr.put_image(repositoryName=repository, imageManifest=_manifest("v3"), imageTag="v1")
    ecr.batch_delete_image(repositoryName=repository, imageIds=[{"imageTag": "v1"}])

    bodies = [json.loads(m["Body"]) for m in receive(cloud, url, count=3)]
    wait_for(events_targets.deliveries_idle, what="deliveries to finish")
    bodies += [
        json.loads(m["Body"])
        for m in cloud.client("sqs")
        .receive_message(QueueUrl=url, MaxNumberOfMessages=10)
        .get("Messages", [])
    ]
    assert len(bodies) == 3
    push = next(
        b
        for b in bodies
        if b["detail"]["image-tag"] == "v1" and b["detail"]["action-type"] == "PUSH"
    )
    assert push["source"] == "aws.ecr"
    assert push["detail-type"] == "ECR Image Action"
    assert push["resources"] == []
    assert push["detail"] == {
        "result": "SUCCESS",
        "repository-name": repository,
        "image-digest": digest,
        "action-type": "PUSH",
        "image-tag": "v1",
    }
    deleted = [b["detail"] for b in bodies if b["detail"]["action-type"] == "DELETE"]
    assert deleted == [
        {
            "result": "SUCCESS",
            "repository-name": repository,
            "image-digest": digest,
            "action-type": "DELETE",
            "image-tag": "v1",
        }
    ]


def test_callers_cannot_publish_events_with_reserved_aws_sources(cloud) -> None:
    url, arn = queue(cloud)
    marker = unique("forged")
    _rule(
        cloud,
        {"source": ["aws.ecr", marker]},
        [{"Id": "capture", "Arn": arn}],
    )
    forged = {
        "Source": "aws.ecr",
        "DetailType": "ECR Image Action",
        "Detail": json.dumps({"result": "SUCCESS", "action-type": "PUSH", "image-tag": marker}),
    }
    honest = {"Source": marker, "DetailType": "Probe", "Detail": json.dumps({"n": 1})}
    response = cloud.client("events").put_events(Entries=[forged, honest])

    assert response["FailedEntryCount"] == 1
    assert response["Entries"][0]["ErrorCode"] == "NotAuthorizedForSourceException"
    assert "EventId" in response["Entries"][1]
    [message] = receive(cloud, url)
    assert json.loads(message["Body"])["source"] == marker
    wait_for(events_targets.deliveries_idle, what="deliveries to finish")
    assert "Messages" not in cloud.client("sqs").receive_message(QueueUrl=url, WaitTimeSeconds=0)
