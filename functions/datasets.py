"""POST /datasets: a presigned PUT for one key under the caller's own prefix.

The URL is signed for exactly that key, content type and size, and expires in five minutes; the
UID comes only from the verified JWT claims.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config
from fleet import naming, registry
from fleet.errors import UserNotFound
from fleet.http import HttpError, body_bytes, caller_uid, parse_body, parse_event, response
from fleet.models import DELETING, DatasetUploadRequest

MAX_BODY_BYTES = 4 * 1024
MAX_DATASET_BYTES = 512 * 1024 * 1024
URL_EXPIRES_SECONDS = 300

logger = Logger()
tracer = Tracer()
metrics = Metrics()


@dataclass
class Dependencies:
    dynamodb: Any
    s3: Any
    table_name: str
    bucket: str


def presign(uid: str, request: DatasetUploadRequest, deps: Dependencies) -> dict[str, Any]:
    """A PUT URL for users/<digest>/<name>, for registered users that are not being deleted."""
    if request.size > MAX_DATASET_BYTES:
        raise HttpError(413, f"datasets are limited to {MAX_DATASET_BYTES} bytes")
    try:
        record = registry.get_user(deps.dynamodb, deps.table_name, uid)
    except UserNotFound:
        raise HttpError(404, "you have no sandbox yet; sign up first") from None
    if record.status == DELETING:
        raise HttpError(404, "your sandbox is being deleted")
    key = naming.user_prefix(naming.user_digest(uid)) + request.name
    url = deps.s3.generate_presigned_url(
        "put_object",
        Params={
            "Bucket": deps.bucket,
            "Key": key,
            "ContentType": request.content_type,
            "ContentLength": request.size,
        },
        ExpiresIn=URL_EXPIRES_SECONDS,
        HttpMethod="PUT",
    )
    return {
        "method": "PUT",
        "url": url,
        "dataset": request.name,
        "headers": {"content-type": request.content_type, "content-length": str(request.size)},
        "expires_in": URL_EXPIRES_SECONDS,
    }


def handle(raw_event: dict[str, Any], deps: Dependencies) -> dict[str, Any]:
    try:
        event = parse_event(raw_event)
        uid = caller_uid(event)
        request = parse_body(body_bytes(event, MAX_BODY_BYTES), DatasetUploadRequest)
        result = presign(uid, request, deps)
    except HttpError as error:
        return error.to_response()
    metrics.add_metric(name="DatasetUploadsSigned", unit=MetricUnit.Count, value=1)
    return response(200, result)


@functools.cache
def _dependencies() -> Dependencies:
    return Dependencies(
        dynamodb=boto3.client("dynamodb"),
        # SigV4 so the content length and type are part of the signature.
        s3=boto3.client("s3", config=Config(signature_version="s3v4")),
        table_name=os.environ["REGISTRY_TABLE_NAME"],
        bucket=os.environ["DATA_BUCKET_NAME"],
    )


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return handle(event, _dependencies())
