"""RolloutImage step: write one wave's S3 manifest of READY users for the Distributed Map.

A Lambda because the list must be paged out of DynamoDB into S3: it does not fit in a state's
256 KiB payload, and ASL cannot page a query into an object.
"""

from __future__ import annotations

import os
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from fleet.errors import ConfigurationError
from fleet.rollout import ManifestRequest, write_manifest

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def _clients() -> tuple[Any, Any]:
    """Created on first use, so importing the module (tests, cold start) makes no client."""
    return boto3.client("dynamodb"), boto3.client("s3")


def _setting(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(event=event, model=ManifestRequest)
    dynamodb, s3 = _clients()
    canary_size = int(os.environ.get("CANARY_SIZE", "5"))
    result = write_manifest(
        request,
        dynamodb=dynamodb,
        s3=s3,
        table_name=_setting("REGISTRY_TABLE_NAME"),
        bucket=_setting("MANIFEST_BUCKET_NAME"),
        stage=_setting("STAGE"),
        canary_size=canary_size,
    )
    logger.info("manifest written", extra={"wave": request.wave, "count": result.count})
    metrics.add_metric(
        name=f"RolloutManifest_{request.wave}", unit=MetricUnit.Count, value=result.count
    )
    return result.model_dump()
