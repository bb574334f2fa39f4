"""RolloutImage in the local cloud: the real template, ASL and functions, IAM enforced.

Each test creates its own users. A rollout moves every READY user of the module's cloud (the
earlier tests' users too), so the assertions are about this test's users (and, for a halt,
about everybody else too).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any, TypeVar

import pytest
from botocore.exceptions import ClientError
from fleet import naming
from fleet.models import iso_utc

from sandboxctl.localcloud import faults
from sandboxctl.localcloud.faults import FaultProfile
from sandboxctl.localcloud.server import LocalCloud
from tests.integration.localcloud_support import put_signups, registry_entry
from tests.integration.localcloud_support import wait_for_value as wait_for

pytestmark = pytest.mark.integration

T = TypeVar("T")
FINAL_ROLLOUT = {"COMPLETED", "HALTED", "SUPERSEDED"}


def manifest(label: str) -> str:
    """A new image manifest (so a new digest) unless the same label is pushed again."""
    seed = hashlib.sha256(label.encode()).hexdigest()
    return json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1469,
                "digest": f"sha256:{seed}",
            },
            "layers": [
                {
                    "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                    "size": 3_370_628,
                    "digest": f"sha256:{hashlib.sha256(seed.encode()).hexdigest()}",
                }
            ],
        }
    )


class Fleet:
    """What an operator sees of the deployed application, through admin clients."""

    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.out = cloud.outputs
        self.ddb = cloud.client("dynamodb")
        self.sfn = cloud.client("stepfunctions")
        self.cfn = cloud.client("cloudformation")
        self.lam = cloud.client("lambda")
        self.ecr = cloud.client("ecr")
        self.events = cloud.client("events")
        self.table = self.out["RegistryTableName"]
        self.repo = self.out["SandboxRepositoryName"]
        self.repo_uri = self.out["SandboxRepositoryUri"]
        self.stage = self.out.get("Stage", "local")

    # users -------------------------------------------------------------------------
    def sign_up(self, uids: list[str]) -> None:
        """UserSignedUp on the bus, exactly as the webhook emits it."""
        put_signups(self.events, self.out["EventBusName"], uids)

    def delete(self, uid: str) -> None:
        detail = {
            "uid": uid,
            "user_digest": naming.user_digest(uid),
            "event_id": str(uuid.uuid4()),
            "deleted_at": iso_utc(datetime.now(UTC)),
        }
        self.events.put_events(
            Entries=[
                {
                    "Source": "sandbox-fleet",
                    "DetailType": "UserDeleted",
                    "EventBusName": self.out["EventBusName"],
                    "Detail": json.dumps(detail),
                }
            ]
        )

    def user(self, uid: str) -> dict[str, Any] | None:
        return registry_entry(self.ddb, self.table, f"USER#{uid}")

    def record(self, uid: str) -> dict[str, Any]:
        user = self.user(uid)
        assert user is not None, f"{uid} has no registry entry"
        return user

    def wait_status(self, uids: list[str], statuses: set[str], timeout: float) -> None:
        def all_there() -> bool | None:
            users = [self.user(uid) for uid in uids]
            return True if all(u and u["status"] in statuses for u in users) else None

        wait_for(all_there, timeout, f"{len(uids)} users to reach {statuses}")

    def flag_canary(self, uid: str) -> None:
        self.ddb.update_item(
            TableName=self.table,
            Key={"pk": {"S": f"USER#{uid}"}},
            UpdateExpression="SET canary = :yes",
            ExpressionAttributeValues={":yes": {"BOOL": True}},
        )

    def names(self, uid: str) -> str:
        return naming.resource_name(self.stage, naming.user_digest(uid))

    def stack_image(self, uid: str) -> str | None:
        stack = self.cfn.describe_stacks(StackName=self.names(uid))["Stacks"][0]
        return next(
            (p["ParameterValue"] for p in stack["Parameters"] if p["ParameterKey"] == "ImageUri"),
            None,
        )

    def function_digest(self, uid: str) -> str:
        code = self.lam.get_function(FunctionName=self.names(uid))["Code"]
        return str(code["ResolvedImageUri"]).rsplit("@", 1)[-1]

    # images and rollouts -------------------------------------------------------------
    def push(self, label: str, tag: str | None = None, repo: str | None = None) -> str:
        response = self.ecr.put_image(
            repositoryName=repo or self.repo,
            imageManifest=manifest(label),
            imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json",
            imageTag=tag or f"{label}-{secrets.token_hex(3)}",
        )
        return str(response["image"]["imageId"]["imageDigest"])

    def image_uri(self, digest: str) -> str:
        return f"{self.repo_uri}@{digest}"

    @property
    def live_uri(self) -> str:
        """What every user stack's ImageUri says, before and after any rollout."""
        return f"{self.repo_uri}:live"

    def live_digest(self) -> str | None:
        images = self.ecr.batch_get_image(
            repositoryName=self.repo, imageIds=[{"imageTag": "live"}]
        )["images"]
        return str(images[0]["imageId"]["imageDigest"]) if images else None

    def rollout(self, digest: str) -> dict[str, Any] | None:
        item = self.ddb.get_item(
            TableName=self.table,
            Key={"pk": {"S": f"ROLLOUT#{digest.removeprefix('sha256:')}"}},
            ConsistentRead=True,
        ).get("Item")
        return item

    def wait_rollout(self, digest: str, timeout: float) -> dict[str, Any]:
        def final() -> dict[str, Any] | None:
            item = self.rollout(digest)
            return item if item and item["status"]["S"] in FINAL_ROLLOUT else None

        return wait_for(final, timeout, f"rollout of {digest}")

    def desired(self) -> dict[str, Any]:
        return self.ddb.get_item(
            TableName=self.table, Key={"pk": {"S": "CONFIG#image"}}, ConsistentRead=True
        )["Item"]

    def executions(self) -> list[dict[str, Any]]:
        arn = self.out["RolloutImageStateMachineArn"]
        pages = self.sfn.get_paginator("list_executions").paginate(stateMachineArn=arn)
        return [e for page in pages for e in page["executions"]]

    def execution_input(self, execution_arn: str) -> dict[str, Any]:
        return json.loads(self.sfn.describe_execution(executionArn=execution_arn)["input"])

    def wait_executions_done(self, timeout: float) -> list[dict[str, Any]]:
        def done() -> list[dict[str, Any]] | None:
            executions = self.executions()
            return executions if all(e["status"] != "RUNNING" for e in executions) else None

        return wait_for(done, timeout, "rollout executions to finish")


def make_fleet(local_cloud: LocalCloud) -> Fleet:
    """The fleet view, with a first image pushed if none is desired yet."""
    fleet = Fleet(local_cloud)
    # A first image, so provisioning has a desired digest (ProvisionUser reads CONFIG#image).
    if "Item" not in fleet.ddb.get_item(TableName=fleet.table, Key={"pk": {"S": "CONFIG#image"}}):
        digest = fleet.push(f"base-{uuid.uuid4()}")
        fleet.wait_rollout(digest, 120)
    return fleet


@pytest.fixture(scope="module")
def fleet(local_cloud: LocalCloud) -> Fleet:
    return make_fleet(local_cloud)


@pytest.fixture
def rollout_events(fleet: Fleet) -> Iterator[Callable[[str], list[dict[str, Any]]]]:
    """An SQS queue subscribed to Rollout* events on the bus: what operators' alerting sees."""
    sqs = fleet.cloud.client("sqs")
    name = f"rollout-events-{secrets.token_hex(4)}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    fleet.events.put_rule(
        Name=name,
        EventBusName=fleet.out["EventBusName"],
        EventPattern=json.dumps(
            {"source": ["sandbox-fleet"], "detail-type": [{"prefix": "Rollout"}]}
        ),
    )
    fleet.events.put_targets(
        Rule=name, EventBusName=fleet.out["EventBusName"], Targets=[{"Id": "q", "Arn": arn}]
    )
    seen: list[dict[str, Any]] = []

    def received(detail_type: str) -> list[dict[str, Any]]:
        for message in sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get(
            "Messages", []
        ):
            seen.append(json.loads(message["Body"]))
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        return [e for e in seen if e["detail-type"] == detail_type]

    yield received
    fleet.events.remove_targets(Rule=name, EventBusName=fleet.out["EventBusName"], Ids=["q"])
    fleet.events.delete_rule(Name=name, EventBusName=fleet.out["EventBusName"])
    sqs.delete_queue(QueueUrl=url)


def new_uids(prefix: str, count: int) -> list[str]:
    run = secrets.token_hex(3)
    return [f"{prefix}-{run}-{i}" for i in range(count)]


# ---------------------------------------------------------------------- trigger
@pytest.mark.timeout(600)
def test_other_repository_delete_and_failure_events_start_no_rollout(fleet: Fleet) -> None:
    from moto.ecr.models import ecr_backends

    from sandboxctl.localcloud.fixes import ecr_push_event

    other = f"not-the-sandbox-{secrets.token_hex(3)}"
    fleet.ecr.create_repository(repositoryName=other)
    fleet.push(f"elsewhere-{uuid.uuid4()}", repo=other)
    doomed = fleet.push(f"doomed-{uuid.uuid4()}", tag="doomed-" + secrets.token_hex(3))
    fleet.wait_rollout(doomed, 240)  # its own PUSH does start a rollout
    before = {e["executionArn"] for e in fleet.executions()}
    fleet.ecr.batch_delete_image(repositoryName=fleet.repo, imageIds=[{"imageDigest": doomed}])
    backend = ecr_backends[fleet.cloud.account_id][fleet.cloud.region]
    failed_digest = "sha256:" + secrets.token_hex(32)
    ecr_push_event._emit(
        backend,
        ecr_push_event.image_action_detail("PUSH", fleet.repo, failed_digest, "broken")
        | {"result": "FAILURE"},
    )
    # A real push after them: once its rollout exists, the three events before it were handled.
    sentinel = fleet.push(f"sentinel-{uuid.uuid4()}")
    fleet.wait_rollout(sentinel, 240)
    started = [e for e in fleet.executions() if e["executionArn"] not in before]
    digests = [fleet.execution_input(e["executionArn"])["detail"]["image-digest"] for e in started]
    assert digests == [sentinel]
    assert fleet.rollout(failed_digest) is None


def test_a_malformed_on_demand_request_is_rejected_and_writes_nothing(fleet: Fleet) -> None:
    desired = fleet.desired()
    bogus = "sha256:" + "0" * 63 + "g"
    execution = fleet.sfn.start_execution(
        stateMachineArn=fleet.out["RolloutImageStateMachineArn"],
        input=json.dumps(
            {
                "detail": {
                    "action-type": "PUSH",
                    "result": "SUCCESS",
                    "repository-name": fleet.repo,
                    "image-digest": bogus,
                }
            }
        ),
    )["executionArn"]

    def finished() -> dict[str, Any] | None:
        described = fleet.sfn.describe_execution(executionArn=execution)
        return described if described["status"] != "RUNNING" else None

    described = wait_for(finished, 60, "the rejected execution")
    assert described["status"] == "FAILED"
    assert described["error"] == "RolloutRequestInvalid"
    assert fleet.desired() == desired
    assert fleet.rollout(bogus) is None


@pytest.mark.timeout(600)
def test_the_same_digest_pushed_twice_rolls_out_once(fleet: Fleet) -> None:
    label = f"twice-{uuid.uuid4()}"
    digest = fleet.push(label, tag="first-" + secrets.token_hex(3))
    first = fleet.wait_rollout(digest, 180)
    assert first["status"]["S"] == "COMPLETED"
    again = fleet.push(label, tag="second-" + secrets.token_hex(3))
    assert again == digest

    def both_runs() -> list[dict[str, Any]] | None:
        runs = [
            e
            for e in fleet.executions()
            if fleet.execution_input(e["executionArn"])["detail"]["image-digest"] == digest
        ]
        return runs if len(runs) == 2 and all(r["status"] != "RUNNING" for r in runs) else None

    runs = wait_for(both_runs, 120, "the second push's execution to finish")
    outputs = sorted(
        json.loads(fleet.sfn.describe_execution(executionArn=r["executionArn"])["output"])["status"]
        for r in runs
    )
    assert outputs == ["COMPLETED", "DUPLICATE"]
    only = fleet.rollout(digest)
    assert only is not None and only["execution_arn"]["S"] == first["execution_arn"]["S"]


# ---------------------------------------------------------------------- the live tag
@pytest.mark.timeout(600)
def test_a_push_of_the_live_tag_starts_nothing_and_moves_no_function(fleet: Fleet) -> None:
    uid = new_uids("tagged", 1)[0]
    fleet.sign_up([uid])
    fleet.wait_status([uid], {"READY"}, 300)
    running = fleet.live_digest()
    assert running is not None and fleet.function_digest(uid) == running
    before = {e["executionArn"] for e in fleet.executions()}
    # Someone (not a rollout) pushes an image straight onto the live tag.
    stray = fleet.push(f"stray-{uuid.uuid4()}", tag="live")
    assert fleet.live_digest() == stray
    sentinel = fleet.push(f"after-stray-{uuid.uuid4()}")
    fleet.wait_rollout(sentinel, 300)
    started = [e for e in fleet.executions() if e["executionArn"] not in before]
    digests = [fleet.execution_input(e["executionArn"])["detail"]["image-digest"] for e in started]
    assert digests == [sentinel], "the live tag's own push started a rollout"
    assert fleet.rollout(stray) is None
    assert fleet.function_digest(uid) == sentinel
    assert fleet.stack_image(uid) == fleet.live_uri
    # Build tags stay immutable: only `live` is excluded.
    record = fleet.rollout(sentinel)
    assert record is not None
    with pytest.raises(ClientError, match="ImageTagAlreadyExists"):
        fleet.push(f"retag-{uuid.uuid4()}", tag=record["image_tag"]["S"])


@pytest.mark.timeout(900)
def test_two_pushes_in_quick_succession_the_newer_wins(
    fleet: Fleet, cloud_with_faults: Callable[..., LocalCloud]
) -> None:
    uids = new_uids("quick", 6)
    fleet.sign_up(uids)
    fleet.wait_status(uids, {"READY"}, 300)
    cloud_with_faults("slow", seed=11)
    try:
        older = fleet.push(f"older-{uuid.uuid4()}")
        newer = fleet.push(f"newer-{uuid.uuid4()}")
        final_newer = fleet.wait_rollout(newer, 600)
        final_older = fleet.wait_rollout(older, 600)
        fleet.wait_executions_done(600)
    finally:
        cloud_with_faults(None)
    assert final_newer["status"]["S"] == "COMPLETED", final_newer.get("halt_reasons")
    assert int(final_newer["failed"]["N"]) == 0, final_newer.get("failures")
    assert final_older["status"]["S"] in {"SUPERSEDED", "COMPLETED"}
    assert int(final_older.get("failed", {"N": "0"})["N"]) == 0, final_older.get("failures")
    assert fleet.desired()["image_digest"]["S"] == newer
    assert fleet.live_digest() == newer
    for uid in uids:
        assert fleet.function_digest(uid) == newer
        assert fleet.record(uid)["image_digest"] == newer


# ---------------------------------------------------------------------- the fleet moves
class _FirstUpdateFails(FaultProfile):
    """The `flaky` profile, but only each matching stack's first update fails."""

    def fails(self, operation: str, stack_name: str, attempt: int) -> bool:
        return operation == "update" and attempt == 1


@pytest.mark.timeout(900)
def test_a_failing_canary_halts_restores_the_canary_and_touches_nobody_else(
    fleet: Fleet,
    cloud_with_faults: Callable[..., LocalCloud],
    rollout_events: Callable[[str], list[dict[str, Any]]],
) -> None:
    canary, others = new_uids("canary", 2), new_uids("bystander", 3)
    fleet.sign_up(canary + others)
    fleet.wait_status(canary + others, {"READY"}, 300)
    for uid in canary:
        fleet.flag_canary(uid)
    before_desired = fleet.desired()
    previous = before_desired["image_digest"]["S"]
    everyone_before = {
        u["uid"]["S"]: u.get("image_digest", {}).get("S")
        for page in fleet.ddb.get_paginator("query").paginate(
            TableName=fleet.table,
            IndexName="ByStatus",
            KeyConditionExpression="#s = :r",
            ExpressionAttributeNames={"#s": "status"},
            ExpressionAttributeValues={":r": {"S": "READY"}},
        )
        for u in page["Items"]
        if u["pk"]["S"].startswith("USER#")
    }
    faults.install_faults(
        _FirstUpdateFails(names=frozenset({"flaky"}), stack_pattern=f"^{fleet.names(canary[0])}$")
    )
    try:
        digest = fleet.push(f"bad-canary-{uuid.uuid4()}")
        rollout = fleet.wait_rollout(digest, 300)
        fleet.wait_executions_done(300)
    finally:
        cloud_with_faults(None)
        for uid in canary:  # later tests' canary waves are their own
            fleet.ddb.update_item(
                TableName=fleet.table,
                Key={"pk": {"S": f"USER#{uid}"}},
                UpdateExpression="REMOVE canary",
            )

    assert rollout["status"]["S"] == "HALTED"
    reasons = [r["S"] for r in rollout["halt_reasons"]["L"]]
    assert any("canary: 1 of 2 users failed" in r for r in reasons), reasons
    assert fleet.desired()["image_digest"]["S"] == previous
    assert fleet.desired()["restored_from"]["S"] == digest
    assert fleet.live_digest() == previous, "the halt did not put the live tag back"
    for uid in canary:
        assert fleet.stack_image(uid) == fleet.live_uri
        assert fleet.function_digest(uid) == previous
        assert fleet.record(uid)["image_digest"] == previous
    for uid in others:
        assert fleet.stack_image(uid) == fleet.live_uri
        assert fleet.function_digest(uid) == previous
    for uid, image in everyone_before.items():
        user = fleet.user(uid)
        if user and user["status"] == "READY" and uid not in canary:
            assert user.get("image_digest") == image, f"{uid} was touched"
    halted = wait_for(lambda: rollout_events("RolloutHalted") or None, 60, "RolloutHalted")
    detail = halted[-1]["detail"]
    assert detail["image_digest"] == digest and detail["previous_digest"] == previous
    assert any("canary" in r for r in detail["reasons"])
    assert [f["uid"] for f in detail["failures"]] == [canary[0]]
    assert "injected" in detail["failures"][0]["reason"]


@pytest.mark.timeout(1200)
def test_users_deleted_or_signing_up_during_a_rollout_end_in_the_right_state(
    fleet: Fleet,
    cloud_with_faults: Callable[..., LocalCloud],
    rollout_events: Callable[[str], list[dict[str, Any]]],
) -> None:
    uids = new_uids("during", 12)
    fleet.sign_up(uids)
    fleet.wait_status(uids, {"READY"}, 300)
    leaving, newcomer = uids[-1], new_uids("newcomer", 1)[0]
    cloud_with_faults("slow", seed=3)
    try:
        digest = fleet.push(f"during-{uuid.uuid4()}")
        wait_for(
            lambda: fleet.live_digest() == digest or None,
            60,
            "the new digest to become desired and live",
        )
        fleet.delete(leaving)
        fleet.sign_up([newcomer])
        rollout = fleet.wait_rollout(digest, 600)
        fleet.wait_status([newcomer], {"READY", "FAILED"}, 300)
        fleet.wait_status([leaving], {"DELETED"}, 600)
    finally:
        cloud_with_faults(None)

    assert rollout["status"]["S"] == "COMPLETED"
    assert int(rollout["failed"]["N"]) == 0, rollout.get("failures")
    newcomer_record = fleet.record(newcomer)
    assert newcomer_record["status"] == "READY"
    assert newcomer_record["image_digest"] == digest
    assert fleet.function_digest(newcomer) == digest
    with pytest.raises(ClientError, match="does not exist"):
        fleet.cfn.describe_stacks(StackName=fleet.names(leaving))
    for uid in uids[:-1]:
        assert fleet.record(uid)["image_digest"] == digest
    completed = wait_for(
        lambda: (
            [e for e in rollout_events("RolloutCompleted") if e["detail"]["image_digest"] == digest]
            or None
        ),
        60,
        "RolloutCompleted",
    )
    counts = completed[0]["detail"]["counts"]
    assert counts["failed"] == 0
    assert counts["updated"] + counts["already_current"] + counts["skipped"] >= len(uids) - 1


# Last: every rollout after it would have to move these 200 users too.
@pytest.mark.timeout(1800)
def test_two_hundred_users_reach_the_new_digest_under_throttling_and_slow_stacks(
    fleet: Fleet, cloud_with_faults: Callable[..., LocalCloud]
) -> None:
    uids = new_uids("fleet", 200)
    fleet.sign_up(uids)
    fleet.wait_status(uids, {"READY"}, 600)
    cloud_with_faults("throttle,slow", seed=6)
    digest = fleet.push(f"fleet-{uuid.uuid4()}")
    rollout = fleet.wait_rollout(digest, 900)
    throttled, admitted = faults.throttled_counts(), faults.admitted_counts()
    cloud_with_faults(None)

    assert rollout["status"]["S"] == "COMPLETED", rollout.get("halt_reasons")
    assert int(rollout["failed"]["N"]) == 0, rollout.get("failures")
    # Every user's update went through the shared bucket, and the limiter kept it under quota.
    assert admitted.get("lambda_shared", 0) >= len(uids)
    assert throttled.get("lambda_shared", 0) == 0, throttled
    for uid in uids:
        user = fleet.user(uid)
        assert user is not None and user["status"] == "READY"
        assert user["image_digest"] == digest
        assert fleet.stack_image(uid) == fleet.live_uri
        assert fleet.function_digest(uid) == digest
