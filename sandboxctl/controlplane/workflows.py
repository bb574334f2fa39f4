"""Workflows: reconcile, image pushes and rollouts, executions, and the deployment's status."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from functools import partial
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from sandboxctl.controlplane.aws import (
    Poller,
    console_url,
    describe_client_error,
    error_code,
)
from sandboxctl.controlplane.base import (
    REQUIRED_OUTPUTS,
    STATE_MACHINE_OUTPUTS,
)
from sandboxctl.controlplane.errors import (
    OutputMissingError,
    SandboxctlError,
    UsageError,
    WaitTimeoutError,
)
from sandboxctl.controlplane.inputs import (
    docker_manifest,
    validate_image_tag,
)
from sandboxctl.controlplane.users import Users


class Workflows(Users):
    """Start and follow the workflows; report what is deployed."""

    def start_reconcile(self, dry_run: bool = False) -> str:
        """Start the Reconcile workflow now (as its schedule does); returns the execution ARN."""
        request = {"dry_run": True} if dry_run else {}
        started = self.client("stepfunctions").start_execution(
            stateMachineArn=self.output("ReconcileStateMachineArn"),
            name=f"sandboxctl-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:6]}",
            input=json.dumps(request),
        )
        return str(started["executionArn"])

    def wait_for_execution(
        self,
        execution_arn: str,
        timeout_s: float,
        on_tick: Callable[[str, float], None] | None = None,
    ) -> dict[str, Any]:
        """The execution once it is no longer RUNNING: status, output (parsed) and cause."""
        sfn = self.client("stepfunctions")
        for elapsed in Poller(timeout_s, cap=2.0):
            described = sfn.describe_execution(executionArn=execution_arn)
            if described["status"] != "RUNNING":
                try:
                    output = json.loads(described.get("output") or "null")
                except ValueError:
                    output = described.get("output")
                return {
                    "execution_arn": execution_arn,
                    "status": described["status"],
                    "report": output,
                    "error": described.get("error"),
                    "cause": described.get("cause"),
                }
            if on_tick:
                on_tick("RUNNING", elapsed)
        raise WaitTimeoutError(f"{execution_arn} still RUNNING after {timeout_s:.0f}s")

    def push_image(self, tag: str) -> dict[str, Any]:
        """Local cloud only: PutImage a new manifest, which emits the ECR push event."""
        validate_image_tag(tag)
        if self.target.on_aws:
            raise UsageError(
                "push-image works against a local cloud (--endpoint); on AWS, CI pushes the "
                "real image with docker push"
            )
        repo = self.output("SandboxRepositoryName")
        manifest = docker_manifest(tag)
        try:
            resp = self.client("ecr").put_image(
                repositoryName=repo,
                imageManifest=manifest,
                imageManifestMediaType="application/vnd.docker.distribution.manifest.v2+json",
                imageTag=tag,
            )
        except ClientError as exc:
            if error_code(exc) in {"ImageTagAlreadyExistsException", "ImageAlreadyExistsException"}:
                raise SandboxctlError(
                    f"tag {tag!r} already exists in {repo} (tags are immutable)"
                ) from exc
            raise
        digest = resp["image"]["imageId"]["imageDigest"]
        return {
            "repository": repo,
            "tag": tag,
            "image_digest": digest,
            "image_uri": f"{self.outputs.get('SandboxRepositoryUri', repo)}@{digest}",
        }

    def executions(
        self, machine: str | None = None, limit: int = 20, status: str | None = None
    ) -> list[dict[str, Any]]:
        """Recent executions of the fleet's workflows, newest first."""
        if limit < 1:
            raise UsageError("--limit must be at least 1")
        names = [machine] if machine else list(STATE_MACHINE_OUTPUTS)
        for name in names:
            if name not in STATE_MACHINE_OUTPUTS:
                raise UsageError(f"--machine must be one of {', '.join(STATE_MACHINE_OUTPUTS)}")
        sfn = self.client("stepfunctions")
        rows: list[dict[str, Any]] = []
        for name in names:
            arn = self.outputs.get(STATE_MACHINE_OUTPUTS[name])
            if not arn:
                continue
            kwargs: dict[str, Any] = {"stateMachineArn": arn, "maxResults": limit}
            if status:
                kwargs["statusFilter"] = status
            for ex in sfn.list_executions(**kwargs).get("executions", []):
                row = {
                    "workflow": name,
                    "name": ex["name"],
                    "status": ex["status"],
                    "started": _iso(ex.get("startDate")),
                    "stopped": _iso(ex.get("stopDate")),
                    "execution_arn": ex["executionArn"],
                }
                if self.target.on_aws:
                    row["console_url"] = console_url(self.target.region, ex["executionArn"])
                rows.append(row)
        rows.sort(key=lambda r: r["started"] or "", reverse=True)
        rows = rows[:limit]
        for row in rows:
            row.update(self._execution_subject(sfn, row["execution_arn"], row["status"]))
        return rows

    @staticmethod
    def _execution_subject(sfn: Any, arn: str, status: str) -> dict[str, Any]:
        """Who an execution was for (the event's uid) and, when it failed, why."""
        described = sfn.describe_execution(executionArn=arn)
        try:
            detail = json.loads(described.get("input") or "{}").get("detail") or {}
        except ValueError:
            detail = {}
        uid = detail.get("uid") if isinstance(detail, dict) else None
        cause = None
        if status in ("FAILED", "TIMED_OUT", "ABORTED"):
            parts = [described.get("error"), described.get("cause")]
            cause = ": ".join(str(p) for p in parts if p) or status
        return {"uid": uid, "cause": cause}

    def latest_failure(self, workflow: str) -> str | None:
        """`<execution>: <error>: <cause>` of the workflow's newest failed execution, if any."""
        failed = self.executions(workflow, limit=1, status="FAILED")
        if not failed:
            return None
        desc = self.client("stepfunctions").describe_execution(
            executionArn=failed[0]["execution_arn"]
        )
        cause = " ".join(str(desc.get("cause") or "").split())[:300]
        return f"{failed[0]['name']}: {desc.get('error') or 'failed'}: {cause}"

    def _state_machine_status(self, key: str) -> str:
        sfn = self.client("stepfunctions")
        return str(sfn.describe_state_machine(stateMachineArn=self.output(key))["status"])

    def _function_state(self, key: str) -> str:
        conf = self.client("lambda").get_function_configuration(FunctionName=self.output(key))
        return str(conf.get("State", "Active"))

    def status(self) -> list[dict[str, Any]]:
        """One row per check that the control plane is deployed and answering."""
        checks: list[dict[str, Any]] = []

        def check(name: str, fn: Callable[[], str]) -> None:
            try:
                checks.append({"check": name, "ok": True, "detail": fn()})
            except OutputMissingError as exc:
                checks.append({"check": name, "ok": False, "detail": str(exc)})
            except (ClientError, BotoCoreError) as exc:
                checks.append({"check": name, "ok": False, "detail": describe_client_error(exc)})

        try:
            stack = self.describe_stack()
        except (ClientError, BotoCoreError) as exc:
            return [{"check": "stack", "ok": False, "detail": describe_client_error(exc)}]
        except SandboxctlError as exc:
            return [{"check": "stack", "ok": False, "detail": str(exc)}]
        stack_status = str(stack.get("StackStatus"))
        settled = stack_status.endswith("_COMPLETE") and "ROLLBACK" not in stack_status
        checks.append(
            {
                "check": "stack",
                "ok": settled or stack_status == "UPDATE_ROLLBACK_COMPLETE",
                "detail": f"{self.target.stack} {stack_status}",
            }
        )
        self._outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        missing = [k for k in REQUIRED_OUTPUTS if not self.outputs.get(k)]
        checks.append(
            {
                "check": "outputs",
                "ok": not missing,
                "detail": "all present" if not missing else "missing " + ", ".join(missing),
            }
        )
        check(
            "registry table",
            lambda: self.client("dynamodb").describe_table(
                TableName=self.output("RegistryTableName")
            )["Table"]["TableStatus"],
        )
        check(
            "data bucket",
            lambda: (
                self.client("s3").head_bucket(Bucket=self.output("DataBucketName")) and "reachable"
            ),
        )
        check(
            "event bus",
            lambda: self.client("events").describe_event_bus(Name=self.output("EventBusName"))[
                "Arn"
            ],
        )
        for name, key in STATE_MACHINE_OUTPUTS.items():
            check(f"{name} workflow", partial(self._state_machine_status, key))
        try:
            url = self.api_url()
            checks.append({"check": "http api", "ok": True, "detail": url, "api_url": url})
        except OutputMissingError as exc:
            checks.append({"check": "http api", "ok": False, "detail": str(exc), "api_url": None})
        for key in ("SignupWebhookFunctionName", "RunCodeFunctionName"):
            check(key.removesuffix("FunctionName"), partial(self._function_state, key))
        check(
            "sandbox repository",
            lambda: self.client("ecr").describe_repositories(
                repositoryNames=[self.output("SandboxRepositoryName")]
            )["repositories"][0]["repositoryUri"],
        )
        check("sandbox protections", lambda: sandbox_protections_summary(self.list_users("READY")))
        return checks


def sandbox_protections_summary(users: list[dict[str, Any]]) -> str:
    """What the rollouts' smoke runs found Lambda allowed (registry attributes
    `sandbox_protections` / `sandbox_refused`), summed over users."""
    reported = [u for u in users if u.get("sandbox_protections") is not None]
    if not reported:
        return "no smoke run has recorded them yet"
    refused: dict[str, int] = {}
    for user in reported:
        for name in user.get("sandbox_refused") or []:
            refused[str(name)] = refused.get(str(name), 0) + 1
    detail = f"{len(reported)} of {len(users)} ready users reported"
    if refused:
        detail += "; refused: " + ", ".join(
            f"{name} ({count})" for name, count in sorted(refused.items())
        )
    return detail


def _iso(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat(timespec="seconds")
    return str(value)
