"""The ControlPlane's foundation: one target, its boto3 clients, the stack's outputs."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Self

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError
from fleet import registry

from sandboxctl.controlplane.aws import describe_client_error
from sandboxctl.controlplane.errors import (
    OutputMissingError,
    SandboxctlError,
)
from sandboxctl.controlplane.target import DEFAULT_REGION, Target

# The outputs docs/architecture.md promises; `status` reports any that are missing.
REQUIRED_OUTPUTS = (
    "EventBusName",
    "RegistryTableName",
    "DataBucketName",
    "TemplatesBucketName",
    "UserTemplateKey",
    "SandboxRepositoryName",
    "SandboxRepositoryUri",
    "ProvisionUserStateMachineArn",
    "DeprovisionUserStateMachineArn",
    "RolloutImageStateMachineArn",
    "ReconcileStateMachineArn",
    "SignupWebhookFunctionName",
    "RunCodeFunctionName",
    "HttpApiUrl",
    "WebhookSecretArn",
    "Stage",
)
STATE_MACHINE_OUTPUTS = {
    "ProvisionUser": "ProvisionUserStateMachineArn",
    "DeprovisionUser": "DeprovisionUserStateMachineArn",
    "RolloutImage": "RolloutImageStateMachineArn",
    "Reconcile": "ReconcileStateMachineArn",
}
USER_STATUSES = registry.USER_STATUSES
ROLLOUT_STATUSES = registry.ROLLOUT_STATUSES
ROLLOUT_FINAL = {"COMPLETED", "HALTED", "SUPERSEDED"}
WEBHOOK_PATH = "/hooks/firebase"
# API Gateway gives an integration 30 s; a little more so the gateway's own 503 arrives first.
WEBHOOK_TIMEOUT_S = 35.0
# The sandbox can run for up to Lambda's 15 minutes; a shorter read timeout would retry the run.
INVOKE_READ_TIMEOUT_S = 910


class Base:
    """A control plane's clients and stack outputs: what every other part builds on."""

    def __init__(
        self,
        target: Target,
        client_factory: Callable[[str], Any] | None = None,
        outputs: dict[str, str] | None = None,
        http: Any | None = None,
    ) -> None:
        self.target = target
        self._factory = client_factory or self._boto_client
        # What posts to the HTTP API (a requests.Session); by default one that retries.
        self._http = http
        self._clients: dict[str, Any] = {}
        self._outputs = dict(outputs) if outputs is not None else None
        self._session: boto3.Session | None = None

    @classmethod
    def from_local_cloud(cls, cloud: Any) -> Self:
        """A ControlPlane over an embedded LocalCloud, using its admin clients."""
        target = Target(
            stack=cloud.stack_name,
            region=getattr(cloud, "region", DEFAULT_REGION),
            endpoint=cloud.endpoint,
        )
        return cls(target, client_factory=cloud.client, outputs=dict(cloud.outputs))

    # clients and outputs -----------------------------------------------------------------
    def _boto_client(self, service: str) -> Any:
        if self._session is None:
            kwargs: dict[str, Any] = {"region_name": self.target.region}
            if self.target.access_key_id and self.target.secret_access_key:
                kwargs["aws_access_key_id"] = self.target.access_key_id
                kwargs["aws_secret_access_key"] = self.target.secret_access_key
            self._session = boto3.Session(**kwargs)
        read_timeout = INVOKE_READ_TIMEOUT_S if service == "lambda" else 60
        config = Config(
            retries={"mode": "standard", "max_attempts": 8},
            read_timeout=read_timeout,
            connect_timeout=10,
        )
        return self._session.client(service, endpoint_url=self.target.endpoint, config=config)

    def client(self, service: str) -> Any:
        if service not in self._clients:
            self._clients[service] = self._factory(service)
        return self._clients[service]

    def describe_stack(self) -> dict[str, Any]:
        try:
            stacks = self.client("cloudformation").describe_stacks(StackName=self.target.stack)
        except ClientError as exc:
            if "does not exist" in describe_client_error(exc):
                raise SandboxctlError(
                    f"stack {self.target.stack} not found in {self.target.region}"
                    + (f" at {self.target.endpoint}" if self.target.endpoint else "")
                    + " (use --stack / --endpoint)"
                ) from exc
            raise
        return dict(stacks["Stacks"][0])

    @property
    def outputs(self) -> dict[str, str]:
        if self._outputs is None:
            stack = self.describe_stack()
            self._outputs = {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}
        return self._outputs

    def has(self, key: str) -> bool:
        return bool(self.outputs.get(key))

    def api_url(self) -> str:
        """The HTTP API's base URL: the stack output on AWS, the local cloud's own route locally."""
        deployed = self.output("HttpApiUrl").rstrip("/")
        if self.target.on_aws:
            return deployed
        from sandboxctl.localcloud.httpapi import api_url

        api_id = deployed.split("//", 1)[-1].split(".", 1)[0]
        return api_url(str(self.target.endpoint), api_id)

    def output(self, key: str) -> str:
        value = self.outputs.get(key)
        if not value:
            raise OutputMissingError(key, self.target.stack)
        return value
