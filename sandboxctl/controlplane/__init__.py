"""What sandboxctl does, as plain methods over boto3 clients: the CLI and the demo share it.

Every resource is found from the control-plane stack's outputs (the contract in
docs/architecture.md), so the same code runs against real AWS and against the local cloud.

`ControlPlane` is composed of its parts, one module each: `base` (target, clients, outputs),
`users` (registry, signup webhook, waits), `runs` (uploads, runs, logs) and `workflows`
(reconcile, image pushes and rollouts, executions, status). What an operator types is checked
in `inputs`; `target`, `aws` and `errors` hold the rest.
"""

from __future__ import annotations

from sandboxctl.controlplane.aws import (
    Poller,
    console_url,
    describe_client_error,
    error_code,
    is_access_denied,
)
from sandboxctl.controlplane.base import (
    INVOKE_READ_TIMEOUT_S,
    REQUIRED_OUTPUTS,
    ROLLOUT_FINAL,
    ROLLOUT_STATUSES,
    STATE_MACHINE_OUTPUTS,
    USER_STATUSES,
    WEBHOOK_PATH,
)
from sandboxctl.controlplane.errors import (
    OutputMissingError,
    SandboxctlError,
    UsageError,
    UserNotFoundError,
    WaitFailedError,
    WaitTimeoutError,
)
from sandboxctl.controlplane.inputs import (
    IMAGE_TAG,
    MAX_DATASET_NAME,
    checked_notice,
    docker_manifest,
    signup_notice,
    validate_dataset_name,
    validate_image_tag,
    validate_uid,
    webhook_body,
)
from sandboxctl.controlplane.runs import Runs, save_figures
from sandboxctl.controlplane.target import (
    DEFAULT_REGION,
    DEFAULT_STACK,
    Target,
    local_connection,
    resolve_target,
)
from sandboxctl.controlplane.workflows import Workflows, sandbox_protections_summary

__all__ = [
    "DEFAULT_REGION",
    "DEFAULT_STACK",
    "IMAGE_TAG",
    "INVOKE_READ_TIMEOUT_S",
    "MAX_DATASET_NAME",
    "REQUIRED_OUTPUTS",
    "ROLLOUT_FINAL",
    "ROLLOUT_STATUSES",
    "STATE_MACHINE_OUTPUTS",
    "USER_STATUSES",
    "WEBHOOK_PATH",
    "ControlPlane",
    "OutputMissingError",
    "Poller",
    "SandboxctlError",
    "Target",
    "UsageError",
    "UserNotFoundError",
    "WaitFailedError",
    "WaitTimeoutError",
    "checked_notice",
    "console_url",
    "describe_client_error",
    "docker_manifest",
    "error_code",
    "is_access_denied",
    "local_connection",
    "resolve_target",
    "sandbox_protections_summary",
    "save_figures",
    "signup_notice",
    "validate_dataset_name",
    "validate_image_tag",
    "validate_uid",
    "webhook_body",
]


class ControlPlane(Runs, Workflows):
    """The operator's handle on one deployed control plane."""
