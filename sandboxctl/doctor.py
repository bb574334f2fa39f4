"""``sandboxctl doctor``: what an operator must know before letting users in.

Each check runs against the deployed stack (AWS or the local cloud) the way the workflows will,
and answers pass / fail (or warn: works, with a known loss) with the reason and the fix. The
probe user stack is created, updated and deleted through the CloudFormation service role with
exactly the request ProvisionUser makes, and its function runs a smoke request, so a missing
handler permission, an image Lambda cannot pull or a runtime that does not start shows here and
not at the first signup.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError
from fleet import naming

from sandboxctl.controlplane import ControlPlane, SandboxctlError, describe_client_error

ROOT = Path(__file__).resolve().parents[1]
USER_TEMPLATE = ROOT / "templates" / "user-sandbox.yaml"
PROBE_UID = "sandboxctl-doctor-probe"
SINGLE_PLATFORM = {
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
}
SMOKE_CODE = "print(len(df), int(df['n'].sum()))\n"
FIREBASE_LOSS = (
    "without FirebaseServiceAccountSecretArn signups are not confirmed with Firebase and the "
    "reconciler cannot list Firebase users: a missed signup is never provisioned and a user "
    "deleted in Firebase keeps a sandbox until `sandboxctl delete-user`"
)


@dataclass
class Check:
    check: str
    status: str  # pass | warn | fail
    detail: str
    fix: str = ""


class Failed(Exception):
    """A check's failure: the reason and what to do about it."""

    def __init__(self, detail: str, fix: str) -> None:
        super().__init__(detail)
        self.detail, self.fix = detail, fix


class Doctor:
    def __init__(self, cp: ControlPlane, timeout: float = 300.0) -> None:
        self.cp = cp
        self.timeout = timeout
        self.checks: list[Check] = []

    def run(self) -> list[Check]:
        self.cp.describe_stack()  # an unknown stack is an error of the command, not a check
        self._check("user template", self.user_template)
        image = self._check("sandbox image", self.sandbox_image)
        if image is not None:
            self._check("probe user stack", lambda: self.probe_stack(image))
        else:
            self._skip("probe user stack", "no pullable desired image to create it with")
        self._check("alarm topic", self.alarm_topic)
        self._check("firebase", self.firebase)
        return self.checks

    # ------------------------------------------------------------------ plumbing
    def _check(self, name: str, fn: Callable[[], Any]) -> Any:
        try:
            value = fn()
        except Failed as failure:
            self.checks.append(Check(name, "fail", failure.detail, failure.fix))
            return None
        except (ClientError, BotoCoreError) as exc:
            self.checks.append(Check(name, "fail", describe_client_error(exc), _fix_for(exc)))
            return None
        except SandboxctlError as exc:
            self.checks.append(Check(name, "fail", str(exc), "see the message"))
            return None
        status, detail, extra = value if isinstance(value, tuple) else ("pass", value, None)
        self.checks.append(Check(name, status, detail))
        return extra if extra is not None else detail

    def _skip(self, name: str, why: str) -> None:
        self.checks.append(Check(name, "fail", f"not run: {why}", "fix the checks above"))

    # ------------------------------------------------------------------ checks
    def user_template(self) -> str:
        bucket, key = self.cp.output("TemplatesBucketName"), self.cp.output("UserTemplateKey")
        fix = f"aws s3 cp templates/user-sandbox.yaml s3://{bucket}/{key}"
        try:
            body = self.cp.client("s3").get_object(Bucket=bucket, Key=key)["Body"].read()
        except ClientError as exc:
            raise Failed(f"s3://{bucket}/{key}: {describe_client_error(exc)}", fix) from exc
        ours = USER_TEMPLATE.read_bytes()
        if hashlib.sha256(body).digest() != hashlib.sha256(ours).digest():
            raise Failed(f"s3://{bucket}/{key} differs from templates/user-sandbox.yaml", fix)
        return f"s3://{bucket}/{key} matches the repository (sha256 {_short(ours)})"

    def sandbox_image(self) -> tuple[str, str, dict[str, Any]]:
        desired = self.cp.desired_image()
        push = "push an image: .ci/push-image <SandboxRepositoryUri> <tag> (README)"
        if not desired or not desired.get("image_uri"):
            raise Failed("no desired image is set (no image was ever pushed and rolled out)", push)
        uri = str(desired["image_uri"])
        repository, _, digest = uri.partition("@")
        name = repository.split("/", 1)[1]
        ecr = self.cp.client("ecr")
        try:
            [image] = ecr.describe_images(repositoryName=name, imageIds=[{"imageDigest": digest}])[
                "imageDetails"
            ]
        except ClientError as exc:
            raise Failed(f"{uri}: {describe_client_error(exc)}", push) from exc
        media = image.get("imageManifestMediaType", "")
        if media and media not in SINGLE_PLATFORM:
            raise Failed(
                f"{uri} is a {media}: Lambda accepts only a single-platform image manifest",
                "rebuild with --platform linux/arm64 --provenance=false --sbom=false",
            )
        policy = json.loads(ecr.get_repository_policy(repositoryName=name)["policyText"])
        if not any(_lets_lambda_pull(s) for s in policy.get("Statement", [])):
            raise Failed(
                f"the repository policy of {name} does not let lambda.amazonaws.com pull",
                "redeploy the stack (SandboxRepository's RepositoryPolicyText)",
            )
        return "pass", f"{uri} ({media or 'manifest'}); Lambda may pull it", desired

    def probe_stack(self, desired: dict[str, Any]) -> str:
        """Create, update and delete a user stack exactly as ProvisionUser does."""
        cfn = self.cp.client("cloudformation")
        request = self._provision_request(desired)
        name = request["StackName"]
        self._delete_leftover(cfn, name, request["RoleARN"])
        cfn.create_stack(**request)
        created = self._settle(cfn, name, "CREATE")
        memory = next(p for p in request["Parameters"] if p["ParameterKey"] == "MemorySize")
        update = [
            {"ParameterKey": p["ParameterKey"], "UsePreviousValue": True}
            for p in request["Parameters"]
            if p["ParameterKey"] != "MemorySize"
        ]
        update.append(
            {
                "ParameterKey": "MemorySize",
                "ParameterValue": str(int(memory["ParameterValue"]) + 64),
            }
        )
        try:
            smoke = self.smoke_run(created)
            cfn.update_stack(
                StackName=name,
                UsePreviousTemplate=True,
                Parameters=update,
                RoleARN=request["RoleARN"],
                Capabilities=request["Capabilities"],
            )
            self._settle(cfn, name, "UPDATE")
        finally:
            cfn.delete_stack(StackName=created["StackId"], RoleARN=request["RoleARN"])
        self._settle(cfn, created["StackId"], "DELETE")
        return f"{name}: created, updated and deleted through the service role; {smoke}"

    def smoke_run(self, stack: dict[str, Any]) -> str:
        outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        function = outputs.get("FunctionName") or stack["StackName"]
        digest = naming.user_digest(PROBE_UID)
        key = f"{naming.user_prefix(digest)}doctor.csv"
        bucket = self.cp.output("DataBucketName")
        s3 = self.cp.client("s3")
        s3.put_object(Bucket=bucket, Key=key, Body=b"n\n1\n2\n")
        try:
            response = self.cp.client("lambda").invoke(
                FunctionName=function,
                Payload=json.dumps(
                    {"code": SMOKE_CODE, "dataset": "doctor.csv", "request_id": str(uuid.uuid4())}
                ).encode(),
            )
            envelope = json.loads(response["Payload"].read() or b"null")
        finally:
            self._purge(s3, bucket, key)
        if response.get("FunctionError") or not isinstance(envelope, dict):
            raise Failed(
                f"the smoke run of {function} failed: {str(envelope)[:300]}",
                "see the function's log group /aws/lambda/" + function,
            )
        if envelope.get("status") != "ok" or str(envelope.get("stdout", "")).split() != ["2", "3"]:
            raise Failed(
                f"the smoke run of {function} answered {envelope.get('status')}: "
                f"{envelope.get('error') or envelope.get('stdout')}",
                "see the function's log group /aws/lambda/" + function,
            )
        sandbox = envelope.get("sandbox")
        if isinstance(sandbox, dict):
            return (
                f"smoke run ok (profile {sandbox.get('profile')}; in force: "
                f"{', '.join(sandbox.get('in_force') or []) or 'none'}; refused by Lambda: "
                f"{', '.join(sandbox.get('refused') or []) or 'none'})"
            )
        return "smoke run ok (this runtime does not report its sandbox protections)"

    def alarm_topic(self) -> str:
        topic = self.cp.output("AlarmTopicArn")
        sns = self.cp.client("sns")
        try:
            sent = sns.publish(
                TopicArn=topic,
                Subject="sandboxctl doctor: test",
                Message="A test from sandboxctl doctor: alarms can reach this topic.",
            )
        except ClientError as exc:
            raise Failed(
                f"{topic} refused a publish: {describe_client_error(exc)}",
                "the topic's KMS key policy must let its publishers use the key (AlarmTopicKey)",
            ) from exc
        subscriptions = sns.list_subscriptions_by_topic(TopicArn=topic).get("Subscriptions", [])
        confirmed = [s for s in subscriptions if s.get("SubscriptionArn", "").startswith("arn:")]
        return (
            f"{topic} accepted a test message ({sent['MessageId']}); "
            f"{len(confirmed)} confirmed subscription(s)"
            + ("" if confirmed else ": subscribe an operator (aws sns subscribe ...)")
        )

    def firebase(self) -> tuple[str, str, None]:
        stack = self.cp.describe_stack()
        parameters = {
            p["ParameterKey"]: p.get("ParameterValue", "") for p in stack.get("Parameters", [])
        }
        secret = parameters.get("FirebaseServiceAccountSecretArn", "")
        stage = parameters.get("Stage", "")
        if not secret:
            if stage == "prod":
                raise Failed(
                    f"prod has no FirebaseServiceAccountSecretArn: {FIREBASE_LOSS}",
                    "set FirebaseServiceAccountSecretArn in samconfig.toml [prod] and redeploy",
                )
            return "warn", f"not configured on {stage or 'this stage'}: {FIREBASE_LOSS}", None
        self.cp.client("secretsmanager").describe_secret(SecretId=secret)
        return "pass", f"confirmation and listing use {secret}", None

    # ------------------------------------------------------------------ helpers
    def _provision_request(self, desired: dict[str, Any]) -> dict[str, Any]:
        machine = self.cp.client("stepfunctions").describe_state_machine(
            stateMachineArn=self.cp.output("ProvisionUserStateMachineArn")
        )
        parameters = json.loads(machine["definition"])["States"]["Create user stack"]["Parameters"]
        digest = naming.user_digest(PROBE_UID)
        dynamic = {
            "UserDigest": digest,
            "UserPrefix": naming.user_prefix(digest),
            "ImageUri": desired["image_uri"],
        }
        stage = next(
            p["ParameterValue"] for p in parameters["Parameters"] if p["ParameterKey"] == "Stage"
        )
        return {
            "StackName": naming.resource_name(stage, digest),
            "TemplateURL": parameters["TemplateURL"],
            "RoleARN": parameters["RoleARN"],
            "Capabilities": parameters["Capabilities"],
            "ResourceTypes": parameters["ResourceTypes"],
            "Parameters": [
                {
                    "ParameterKey": p["ParameterKey"],
                    "ParameterValue": str(
                        dynamic.get(p["ParameterKey"], p.get("ParameterValue", ""))
                    ),
                }
                for p in parameters["Parameters"]
            ],
            "Tags": [{"Key": "sandbox-fleet:managed-by", "Value": "sandboxctl-doctor"}],
        }

    def _settle(self, cfn: Any, name: str, operation: str) -> dict[str, Any]:
        deadline = time.monotonic() + self.timeout
        delay = 0.2
        while True:
            try:
                stack: dict[str, Any] = cfn.describe_stacks(StackName=name)["Stacks"][0]
            except ClientError as exc:
                if operation == "DELETE" and "does not exist" in str(exc):
                    return {}
                raise
            status = stack["StackStatus"]
            if not status.endswith("_IN_PROGRESS"):
                if status == f"{operation}_COMPLETE":
                    return stack
                raise Failed(
                    f"{name} ended {status}: {self._first_failure(cfn, name)}",
                    "the CloudFormation service role lacks what the reason names (see "
                    "docs/operations.md); redeploy the control plane",
                )
            if time.monotonic() > deadline:
                raise Failed(
                    f"{name} still {status} after {self.timeout:.0f}s", "look at its events"
                )
            time.sleep(delay)
            delay = min(delay * 2, 5.0)

    @staticmethod
    def _first_failure(cfn: Any, name: str) -> str:
        events = cfn.describe_stack_events(StackName=name)["StackEvents"]
        failed = [e for e in events if str(e.get("ResourceStatus", "")).endswith("_FAILED")]
        return str(failed[-1].get("ResourceStatusReason")) if failed else "no failed resource"

    def _delete_leftover(self, cfn: Any, name: str, role_arn: str) -> None:
        """A probe stack from an interrupted run would make CreateStack fail: remove it first."""
        try:
            cfn.describe_stacks(StackName=name)
        except ClientError:
            return
        cfn.delete_stack(StackName=name, RoleARN=role_arn)
        self._settle(cfn, name, "DELETE")

    @staticmethod
    def _purge(s3: Any, bucket: str, key: str) -> None:
        listing = s3.list_object_versions(Bucket=bucket, Prefix=key)
        objects = [
            {"Key": v["Key"], "VersionId": v["VersionId"]}
            for v in listing.get("Versions", []) + listing.get("DeleteMarkers", [])
        ]
        if objects:
            s3.delete_objects(Bucket=bucket, Delete={"Objects": objects, "Quiet": True})


def _lets_lambda_pull(statement: dict[str, Any]) -> bool:
    principal = statement.get("Principal") or {}
    services = principal.get("Service", []) if isinstance(principal, dict) else []
    services = services if isinstance(services, list) else [services]
    actions = statement.get("Action", [])
    actions = actions if isinstance(actions, list) else [actions]
    return (
        statement.get("Effect") == "Allow"
        and "lambda.amazonaws.com" in services
        and {"ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer"} <= set(actions)
    )


def _fix_for(exc: ClientError | BotoCoreError) -> str:
    text = str(exc)
    if "AccessDenied" in text or "not authorized" in text:
        return "your credentials lack this permission (use the operator/deploy role)"
    return "see the error"


def _short(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:12]


def exit_code(checks: list[Check]) -> int:
    """0 when nothing failed (warnings allowed), 1 otherwise."""
    return 0 if all(c.status != "fail" for c in checks) else 1


def as_rows(checks: list[Check]) -> list[dict[str, str]]:
    return [asdict(c) for c in checks]


def table(checks: list[Check]) -> Any:
    from rich.markup import escape
    from rich.table import Table
    from rich.text import Text

    styles = {"pass": "green", "warn": "yellow", "fail": "bold red"}
    t = Table(title="sandboxctl doctor", title_justify="left", header_style="bold")
    for column in ("check", "result", "detail", "fix"):
        t.add_column(column, overflow="fold")
    for c in checks:
        t.add_row(
            escape(c.check), Text(c.status, style=styles[c.status]), escape(c.detail), escape(c.fix)
        )
    return t
