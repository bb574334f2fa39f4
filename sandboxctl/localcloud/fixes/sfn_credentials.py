"""AWS behaviour restored: a state machine's service calls (aws-sdk and optimized tasks, Lambda
invokes, Distributed Map S3 reads/writes) are made with temporary credentials of the machine's
execution role (or the task's ``Credentials.RoleArn``), so the role's least-privilege policy is
what allows or denies them, exactly as on AWS; and they go to the local cloud itself.

moto signs them with the fixed keys ``ak``/``sk`` (rejected under IAM enforcement, or, if they
were valid, not the role's permissions) and sends them to ``http://localhost:$MOTO_PORT``, which
is port 5000 unless set, and may resolve to ::1 while the server listens on 127.0.0.1 only.
"""

from __future__ import annotations

from typing import Any

from botocore.client import BaseClient
from botocore.config import Config
from moto.core.models import botocore_stubber
from moto.stepfunctions.parser.asl.utils import boto_client as moto_boto_client

from sandboxctl.localcloud.fixes._moto_refs import (
    import_tree,
    is_marked,
    mark,
    replace_everywhere,
    require_attr,
    require_params,
)
from sandboxctl.localcloud.fixes._service_role import (
    credentials_for,
    endpoint,
    service_client,
    set_endpoint,
)

FIX = "sfn_credentials"
PRINCIPAL = "states.amazonaws.com"
_PREFIXES = ("moto.stepfunctions.parser",)
_TIMEOUT = moto_boto_client.TimeoutSeconds.DEFAULT_TIMEOUT_SECONDS
# Step Functions does not retry a task's call itself: Retry in the ASL decides.
_CONFIG = Config(
    parameter_validation=False,
    retries={"max_attempts": 0, "total_max_attempts": 1},
    connect_timeout=_TIMEOUT,
    read_timeout=_TIMEOUT,
)

__all__ = ["apply", "boto_client_for", "check", "configure"]


def configure(endpoint_url: str) -> None:
    """Point the interpreter at the local cloud (LocalCloud calls this with its own URL)."""
    set_endpoint(endpoint_url)


def boto_client_for(region: str, service: str, state_credentials: Any = None) -> BaseClient:
    """A client signed as the state's role, as Step Functions itself would call."""
    role_arn = getattr(state_credentials, "role_arn", None)
    creds = credentials_for(role_arn, PRINCIPAL, region)
    url = "" if botocore_stubber.enabled else endpoint()
    return service_client(service, region, creds, _CONFIG, url)


def check() -> None:
    func = require_attr(moto_boto_client, "boto_client_for", FIX)
    require_params(func, ["region", "service", "state_credentials"], FIX)
    require_attr(moto_boto_client, "TimeoutSeconds", FIX)
    from moto.stepfunctions.parser.asl.component.state.exec.state_task import credentials

    require_attr(credentials, "StateCredentials", FIX)


def apply() -> None:
    if is_marked(moto_boto_client.boto_client_for, FIX):
        return
    import_tree("moto.stepfunctions.parser.asl")
    replace_everywhere(moto_boto_client, "boto_client_for", mark(boto_client_for, FIX), _PREFIXES)
