"""POST /run and POST /datasets: identity only from verified claims; own function, own prefix."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, unquote, urlparse

import boto3
import datasets
import pytest
import run_code
from botocore.config import Config
from botocore.exceptions import ClientError
from fleet import naming
from moto import mock_aws

from tests.unit.control_plane_helpers import create_registry_table, sample_event

STAGE = "dev"
TABLE = "registry"
BUCKET = "fleet-data"


class RecordingLambda:
    """The Lambda Invoke boundary: records what was invoked, answers like the sandbox runtime.

    moto cannot run an image function without Docker; the integration tests invoke real ones.
    """

    def __init__(self, error: str | None = None, function_error: bool = False) -> None:
        self.calls: list[dict[str, Any]] = []
        self.error, self.function_error = error, function_error

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.calls.append(kwargs)
        if self.error:
            raise ClientError({"Error": {"Code": self.error, "Message": "x"}}, "Invoke")
        payload = json.loads(kwargs["Payload"])
        answer = {"status": "ok", "stdout": "", "echo": payload}
        result: dict[str, Any] = {
            "StatusCode": 200,
            "Payload": io.BytesIO(json.dumps(answer).encode()),
        }
        if self.function_error:
            result["FunctionError"] = "Unhandled"
        return result


@pytest.fixture
def dynamodb() -> Iterator[Any]:
    with mock_aws():
        client = boto3.client("dynamodb")
        create_registry_table(client, TABLE)
        yield client


def register(dynamodb: Any, uid: str, status: str, digest: str | None = None) -> None:
    digest = digest or naming.user_digest(uid)
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "pk": {"S": f"USER#{uid}"},
            "uid": {"S": uid},
            "user_digest": {"S": digest},
            "status": {"S": status},
            "attempts": {"N": "1"},
            "canary": {"BOOL": False},
        },
    )


def api_event(route: str, uid: str | None, body: Any) -> dict[str, Any]:
    event = sample_event("run_code.json")
    event["routeKey"] = event["requestContext"]["routeKey"] = route
    if uid is None:
        del event["requestContext"]["authorizer"]
    else:
        event["requestContext"]["authorizer"]["jwt"]["claims"]["sub"] = uid
    event["body"] = body if isinstance(body, str) else json.dumps(body)
    return event


def run(dynamodb: Any, fake: RecordingLambda, uid: str | None, body: Any) -> tuple[int, dict, dict]:
    deps = run_code.Dependencies(dynamodb, fake, TABLE, STAGE)
    result = run_code.handle(api_event("POST /run", uid, body), deps)
    return result["statusCode"], json.loads(result["body"]), result["headers"]


GOOD = {"code": "result = df.describe()", "dataset": "sales.csv"}


def test_ready_user_runs_in_their_own_function_with_capped_limits(dynamodb: Any) -> None:
    register(dynamodb, "alice", "READY")
    fake = RecordingLambda()
    body = GOOD | {"timeout_s": 600, "max_output_bytes": 10**9}

    status, envelope, _ = run(dynamodb, fake, "alice", body)

    assert status == 200
    [call] = fake.calls
    assert call["FunctionName"] == f"sbx-dev-{naming.user_digest('alice')}"
    assert envelope["echo"]["code"] == GOOD["code"]
    assert envelope["echo"]["dataset"] == "sales.csv"
    assert envelope["echo"]["timeout_s"] == run_code.LIMIT_CAPS["timeout_s"]
    assert envelope["echo"]["max_output_bytes"] == run_code.LIMIT_CAPS["max_output_bytes"]


class CountingDynamoDB:
    """The moto client, recording each DynamoDB operation RunCode makes."""

    def __init__(self, client: Any) -> None:
        self.client, self.operations = client, []

    def __getattr__(self, name: str) -> Any:
        self.operations.append(name)
        return getattr(self.client, name)


def test_a_run_reads_the_user_and_their_leases_in_one_call(dynamodb: Any) -> None:
    register(dynamodb, "alice", "READY")
    counting = CountingDynamoDB(dynamodb)

    status, _, _ = run(counting, RecordingLambda(), "alice", GOOD)

    assert status == 200
    # One read (user + leases), the lease taken, the lease given back.
    assert counting.operations == ["batch_get_item", "put_item", "update_item"]


def test_unprocessed_registry_keys_are_read_again_then_answered_503(dynamodb: Any) -> None:
    register(dynamodb, "alice", "READY")

    class Unprocessed(CountingDynamoDB):
        def batch_get_item(self, **kwargs: Any) -> dict[str, Any]:
            self.operations.append("batch_get_item")
            return {"Responses": {}, "UnprocessedKeys": kwargs["RequestItems"]}

    stubborn = Unprocessed(dynamodb)
    fake = RecordingLambda()
    status, body, headers = run(stubborn, fake, "alice", GOOD)

    assert (status, headers.get("retry-after")) == (503, "1")
    assert "registry is busy" in body["message"]
    assert stubborn.operations.count("batch_get_item") > 1 and fake.calls == []


def test_smaller_limits_than_the_caps_are_kept(dynamodb: Any) -> None:
    register(dynamodb, "alice", "READY")
    fake = RecordingLambda()
    run(dynamodb, fake, "alice", GOOD | {"timeout_s": 3, "max_output_bytes": 100})
    sent = json.loads(fake.calls[0]["Payload"])
    assert (sent["timeout_s"], sent["max_output_bytes"]) == (3, 100)


def test_Alice_never_reaches_alices_function(dynamodb: Any) -> None:
    register(dynamodb, "alice", "READY")
    register(dynamodb, "Alice", "READY")
    fake = RecordingLambda()
    run(dynamodb, fake, "Alice", GOOD)
    assert fake.calls[0]["FunctionName"] == f"sbx-dev-{naming.user_digest('Alice')}"
    assert fake.calls[0]["FunctionName"] != f"sbx-dev-{naming.user_digest('alice')}"


def test_the_body_cannot_choose_the_user_or_function(dynamodb: Any) -> None:
    register(dynamodb, "alice", "READY")
    fake = RecordingLambda()
    status, _, _ = run(dynamodb, fake, "alice", GOOD | {"uid": "bob"})
    assert status == 422
    status, _, _ = run(dynamodb, fake, "alice", GOOD | {"function": "sbx-dev-bob"})
    assert status == 422
    assert fake.calls == []


def test_a_registry_entry_with_someone_elses_digest_is_not_followed(dynamodb: Any) -> None:
    register(dynamodb, "alice", "READY", digest=naming.user_digest("bob"))
    fake = RecordingLambda()
    assert run(dynamodb, fake, "alice", GOOD)[0] == 500
    assert fake.calls == []


def test_unknown_user_gets_404(dynamodb: Any) -> None:
    fake = RecordingLambda()
    assert run(dynamodb, fake, "nobody", GOOD)[0] == 404
    assert fake.calls == []


@pytest.mark.parametrize("status", ["FAILED", "DELETING", "DELETED"])
def test_users_without_a_working_sandbox_get_404(dynamodb: Any, status: str) -> None:
    register(dynamodb, "alice", status)
    assert run(dynamodb, RecordingLambda(), "alice", GOOD)[0] == 404


def test_provisioning_user_gets_409_with_retry_after(dynamodb: Any) -> None:
    register(dynamodb, "alice", "PROVISIONING")
    status, _, headers = run(dynamodb, RecordingLambda(), "alice", GOOD)
    assert status == 409
    assert int(headers["retry-after"]) > 0


def test_body_over_the_limit_gets_413(dynamodb: Any) -> None:
    register(dynamodb, "alice", "READY")
    fake = RecordingLambda()
    body = {"code": "x" * (run_code.MAX_BODY_BYTES + 1), "dataset": "a.csv"}
    assert run(dynamodb, fake, "alice", body)[0] == 413
    assert fake.calls == []


@pytest.mark.parametrize(
    "body,status",
    [
        ("{oops", 400),
        ("[]", 400),
        ({"dataset": "a.csv"}, 422),
        ({"code": "1", "dataset": "../bob/a.csv"}, 422),
        ({"code": "1", "dataset": "/etc/passwd.csv"}, 422),
        ({"code": "1", "dataset": "a.exe"}, 422),
        ({"code": "1", "timeout_s": -1}, 422),
        ({"code": "1", "datasets": [f"d{i}.csv" for i in range(9)]}, 422),
    ],
)
def test_bad_requests_are_refused_before_invoking(dynamodb: Any, body: Any, status: int) -> None:
    register(dynamodb, "alice", "READY")
    fake = RecordingLambda()
    assert run(dynamodb, fake, "alice", body)[0] == status
    assert fake.calls == []


def test_missing_verified_identity_gets_401(dynamodb: Any) -> None:
    assert run(dynamodb, RecordingLambda(), None, GOOD)[0] == 401


def test_throttled_invoke_gets_429_and_sandbox_crash_gets_502(dynamodb: Any) -> None:
    register(dynamodb, "alice", "READY")
    status, _, headers = run(
        dynamodb, RecordingLambda(error="TooManyRequestsException"), "alice", GOOD
    )
    assert status == 429 and headers["retry-after"]
    assert run(dynamodb, RecordingLambda(function_error=True), "alice", GOOD)[0] == 502


# ------------------------------------------------------------------ POST /datasets
@pytest.fixture
def s3_deps(dynamodb: Any) -> datasets.Dependencies:
    s3 = boto3.client("s3", config=Config(signature_version="s3v4"))
    s3.create_bucket(Bucket=BUCKET)
    return datasets.Dependencies(dynamodb, s3, TABLE, BUCKET)


def upload_url(deps: datasets.Dependencies, uid: str | None, body: Any) -> tuple[int, dict]:
    result = datasets.handle(api_event("POST /datasets", uid, body), deps)
    return result["statusCode"], json.loads(result["body"])


def test_presigned_put_is_for_the_callers_prefix_type_and_size(s3_deps: Any) -> None:
    register(s3_deps.dynamodb, "alice", "READY")
    status, body = upload_url(
        s3_deps, "alice", {"name": "q1/sales.csv", "size": 1234, "content_type": "text/csv"}
    )
    assert status == 200
    url = urlparse(body["url"])
    assert unquote(url.path).endswith(f"/users/{naming.user_digest('alice')}/q1/sales.csv")
    query = parse_qs(url.query)
    assert int(query["X-Amz-Expires"][0]) == datasets.URL_EXPIRES_SECONDS
    assert set(query["X-Amz-SignedHeaders"][0].split(";")) >= {"content-length", "content-type"}
    assert body["headers"] == {"content-type": "text/csv", "content-length": "1234"}


def test_provisioning_users_may_upload_already(s3_deps: Any) -> None:
    register(s3_deps.dynamodb, "alice", "PROVISIONING")
    assert upload_url(s3_deps, "alice", {"name": "a.csv", "size": 1})[0] == 200


@pytest.mark.parametrize(
    "body,status",
    [
        ({"name": "../bob/a.csv", "size": 1}, 422),
        ({"name": "a//b.csv", "size": 1}, 422),
        ({"name": "a.csv", "size": 0}, 422),
        ({"name": "a.csv", "size": 1, "key": "users/other/a.csv"}, 422),
        ({"name": "a.csv", "size": datasets.MAX_DATASET_BYTES + 1}, 413),
    ],
)
def test_bad_upload_requests_are_refused(s3_deps: Any, body: Any, status: int) -> None:
    register(s3_deps.dynamodb, "alice", "READY")
    assert upload_url(s3_deps, "alice", body)[0] == status


def test_unregistered_or_deleting_users_get_no_upload_url(s3_deps: Any) -> None:
    assert upload_url(s3_deps, "nobody", {"name": "a.csv", "size": 1})[0] == 404
    register(s3_deps.dynamodb, "alice", "DELETING")
    assert upload_url(s3_deps, "alice", {"name": "a.csv", "size": 1})[0] == 404
    assert upload_url(s3_deps, None, {"name": "a.csv", "size": 1})[0] == 401
