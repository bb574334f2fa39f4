"""POST /run: run the caller's code in the caller's own sandbox function, and nobody else's.

The UID comes only from the JWT claims API Gateway verified; the function name is derived from
it (sbx-<stage>-<digest>), so no request field can point at another user's function.
"""

from __future__ import annotations

import functools
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from botocore.exceptions import ClientError
from fleet import naming, registry
from fleet.errors import RegistryUnavailable, UserNotFound
from fleet.http import HttpError, body_bytes, caller_uid, parse_body, parse_event, response
from fleet.leases import RunLeases, TooManyRuns
from fleet.models import FAILED, PROVISIONING, READY, RunRequest

MAX_BODY_BYTES = 96 * 1024
# Server-side caps: API Gateway gives an integration 30 s, so a run must end well before.
LIMIT_CAPS = {"timeout_s": 25.0, "max_output_bytes": 1024 * 1024}
RETRY_AFTER_PROVISIONING = "10"
DEFAULT_RUNS_PER_USER = 10
# A lease outlives any run (RunCode's own timeout is 29 s), so only a crashed run's slot expires.
LEASE_SECONDS = 35.0

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@dataclass
class Dependencies:
    dynamodb: Any
    lambda_client: Any
    table_name: str
    stage: str
    caps: dict[str, float] | None = None
    runs_per_user: int = DEFAULT_RUNS_PER_USER


def sandbox_payload(request: RunRequest, request_id: str, caps: dict[str, float]) -> dict:
    """The sandbox runtime's event, with every limit capped here whatever the caller asked."""
    payload: dict[str, Any] = {"code": request.code, "request_id": request_id}
    if request.dataset is not None:
        payload["dataset"] = request.dataset
    if request.datasets:
        payload["datasets"] = request.datasets
    payload["timeout_s"] = min(request.timeout_s or caps["timeout_s"], caps["timeout_s"])
    wanted_output = request.max_output_bytes or int(caps["max_output_bytes"])
    payload["max_output_bytes"] = int(min(wanted_output, caps["max_output_bytes"]))
    return payload


def run(uid: str, request: RunRequest, request_id: str, deps: Dependencies) -> dict[str, Any]:
    """Look the user up, refuse unless READY, invoke the user's own function.

    The user's registry item and their run leases are read together (one BatchGetItem)."""
    user_pk, lease_pk = naming.registry_key(uid), RunLeases.pk(uid)
    try:
        items = registry.read_raw_items(deps.dynamodb, deps.table_name, [user_pk, lease_pk])
        record = registry.user_record(items.get(user_pk))
    except UserNotFound:
        raise HttpError(404, "you have no sandbox yet; sign up first") from None
    except RegistryUnavailable:
        busy = "the registry is busy; try again shortly"
        raise HttpError(503, busy, {"retry-after": "1"}) from None
    if record.status == PROVISIONING:
        raise HttpError(
            409,
            "your sandbox is being created; try again shortly",
            {"retry-after": RETRY_AFTER_PROVISIONING},
        )
    if record.status == FAILED:
        raise HttpError(404, "your sandbox could not be created; it is being retried")
    if record.status != READY:
        raise HttpError(404, "you have no sandbox")

    digest = naming.user_digest(uid)
    if record.user_digest != digest:
        logger.error("registry digest does not match the uid", extra={"user_digest": digest})
        raise HttpError(500, "the registry is inconsistent")
    function = naming.function_name(deps.stage, digest)
    payload = sandbox_payload(request, request_id, deps.caps or LIMIT_CAPS)
    leases = RunLeases(deps.dynamodb, deps.table_name, deps.runs_per_user, LEASE_SECONDS)
    try:
        leases.acquire(uid, request_id, current=items.get(lease_pk))
    except TooManyRuns as busy:
        metrics.add_metric(name="RunsRefusedPerUserCap", unit=MetricUnit.Count, value=1)
        raise HttpError(
            429,
            f"{busy}; at most {busy.cap} at once, try again shortly",
            {"retry-after": str(busy.retry_after)},
        ) from None
    try:
        return _invoke(deps, function, payload)
    finally:
        try:
            leases.release(uid, request_id)
        except ClientError:
            # The lease expires on its own (LEASE_SECONDS); the run's answer still stands.
            logger.warning("run lease not released", extra={"function": function})


def _invoke(deps: Dependencies, function: str, payload: dict[str, Any]) -> dict[str, Any]:
    try:
        result = deps.lambda_client.invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=json.dumps(payload).encode(),
        )
    except ClientError as error:
        code = error.response.get("Error", {}).get("Code", "")
        if code in ("TooManyRequestsException", "EC2ThrottledException"):
            raise HttpError(429, "too many runs right now", {"retry-after": "1"}) from None
        if code == "ResourceNotFoundException":
            logger.error("READY user has no function", extra={"function": function})
            raise HttpError(503, "your sandbox is being repaired", {"retry-after": "60"}) from None
        raise
    body = result["Payload"].read()
    if result.get("FunctionError"):
        logger.warning("sandbox function error", extra={"function": function})
        metrics.add_metric(name="SandboxFunctionError", unit=MetricUnit.Count, value=1)
        raise HttpError(502, "the sandbox failed before it could answer")
    envelope: dict[str, Any] = json.loads(body)
    return envelope


def handle(raw_event: dict[str, Any], deps: Dependencies) -> dict[str, Any]:
    try:
        event = parse_event(raw_event)
        uid = caller_uid(event)
        request = parse_body(body_bytes(event, MAX_BODY_BYTES), RunRequest)
        envelope = run(uid, request, event.requestContext.requestId, deps)
    except HttpError as error:
        return error.to_response()
    metrics.add_metric(name="Runs", unit=MetricUnit.Count, value=1)
    return response(200, envelope)


@functools.cache
def _dependencies() -> Dependencies:
    # The sandbox may run up to the cap; the client must wait at least that long.
    lambda_config = Config(read_timeout=30, retries={"mode": "standard", "max_attempts": 2})
    return Dependencies(
        dynamodb=boto3.client("dynamodb"),
        lambda_client=boto3.client("lambda", config=lambda_config),
        table_name=os.environ["REGISTRY_TABLE_NAME"],
        stage=os.environ["STAGE"],
        runs_per_user=int(os.environ.get("RUN_CONCURRENCY_PER_USER", DEFAULT_RUNS_PER_USER)),
    )


dependencies: Callable[[], Dependencies] = _dependencies


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, dependencies())
