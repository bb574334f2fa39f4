"""sandboxctl commands against moto (decorator mode): parsing, output, exit codes, error paths."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from fleet import naming, signing
from moto import mock_aws
from rich.console import Console

from sandboxctl import cli
from sandboxctl.controlplane import (
    REQUIRED_OUTPUTS,
    ControlPlane,
    Target,
    UsageError,
    resolve_target,
)

REGION = "us-east-1"
STACK = "sandbox-fleet-dev"
SECRET = "current-webhook-key"
PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 16


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@dataclass
class Cloud:
    outputs: dict[str, str]
    lambda_calls: list[dict[str, Any]]
    lambda_answers: list[Any]
    webhook_calls: list[dict[str, Any]] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return boto3.client(service, region_name=REGION)

    def put_user(self, uid: str, status: str = "READY", **attrs: Any) -> dict[str, Any]:
        digest = attrs.pop("user_digest", naming.user_digest(uid))
        item = {
            "pk": f"USER#{uid}",
            "uid": uid,
            "user_digest": digest,
            "status": status,
            "stack_name": f"sbx-dev-{digest}",
            "function_name": f"sbx-dev-{digest}",
            "image_digest": "sha256:" + "a" * 64,
            "created_at": attrs.pop("created_at", "2026-11-26T08:00:00Z"),
            **attrs,
        }
        ddb = boto3.resource("dynamodb", region_name=REGION)
        ddb.Table(self.outputs["RegistryTableName"]).put_item(Item=item)
        return item


class FakeLambda:
    """Stands in for the Lambda invoke API (moto needs Docker to run code): records the request
    and returns what the test queued, the way Lambda's Invoke response looks."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    def invoke(self, **kwargs: Any) -> dict[str, Any]:
        self.cloud.lambda_calls.append({**kwargs, "Payload": json.loads(kwargs["Payload"])})
        answer = self.cloud.lambda_answers.pop(0)
        if callable(answer):
            answer = answer(json.loads(kwargs["Payload"]))
        resp: dict[str, Any] = {
            "StatusCode": 200,
            "Payload": io.BytesIO(json.dumps(answer).encode()),
        }
        if isinstance(answer, dict) and "errorMessage" in answer:
            resp["FunctionError"] = "Unhandled"
        return resp


@dataclass
class FakeReply:
    status_code: int
    text: str

    def json(self) -> Any:
        return json.loads(self.text)


class FakeWebhookHttp:
    """Stands in for the HTTP API in front of the webhook function: records each POST and
    answers with the function's HTTP response the test queued (in `lambda_answers`)."""

    def __init__(self, cloud: Cloud) -> None:
        self.cloud = cloud

    def post(self, url: str, data: bytes, headers: dict[str, str], timeout: float) -> FakeReply:
        request = {
            "url": url,
            "headers": {k.lower(): v for k, v in headers.items()},
            "body": data.decode(),
            "timeout": timeout,
        }
        self.cloud.webhook_calls.append(request)
        answer = self.cloud.lambda_answers.pop(0)
        if callable(answer):
            answer = answer(request)
        return FakeReply(int(answer["statusCode"]), answer.get("body") or "")


@pytest.fixture
def cloud(monkeypatch: pytest.MonkeyPatch) -> Iterator[Cloud]:
    """A control-plane stack in moto with the documented outputs and real resources behind them."""
    monkeypatch.delenv("SANDBOXCTL_ENDPOINT", raising=False)
    monkeypatch.delenv("SANDBOXCTL_STACK", raising=False)
    with mock_aws():
        ddb = boto3.client("dynamodb", region_name=REGION)
        ddb.create_table(
            TableName="registry",
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[
                {"AttributeName": "pk", "AttributeType": "S"},
                {"AttributeName": "status", "AttributeType": "S"},
            ],
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
            BillingMode="PAY_PER_REQUEST",
        )
        boto3.client("s3", region_name=REGION).create_bucket(Bucket="data-bucket")
        repo = boto3.client("ecr", region_name=REGION).create_repository(
            repositoryName="sandbox", imageTagMutability="IMMUTABLE"
        )["repository"]
        secret = boto3.client("secretsmanager", region_name=REGION).create_secret(
            Name="webhook", SecretString=json.dumps({"current": SECRET, "previous": ""})
        )
        bus = boto3.client("events", region_name=REGION).create_event_bus(Name="bus")
        sfn = boto3.client("stepfunctions", region_name=REGION)
        role = "arn:aws:iam::123456789012:role/sfn"
        machines = {
            key: sfn.create_state_machine(
                name=key.removesuffix("StateMachineArn"),
                definition=json.dumps({"StartAt": "S", "States": {"S": {"Type": "Succeed"}}}),
                roleArn=role,
            )["stateMachineArn"]
            for key in (
                "ProvisionUserStateMachineArn",
                "DeprovisionUserStateMachineArn",
                "RolloutImageStateMachineArn",
                "ReconcileStateMachineArn",
            )
        }
        iam = boto3.client("iam", region_name=REGION)
        fn_role = iam.create_role(
            RoleName="fn",
            AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []}),
        )["Role"]["Arn"]
        lam = boto3.client("lambda", region_name=REGION)
        for name in ("signup-webhook", "run-code"):
            lam.create_function(
                FunctionName=name,
                Runtime="python3.12",
                Role=fn_role,
                Handler="h.h",
                Code={"ZipFile": b"PK\x05\x06" + b"\x00" * 18},
            )
        outputs = {
            "Stage": "dev",
            "EventBusName": "bus",
            "RegistryTableName": "registry",
            "DataBucketName": "data-bucket",
            "TemplatesBucketName": "data-bucket",
            "UserTemplateKey": "templates/user-sandbox.yaml",
            "SandboxRepositoryName": "sandbox",
            "SandboxRepositoryUri": repo["repositoryUri"],
            "SignupWebhookFunctionName": "signup-webhook",
            "RunCodeFunctionName": "run-code",
            "HttpApiUrl": "https://api.example.com",
            "WebhookSecretArn": secret["ARN"],
            **machines,
        }
        assert bus["EventBusArn"]
        create_stack(outputs)
        c = Cloud(outputs=outputs, lambda_calls=[], lambda_answers=[])
        yield c


def create_stack(outputs: dict[str, str], name: str = STACK) -> None:
    template = {
        "Resources": {"Topic": {"Type": "AWS::SNS::Topic"}},
        "Outputs": {k: {"Value": v} for k, v in outputs.items()},
    }
    boto3.client("cloudformation", region_name=REGION).create_stack(
        StackName=name, TemplateBody=json.dumps(template)
    )


def run_cli(*argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        list(argv),
        out=Console(file=out, width=200, color_system=None),
        err=Console(file=err, width=200, color_system=None),
    )
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture
def fake_lambda(cloud: Cloud, monkeypatch: pytest.MonkeyPatch) -> Cloud:
    """Route the CLI's Lambda calls to FakeLambda; every other service is moto."""

    def factory(target: Target) -> ControlPlane:
        def client(service: str) -> Any:
            return FakeLambda(cloud) if service == "lambda" else cloud.client(service)

        return ControlPlane(target, client_factory=client, http=FakeWebhookHttp(cloud))

    monkeypatch.setattr(cli, "ControlPlane", factory)
    return cloud


# ---------------------------------------------------------------------------- parsing
@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["frobnicate"],
        ["run", "alice", "--dataset", "d.csv"],
        ["run", "alice", "--dataset", "d.csv", "--code", "1", "--code-file", "x.py"],
        ["local", "up", "--port", "70000"],
        ["signup", "x" * 129],
        ["signup", "alice", "--timeout", "-1"],
        ["executions", "--limit", "0"],
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        cli.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("sandboxctl") and "error:" in err
    assert len(err.splitlines()) == 1


def test_connection_options_work_before_and_after_the_command() -> None:
    parser = cli.build_parser()
    before = parser.parse_args(["--stack", "s1", "--region", "eu-west-1", "users"])
    after = parser.parse_args(["users", "--stack", "s2", "--endpoint", "http://127.0.0.1:9"])
    assert (before.stack, before.region) == ("s1", "eu-west-1")
    assert (after.stack, after.endpoint) == ("s2", "http://127.0.0.1:9")


def test_resolve_target_reads_a_local_cloud_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOXCTL_STACK", raising=False)
    monkeypatch.setenv("SANDBOXCTL_ENDPOINT", "http://127.0.0.1:4599/")
    seen = []

    def connection(endpoint: str) -> dict[str, Any]:
        seen.append(endpoint)
        return {
            "aws_access_key_id": "AKIALOCAL",
            "aws_secret_access_key": "local-secret",
            "stack_name": "sandbox-fleet-local",
            "region": "eu-central-1",
        }

    target = resolve_target(None, None, None, connection=connection)
    assert seen == ["http://127.0.0.1:4599"]
    assert target.endpoint == "http://127.0.0.1:4599" and not target.on_aws
    assert (target.stack, target.region) == ("sandbox-fleet-local", "eu-central-1")
    assert (target.access_key_id, target.secret_access_key) == ("AKIALOCAL", "local-secret")


def test_resolve_target_defaults_to_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SANDBOXCTL_ENDPOINT", raising=False)
    monkeypatch.delenv("SANDBOXCTL_STACK", raising=False)
    target = resolve_target(None, None, "eu-west-1", connection=lambda e: None)
    assert target.on_aws and target.stack == STACK and target.region == "eu-west-1"
    with pytest.raises(UsageError, match="http"):
        resolve_target("ftp://nope", None, None, connection=lambda e: None)


def test_a_missing_stack_is_one_clear_line(cloud: Cloud) -> None:
    res = run_cli("users", "--stack", "no-such-stack")
    assert res.code == 1
    assert res.err.strip() == (
        "sandboxctl: error: stack no-such-stack not found in us-east-1 (use --stack / --endpoint)"
    )


# ---------------------------------------------------------------------------- users
def test_users_table_and_json(cloud: Cloud) -> None:
    cloud.put_user("alice", "READY", created_at="2026-11-26T08:00:01Z")
    cloud.put_user(
        "Alice", "FAILED", last_error="stack rolled back: quota", created_at="2026-11-26T08:00:02Z"
    )
    table = run_cli("users")
    assert table.code == 0
    assert "alice" in table.out and "Alice" in table.out
    assert "stack rolled back: quota" in table.out and "sha256:aaaaaaaaaaaa" in table.out
    data = run_cli("users", "--json").json()
    assert [(u["uid"], u["status"]) for u in data] == [("alice", "READY"), ("Alice", "FAILED")]
    ready = run_cli("users", "--status", "READY", "--json").json()
    assert [u["uid"] for u in ready] == ["alice"]


# ---------------------------------------------------------------------------- upload
def test_upload_puts_the_file_under_the_registry_digest(cloud: Cloud, tmp_path: Path) -> None:
    user = cloud.put_user("bob")
    data = tmp_path / "sales.csv"
    data.write_bytes(b"a,b\n1,2\n")
    res = run_cli("upload", "bob", str(data), "--as", "q3/sales.csv", "--json")
    assert res.code == 0, res.err
    key = f"users/{user['user_digest']}/q3/sales.csv"
    assert res.json()["key"] == key
    body = cloud.client("s3").get_object(Bucket="data-bucket", Key=key)["Body"].read()
    assert body == b"a,b\n1,2\n"


@pytest.mark.parametrize("name", ["../other/x.csv", "/abs.csv", "a//b.csv", "a/./b", "a\\b"])
def test_upload_rejects_names_that_leave_the_prefix(
    cloud: Cloud, tmp_path: Path, name: str
) -> None:
    cloud.put_user("bob")
    data = tmp_path / "x.csv"
    data.write_text("a\n1\n")
    res = run_cli("upload", "bob", str(data), "--as", name)
    assert res.code == 2 and "dataset name" in res.err
    assert cloud.client("s3").list_objects_v2(Bucket="data-bucket").get("KeyCount") == 0


def test_upload_for_unknown_or_deleted_users_fails(cloud: Cloud, tmp_path: Path) -> None:
    cloud.put_user("gone", "DELETED")
    data = tmp_path / "x.csv"
    data.write_text("a\n1\n")
    unknown = run_cli("upload", "nobody", str(data))
    assert unknown.code == 1 and "no user 'nobody'" in unknown.err
    deleted = run_cli("upload", "gone", str(data))
    assert deleted.code == 1 and "DELETED" in deleted.err
    missing = run_cli("upload", "gone", str(tmp_path / "absent.csv"))
    assert missing.code == 2 and "not a readable file" in missing.err
    assert cloud.client("s3").list_objects_v2(Bucket="data-bucket").get("KeyCount") == 0


# ---------------------------------------------------------------------------- run
def envelope(**overrides: Any) -> dict[str, Any]:
    env = {
        "status": "ok",
        "result": {
            "columns": ["region", "revenue"],
            "index": [0, 1],
            "data": [["north", 10.5], ["south", 3.0]],
            "dtypes": ["object", "float64"],
            "index_names": [None],
            "total_rows": 2,
            "returned_rows": 2,
            "truncated": False,
        },
        "result_type": "dataframe",
        "result_truncated": False,
        "stdout": "2 orders\n",
        "stdout_truncated": False,
        "stderr": "",
        "stderr_truncated": False,
        "figures": [base64.b64encode(PNG).decode()],
        "figures_truncated": False,
        "error": None,
        "metrics": {
            "wall_ms": 12.5,
            "cpu_ms": 10.0,
            "peak_rss_mb": 80.0,
            "load_ms": 3.0,
            "cache": "hit",
        },
        "request_id": "req-1",
    }
    env.update(overrides)
    return env


def test_run_invokes_the_users_own_function_and_saves_figures(
    fake_lambda: Cloud, tmp_path: Path
) -> None:
    user = fake_lambda.put_user("carol")
    code_file = tmp_path / "code.py"
    code_file.write_text("df.groupby('region').sum()")
    fake_lambda.lambda_answers.append(envelope())
    figures = tmp_path / "figs"
    res = run_cli(
        "run",
        "carol",
        "--dataset",
        "sales.csv",
        "--code-file",
        str(code_file),
        "--figures-dir",
        str(figures),
    )
    assert res.code == 0, res.err
    call = fake_lambda.lambda_calls[0]
    assert call["FunctionName"] == user["function_name"]
    assert call["Payload"]["code"] == "df.groupby('region').sum()"
    assert call["Payload"]["dataset"] == "sales.csv"
    saved = figures / "req-1-1.png"
    assert saved.read_bytes() == PNG
    for text in ("north", "10.5", "2 orders", "status ok", f"figure saved: {saved}"):
        assert text in res.out


def test_run_exits_1_when_the_code_failed_and_shows_the_error(fake_lambda: Cloud) -> None:
    fake_lambda.put_user("carol")
    fake_lambda.lambda_answers.append(
        envelope(
            status="error",
            result=None,
            result_type="none",
            figures=[],
            error={"type": "KeyError", "message": "'regoin'", "traceback": "line 1, in <cell>"},
        )
    )
    res = run_cli("run", "carol", "--dataset", "s.csv", "--code", "df['regoin']", "--json")
    assert res.code == 1
    assert res.json()["error"]["type"] == "KeyError"


def test_run_refuses_users_that_are_not_ready(fake_lambda: Cloud) -> None:
    fake_lambda.put_user("dave", "PROVISIONING")
    res = run_cli("run", "dave", "--dataset", "s.csv", "--code", "1")
    assert res.code == 1 and "PROVISIONING, not READY" in res.err
    assert fake_lambda.lambda_calls == []


def test_run_reports_a_crashed_function(fake_lambda: Cloud) -> None:
    fake_lambda.put_user("carol")
    fake_lambda.lambda_answers.append(
        {"errorMessage": "Runtime exited", "errorType": "Runtime.ExitError"}
    )
    res = run_cli("run", "carol", "--dataset", "s.csv", "--code", "1")
    assert res.code == 1 and "failed (Unhandled): Runtime exited" in res.err


# ---------------------------------------------------------------------------- signup
def test_signup_posts_a_signed_notice_to_the_http_api(fake_lambda: Cloud) -> None:
    def webhook(request: dict[str, Any]) -> dict[str, Any]:
        headers = request["headers"]
        signing.verify(
            [SECRET],
            request["body"].encode(),
            headers[signing.TIMESTAMP_HEADER.lower()],
            headers[signing.SIGNATURE_HEADER.lower()],
        )
        return {"statusCode": 202, "body": json.dumps({"accepted": True})}

    fake_lambda.lambda_answers.append(webhook)
    res = run_cli("signup", "ålice/../x", "--email", "a@example.com", "--json")
    assert res.code == 0, res.err
    [request] = fake_lambda.webhook_calls
    assert request["url"] == "https://api.example.com/hooks/firebase"
    assert request["headers"]["content-type"] == "application/json"
    assert fake_lambda.lambda_calls == []  # the public path, not a direct invoke
    body = json.loads(request["body"])
    assert (
        set(body) == {"type", "uid", "email", "event_id", "created_at"}
        and body["type"] == "user.created"
    )
    assert (body["uid"], body["email"]) == ("ålice/../x", "a@example.com")
    assert res.json()["status_code"] == 202
    assert SECRET not in res.out + res.err


def test_signup_reports_a_refusal(fake_lambda: Cloud) -> None:
    fake_lambda.lambda_answers.append({"statusCode": 401, "body": "bad signature"})
    res = run_cli("signup", "eve")
    assert res.code == 1
    assert (
        res.err.strip()
        == "sandboxctl: error: the webhook refused the request: HTTP 401 bad signature"
    )


def test_signup_rejects_a_bad_email_before_sending(fake_lambda: Cloud) -> None:
    res = run_cli("signup", "eve", "--email", "not-an-email")
    assert res.code == 2 and fake_lambda.webhook_calls == []
    assert res.err.startswith("sandboxctl: error: invalid email:")


def workflow_writes(cloud: Cloud, uid: str, status: str, **attrs: Any) -> Any:
    """A webhook answer that also does what the provisioning workflow would: update the entry."""

    def answer(event: dict[str, Any]) -> dict[str, Any]:
        cloud.put_user(
            uid,
            status,
            claimed_by="arn:aws:states:us-east-1:123456789012:execution:P:new",
            updated_at="2026-11-26T09:00:00.000Z",
            **attrs,
        )
        return {"statusCode": 202, "body": ""}

    return answer


@pytest.mark.parametrize(("status", "code"), [("READY", 0), ("FAILED", 1)])
def test_signup_wait_returns_the_final_status(fake_lambda: Cloud, status: str, code: int) -> None:
    error = "ROLLBACK_COMPLETE: quota" if status == "FAILED" else None
    fake_lambda.lambda_answers.append(
        workflow_writes(fake_lambda, "frank", status, last_error=error)
    )
    res = run_cli("signup", "frank", "--wait", "--timeout", "5", "--json")
    assert res.code == code
    assert (res.json()["status"], res.json().get("last_error")) == (status, error)


def test_signup_wait_of_a_ready_user_returns_at_once(fake_lambda: Cloud) -> None:
    fake_lambda.put_user("ida", "READY")
    fake_lambda.lambda_answers.append({"statusCode": 202, "body": ""})
    res = run_cli("signup", "ida", "--wait", "--timeout", "0.3", "--json")
    assert res.code == 0 and res.json()["status"] == "READY"


def test_signup_wait_ignores_an_old_failure_until_the_workflow_answers(fake_lambda: Cloud) -> None:
    fake_lambda.put_user("jo", "FAILED", last_error="old failure", updated_at="2026-11-25")
    fake_lambda.lambda_answers.append({"statusCode": 202, "body": ""})
    res = run_cli("signup", "jo", "--wait", "--timeout", "0.5")
    assert res.code == 1 and "still FAILED after" in res.err


def test_signup_wait_times_out_with_the_last_status(fake_lambda: Cloud) -> None:
    fake_lambda.put_user("gina", "PROVISIONING")
    fake_lambda.lambda_answers.append({"statusCode": 202, "body": ""})
    res = run_cli("signup", "gina", "--wait", "--timeout", "0.3")
    assert res.code == 1 and "still PROVISIONING" in res.err


def test_wait_fails_fast_when_the_owning_workflow_ended(fake_lambda: Cloud) -> None:
    sfn = fake_lambda.client("stepfunctions")
    machine = fake_lambda.outputs["DeprovisionUserStateMachineArn"]
    execution = sfn.start_execution(stateMachineArn=machine, name="crashed")["executionArn"]
    sfn.stop_execution(executionArn=execution)
    fake_lambda.put_user(
        "kim", "DELETING", claimed_by=execution, updated_at="t1", last_error="DELETE_FAILED: eni"
    )
    fake_lambda.lambda_answers.append({"statusCode": 202, "body": ""})
    res = run_cli("delete-user", "kim", "--wait", "--timeout", "60")
    assert res.code == 1
    assert res.err.strip() == (
        "sandboxctl: error: user 'kim' is still DELETING: crashed ABORTED: DELETE_FAILED: eni"
    )


def test_signup_without_the_webhook_says_what_is_missing(cloud: Cloud) -> None:
    outputs = {k: v for k, v in cloud.outputs.items() if k != "HttpApiUrl"}
    create_stack(outputs, name="partial")
    res = run_cli("signup", "hank", "--stack", "partial")
    assert res.code == 1
    assert "stack partial has no output HttpApiUrl" in res.err


def test_delete_user_sends_a_signed_deletion(fake_lambda: Cloud) -> None:
    fake_lambda.put_user("ivy", "READY")
    fake_lambda.lambda_answers.append({"statusCode": 202, "body": ""})
    res = run_cli("delete-user", "ivy", "--json")
    assert res.code == 0, res.err
    body = json.loads(fake_lambda.webhook_calls[0]["body"])
    assert body["uid"] == "ivy" and body["type"] == "user.deleted"


def test_delete_user_of_an_unknown_uid_is_refused_and_writes_nothing(fake_lambda: Cloud) -> None:
    table = fake_lambda.outputs["RegistryTableName"]
    before = fake_lambda.client("dynamodb").scan(TableName=table)["Items"]
    res = run_cli("delete-user", "nobody-knows-me", "--json")
    assert res.code == 1
    assert "no user 'nobody-knows-me' in the registry" in res.err
    assert fake_lambda.webhook_calls == []  # the webhook was never called
    assert fake_lambda.client("dynamodb").scan(TableName=table)["Items"] == before


# ---------------------------------------------------------------------------- images, rollouts
def test_push_image_needs_a_local_cloud(cloud: Cloud) -> None:
    res = run_cli("push-image", "v2")
    assert res.code == 2 and "local cloud" in res.err
    assert cloud.client("ecr").list_images(repositoryName="sandbox")["imageIds"] == []


def test_push_image_puts_a_new_manifest(cloud: Cloud) -> None:
    cp = ControlPlane(Target(endpoint="http://127.0.0.1:1"), client_factory=cloud.client)
    first = cp.push_image("v2")
    second = cp.push_image("v3")
    assert first["image_digest"] != second["image_digest"]
    assert first["image_uri"] == f"{cloud.outputs['SandboxRepositoryUri']}@{first['image_digest']}"
    images = cloud.client("ecr").describe_images(repositoryName="sandbox")["imageDetails"]
    assert {tuple(i["imageTags"]) for i in images} == {("v2",), ("v3",)}
    with pytest.raises(cli.SandboxctlError, match="already exists"):
        cp.push_image("v2")
    with pytest.raises(UsageError):
        cp.push_image("-bad tag")


def test_rollouts_newest_first_with_failures(cloud: Cloud) -> None:
    table = boto3.resource("dynamodb", region_name=REGION).Table("registry")
    table.put_item(
        Item={
            "pk": "ROLLOUT#r1",
            "image_digest": "sha256:" + "1" * 64,
            "status": "COMPLETED",
            "started_at": "2026-11-26T08:00:00Z",
            "updated": 3,
        }
    )
    table.put_item(
        Item={
            "pk": "ROLLOUT#r2",
            "image_digest": "sha256:" + "2" * 64,
            "previous_digest": "sha256:" + "1" * 64,
            "status": "HALTED",
            "started_at": "2026-11-26T09:00:00Z",
            "failures": [{"uid": "x", "wave": "canary", "reason": "UPDATE_ROLLBACK_COMPLETE"}],
            "halt_reasons": ["canary failure rate 100% > 20%"],
            "execution_arn": "arn:aws:states:us-east-1:123456789012:execution:RolloutImage:r2",
        }
    )
    data = run_cli("rollouts", "--json").json()
    assert [(r["rollout_id"], r["status"]) for r in data] == [("r2", "HALTED"), ("r1", "COMPLETED")]
    text = run_cli("rollouts").out
    assert "failure r2: x (canary wave): UPDATE_ROLLBACK_COMPLETE" in text
    assert "failure r2: halted: canary failure rate 100% > 20%" in text
    assert (
        "r2: https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/arn:aws:states:us-east-1:123456789012:execution:RolloutImage:r2"
        in text
    )
    assert "updated 3" in text


def test_executions_link_to_the_console_on_aws(cloud: Cloud) -> None:
    sfn = cloud.client("stepfunctions")
    arn = cloud.outputs["ProvisionUserStateMachineArn"]
    sfn.start_execution(stateMachineArn=arn, name="signup-alice", input="{}")
    data = run_cli("executions", "--workflow", "ProvisionUser", "--json").json()
    assert [(e["workflow"], e["name"]) for e in data] == [("ProvisionUser", "signup-alice")]
    assert data[0]["console_url"].startswith(
        "https://us-east-1.console.aws.amazon.com/states/home?region=us-east-1#/v2/executions/details/"
    )
    assert data[0]["console_url"].endswith(data[0]["execution_arn"])


# ---------------------------------------------------------------------------- status
def test_status_passes_when_everything_answers(cloud: Cloud) -> None:
    res = run_cli("status", "--json")
    assert res.code == 0, res.out
    checks = {c["check"]: c for c in res.json()}
    assert all(c["ok"] for c in checks.values())
    assert {"stack", "outputs", "registry table", "RolloutImage workflow"} <= set(checks)


def test_status_fails_and_names_what_is_missing(cloud: Cloud) -> None:
    outputs = {k: v for k, v in cloud.outputs.items() if k not in {"ReconcileStateMachineArn"}}
    outputs["DataBucketName"] = "no-such-bucket"
    create_stack(outputs, name="half")
    res = run_cli("status", "--stack", "half", "--json")
    assert res.code == 1
    failing = {c["check"]: c["detail"] for c in res.json() if not c["ok"]}
    assert failing["outputs"] == "missing ReconcileStateMachineArn"
    assert "data bucket" in failing and "Reconcile workflow" in failing
    assert set(REQUIRED_OUTPUTS) - set(outputs) == {"ReconcileStateMachineArn"}


def test_an_endpoint_without_a_running_local_cloud_says_so(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    res = run_cli("users", "--endpoint", "http://127.0.0.1:9")
    assert res.code == 1
    assert res.err.strip() == (
        "sandboxctl: error: no operator credentials for http://127.0.0.1:9: "
        "is `sandboxctl local up` serving there?"
    )


def test_signup_body_is_byte_for_byte_what_the_firebase_function_sends() -> None:
    from datetime import UTC, datetime

    from firebase import main as firebase_function
    from sandboxctl.controlplane import signup_notice, webhook_body

    created = datetime(2026, 11, 26, 8, 0, 1, 123456, tzinfo=UTC)
    for uid, email in [("Ålice/../ü", "a@example.com"), ("x" * 128, None)]:
        ours = webhook_body(signup_notice(uid, email, "evt-1", created))
        theirs = firebase_function.signup_body(uid, email, "evt-1", created)
        assert ours == theirs
        assert signing.sign(SECRET, ours, 1_700_000_000) == firebase_function.sign(
            SECRET, theirs, 1_700_000_000
        )
