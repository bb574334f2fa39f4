"""Reconcile step: compare Firebase, the registry and the stacks; write the actions to S3.

A Lambda because comparing three paginated inventories is code, not ASL. It only reads and
writes the plan; the Reconcile workflow carries the actions out.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from functools import cache
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.parser import parse
from aws_lambda_powertools.utilities.typing import LambdaContext
from fleet.errors import ConfigurationError, FirebaseUnavailable
from fleet.reconcile import PlanRequest, take_inventory, write_plan

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@cache
def _client(service: str) -> Any:
    """Created on first use, so importing the module makes no client."""
    return boto3.client(service)


def _setting(name: str) -> str:
    value = os.environ.get(name, "")
    if not value:
        raise ConfigurationError(f"environment variable {name} is not set")
    return value


@cache
def _firebase_app(secret_arn: str) -> Any:
    """One firebase-admin app per warm runtime, from the service-account secret (never logged)."""
    import firebase_admin
    from firebase_admin import credentials

    secret = _client("secretsmanager").get_secret_value(SecretId=secret_arn)["SecretString"]
    try:
        info = json.loads(secret)
    except json.JSONDecodeError as error:
        raise ConfigurationError("the Firebase service-account secret is not JSON") from error
    return firebase_admin.initialize_app(credentials.Certificate(info), name="reconcile")


def firebase_lister(secret_arn: str) -> Callable[[], Iterable[Any]] | None:
    """Pages through every Firebase user (1,000 per page) when a service account is configured."""
    if not secret_arn:
        return None

    def list_all() -> Iterable[Any]:
        from firebase_admin import auth, exceptions

        try:
            yield from auth.list_users(app=_firebase_app(secret_arn)).iterate_all()
        except exceptions.FirebaseError as error:
            raise FirebaseUnavailable(f"Firebase list_users failed: {error.code}") from error

    return list_all


@logger.inject_lambda_context
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = parse(event=event, model=PlanRequest)
    stage = _setting("STAGE")
    inventory = take_inventory(
        dynamodb=_client("dynamodb"),
        cloudformation=_client("cloudformation"),
        table_name=_setting("REGISTRY_TABLE_NAME"),
        stage=stage,
        now=datetime.now(UTC),
        list_firebase_users=firebase_lister(
            os.environ.get("FIREBASE_SERVICE_ACCOUNT_SECRET_ARN", "")
        ),
    )
    result = write_plan(
        request,
        inventory=inventory,
        s3=_client("s3"),
        bucket=_setting("MANIFEST_BUCKET_NAME"),
        stage=stage,
    )
    logger.info("reconcile planned", extra={"counts": result.counts, "dry_run": request.dry_run})
    for action, count in result.counts.items():
        metrics.add_metric(name=f"Reconcile_{action}", unit=MetricUnit.Count, value=count)
    return result.model_dump()
