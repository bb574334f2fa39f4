"""Where the control plane lives: flags, environment and a local cloud's connection file."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandboxctl.controlplane.errors import SandboxctlError, UsageError

DEFAULT_STACK = "sandbox-fleet-dev"
DEFAULT_REGION = "us-east-1"


@dataclass(frozen=True)
class Target:
    """Where the control plane lives. ``endpoint`` None means real AWS."""

    stack: str = DEFAULT_STACK
    region: str = DEFAULT_REGION
    endpoint: str | None = None
    access_key_id: str | None = None
    secret_access_key: str | None = field(default=None, repr=False)  # never in logs or errors

    @property
    def on_aws(self) -> bool:
        return self.endpoint is None


def local_connection(endpoint: str) -> dict[str, Any] | None:
    """Connection details `sandboxctl local up` left for the local cloud at `endpoint`, if any."""
    from sandboxctl.localcloud.server import LocalCloudError, load_connection

    try:
        return load_connection(endpoint)
    except LocalCloudError:
        return None
    except (OSError, ValueError) as exc:
        raise SandboxctlError(f"cannot read the local cloud's connection file: {exc}") from exc


def resolve_target(
    endpoint: str | None,
    stack: str | None,
    region: str | None,
    connection: Callable[[str], dict[str, Any] | None] = local_connection,
) -> Target:
    """Combine flags, environment and a local cloud's connection file into a Target.

    A local cloud's operator keys come from the file `sandboxctl local up` writes for its port;
    without one, the default credential chain applies (real AWS, or keys set by the caller).
    """
    endpoint = endpoint or os.environ.get("SANDBOXCTL_ENDPOINT") or None
    stack = stack or os.environ.get("SANDBOXCTL_STACK") or None
    keys: tuple[str | None, str | None] = (None, None)
    if endpoint:
        if not re.match(r"^https?://[^\s/]+$", endpoint.rstrip("/")):
            raise UsageError(
                f"--endpoint must be an http(s) URL such as http://127.0.0.1:PORT, got {endpoint!r}"
            )
        endpoint = endpoint.rstrip("/")
        info = connection(endpoint)
        if info:
            keys = (info.get("aws_access_key_id"), info.get("aws_secret_access_key"))
            stack = stack or info.get("stack_name")
            region = region or info.get("region")
    region = region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or None
    return Target(
        stack=stack or DEFAULT_STACK,
        region=region or DEFAULT_REGION,
        endpoint=endpoint,
        access_key_id=keys[0],
        secret_access_key=keys[1],
    )
