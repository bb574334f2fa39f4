"""Functions really run: own process, own environment, own role's credentials (lambda_exec).

Without the fix moto tries Docker (absent here) and image functions fail outright; these tests
check what a Lambda user would notice: where the code runs, as whom, what IAM lets it do, how
errors and timeouts come back, and that environments stay warm and are recycled.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from tests.integration.localcloud_support import make_role, unique, wait_for

pytestmark = pytest.mark.integration

PROBE = "tests.integration.lambda_probe.handler"
ROOT = Path(__file__).resolve().parents[2]


def push_image(cloud: Any, tag: str) -> str:
    """Push a manifest to a fresh repository; return the image URI by digest."""
    ecr = cloud.client("ecr")
    repository = ecr.create_repository(repositoryName=unique("lc-repo"))["repository"]
    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
            "config": {
                "mediaType": "application/vnd.docker.container.image.v1+json",
                "size": 1024,
                "digest": "sha256:" + hashlib.sha256(tag.encode()).hexdigest(),
            },
            "layers": [],
        }
    )
    image = ecr.put_image(
        repositoryName=repository["repositoryName"], imageManifest=manifest, imageTag=tag
    )["image"]
    return f"{repository['repositoryUri']}@{image['imageId']['imageDigest']}"


@pytest.fixture(scope="module")
def data_bucket(local_cloud: Any) -> str:
    name = unique("lc-data")
    s3 = local_cloud.client("s3")
    s3.create_bucket(Bucket=name)
    for user in ("alice", "bob"):
        s3.put_object(Bucket=name, Key=f"users/{user}/data.csv", Body=b"a,b\n1,2\n")
    return name


@pytest.fixture(scope="module")
def probe_function(local_cloud: Any, data_bucket: str) -> Callable[..., str]:
    """Create user-sandbox-like image functions running the probe; returns the factory."""

    def create(timeout: int = 30, environment: dict[str, str] | None = None) -> str:
        role = make_role(
            local_cloud,
            [
                {
                    "Effect": "Allow",
                    "Action": ["s3:GetObject", "s3:PutObject"],
                    "Resource": f"arn:aws:s3:::{data_bucket}/users/alice/*",
                }
            ],
        )
        name = unique("sbx-probe")
        local_cloud.client("lambda").create_function(
            FunctionName=name,
            PackageType="Image",
            Code={"ImageUri": push_image(local_cloud, name)},
            ImageConfig={"Command": [PROBE]},
            Role=role,
            Timeout=timeout,
            Environment={"Variables": environment or {"GREETING": "hello"}},
        )
        return name

    return create


def invoke(cloud: Any, name: str, event: dict[str, Any]) -> tuple[str | None, Any]:
    response = cloud.client("lambda").invoke(FunctionName=name, Payload=json.dumps(event))
    return response.get("FunctionError"), json.loads(response["Payload"].read())


def test_image_function_runs_in_its_own_process_with_its_roles_credentials(
    local_cloud: Any, probe_function: Callable[..., str], data_bucket: str
) -> None:
    name = probe_function()
    role_name = (
        local_cloud.client("lambda")
        .get_function(FunctionName=name)["Configuration"]["Role"]
        .rsplit("/", 1)[-1]
    )
    error, result = invoke(
        local_cloud,
        name,
        {"bucket": data_bucket, "read": ["users/alice/data.csv", "users/bob/data.csv"]},
    )
    assert error is None, result
    assert result["pid"] != os.getpid()
    assert result["identity"].startswith(f"arn:aws:sts::123456789012:assumed-role/{role_name}/")
    assert result["access_key"] != local_cloud.admin_credentials[0]
    assert result["endpoint"] == local_cloud.endpoint
    assert result["region"] == local_cloud.region
    assert result["greeting"] == "hello"
    assert result["function"] == name
    assert 0 < result["remaining_ms"] <= 30_000
    # IAM enforcement applies inside the function: its own prefix only.
    assert result["reads"] == {
        "users/alice/data.csv": "allowed",
        "users/bob/data.csv": "AccessDenied",
    }


def test_handler_exception_is_reported_as_lambda_does(
    local_cloud: Any, probe_function: Callable[..., str]
) -> None:
    name = probe_function()
    error, payload = invoke(local_cloud, name, {"raise": "the data file is empty"})
    assert error == "Unhandled"
    assert payload["errorType"] == "ProbeFailure"
    assert payload["errorMessage"] == "the data file is empty"
    # The environment survives a handled-by-runtime exception and serves the next request.
    error, result = invoke(local_cloud, name, {})
    assert error is None and result["function"] == name


def test_timeout_kills_the_environment_and_the_next_request_gets_a_fresh_one(
    local_cloud: Any, probe_function: Callable[..., str]
) -> None:
    name = probe_function(timeout=3)
    _, first = invoke(local_cloud, name, {})
    error, payload = invoke(local_cloud, name, {"sleep": 30})
    assert error == "Unhandled"
    assert payload["errorType"] == "Sandbox.Timedout"
    assert "Task timed out after 3.00 seconds" in payload["errorMessage"]
    _, after = invoke(local_cloud, name, {})
    assert after["cold_start"] != first["cold_start"]  # own PID namespace: pids repeat


def test_environments_stay_warm_until_the_configuration_changes(
    local_cloud: Any, probe_function: Callable[..., str]
) -> None:
    name = probe_function()
    _, first = invoke(local_cloud, name, {})
    _, second = invoke(local_cloud, name, {})
    assert second["pid"] == first["pid"] and second["cold_start"] == first["cold_start"]
    local_cloud.client("lambda").update_function_configuration(
        FunctionName=name, Environment={"Variables": {"GREETING": "changed"}}
    )
    _, third = invoke(local_cloud, name, {})
    assert third["cold_start"] != first["cold_start"]
    assert third["greeting"] == "changed"


def test_logs_are_returned_and_stored_in_the_functions_log_group(
    local_cloud: Any, probe_function: Callable[..., str]
) -> None:
    name = probe_function()
    response = local_cloud.client("lambda").invoke(
        FunctionName=name, Payload=json.dumps({"raise": "boom"}), LogType="Tail"
    )
    tail = base64.b64decode(response["LogResult"]).decode()
    assert "START RequestId:" in tail and "REPORT RequestId:" in tail
    assert '"errorType": "ProbeFailure"' in tail
    logs = local_cloud.client("logs")
    streams = logs.describe_log_streams(logGroupName=f"/aws/lambda/{name}")["logStreams"]
    events = logs.get_log_events(
        logGroupName=f"/aws/lambda/{name}", logStreamName=streams[0]["logStreamName"]
    )["events"]
    assert any("END RequestId:" in e["message"] for e in events)


def test_asynchronous_invocation_is_accepted_then_runs(
    local_cloud: Any, probe_function: Callable[..., str], data_bucket: str
) -> None:
    name = probe_function()
    key = f"users/alice/{unique('async')}.txt"
    response = local_cloud.client("lambda").invoke(
        FunctionName=name,
        InvocationType="Event",
        Payload=json.dumps({"bucket": data_bucket, "write": key}),
    )
    assert response["StatusCode"] == 202
    s3 = local_cloud.client("s3")
    listed = wait_for(
        lambda: s3.list_objects_v2(Bucket=data_bucket, Prefix=key).get("Contents"),
        what="the asynchronous invocation's write",
    )
    assert listed[0]["Key"] == key


def test_function_whose_role_does_not_trust_lambda_cannot_run(
    local_cloud: Any, data_bucket: str
) -> None:
    role = make_role(local_cloud, [], service="states.amazonaws.com")
    name = unique("sbx-probe")
    local_cloud.client("lambda").create_function(
        FunctionName=name,
        PackageType="Image",
        Code={"ImageUri": push_image(local_cloud, name)},
        ImageConfig={"Command": [PROBE]},
        Role=role,
    )
    error, payload = invoke(local_cloud, name, {})
    assert error == "Unhandled"
    assert "cannot be assumed by lambda" in payload["errorMessage"]


def test_control_plane_function_runs_its_code_with_its_own_role(local_cloud: Any) -> None:
    """The deployed signup webhook runs functions/signup_webhook.py: it reads the webhook secret
    with its own role (IAM enforced) and rejects the sample event's stale signature."""
    name = local_cloud.outputs["SignupWebhookFunctionName"]
    event = json.loads((ROOT / "events" / "signup_webhook.json").read_text())
    error, payload = invoke(local_cloud, name, event)
    assert error is None, payload
    assert payload["statusCode"] == 401, payload


def test_image_function_reports_the_digest_it_runs(
    local_cloud: Any, probe_function: Callable[..., str]
) -> None:
    name = probe_function()
    code = local_cloud.client("lambda").get_function(FunctionName=name)
    image_uri = code["Code"]["ImageUri"]
    digest = image_uri.split("@sha256:")[1]
    assert code["Configuration"]["CodeSha256"] == digest
    assert code["Code"]["ResolvedImageUri"] == image_uri


def test_credentials_near_expiry_get_a_fresh_environment(
    local_cloud: Any, probe_function: Callable[..., str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandboxctl.localcloud.fixes import lambda_exec

    name = probe_function()
    _, first = invoke(local_cloud, name, {})
    # Pretend every credential is within the refresh margin of its expiry.
    monkeypatch.setattr(
        lambda_exec, "CREDENTIAL_MARGIN_SECONDS", lambda_exec.CREDENTIAL_SECONDS + 60
    )
    _, second = invoke(local_cloud, name, {})
    assert second["cold_start"] != first["cold_start"]
    assert second["access_key"] != first["access_key"]
    assert second["identity"].rsplit("/", 1)[0] == first["identity"].rsplit("/", 1)[0]


def test_reserved_concurrency_throttles_the_excess(
    local_cloud: Any, probe_function: Callable[..., str]
) -> None:
    from botocore.config import Config
    from botocore.exceptions import ClientError

    from sandboxctl.localcloud.fixes import lambda_exec

    lam = local_cloud.client("lambda", config=Config(retries={"total_max_attempts": 1}))
    stopped = probe_function()
    lam.put_function_concurrency(FunctionName=stopped, ReservedConcurrentExecutions=0)
    with pytest.raises(ClientError) as caught:
        lam.invoke(FunctionName=stopped, Payload=b"{}")
    assert caught.value.response["Error"]["Code"] == "TooManyRequestsException"
    assert caught.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429

    single = probe_function()
    lam.put_function_concurrency(FunctionName=single, ReservedConcurrentExecutions=1)
    with ThreadPoolExecutor(1) as pool:
        slow = pool.submit(invoke, local_cloud, single, {"sleep": 2})
        wait_for(lambda: lambda_exec._inflight.get(single) == 1, what="the first invocation")
        with pytest.raises(ClientError) as caught:
            lam.invoke(FunctionName=single, Payload=b"{}")
        assert caught.value.response["Error"]["Code"] == "TooManyRequestsException"
        assert slow.result()[0] is None
    assert lam.invoke(FunctionName=single, Payload=b"{}")["StatusCode"] == 200
