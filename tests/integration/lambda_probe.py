"""A Lambda handler the local cloud's tests deploy as an image function's command.

It reports where and as whom it runs, and tries the S3 reads its event asks for, so a test can
see the process, the credentials and what IAM allowed from inside a function.
"""

from __future__ import annotations

import os
import time
from typing import Any

import boto3
from botocore.exceptions import ClientError

_COLD_START = time.time()


class ProbeFailure(Exception):
    """Raised on request, to see how the local cloud reports a handler exception."""


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if event.get("raise"):
        raise ProbeFailure(event["raise"])
    if event.get("sleep"):
        time.sleep(float(event["sleep"]))
    reads: dict[str, str] = {}
    s3 = boto3.client("s3")
    for key in event.get("read", []):
        try:
            s3.get_object(Bucket=event["bucket"], Key=key)
            reads[key] = "allowed"
        except ClientError as exc:
            reads[key] = exc.response["Error"]["Code"]
    if event.get("write"):
        s3.put_object(Bucket=event["bucket"], Key=event["write"], Body=b"written by the probe")
    return {
        "pid": os.getpid(),
        "cold_start": _COLD_START,
        "identity": boto3.client("sts").get_caller_identity()["Arn"],
        "access_key": os.environ.get("AWS_ACCESS_KEY_ID"),
        "endpoint": os.environ.get("AWS_ENDPOINT_URL"),
        "region": os.environ.get("AWS_DEFAULT_REGION"),
        "greeting": os.environ.get("GREETING"),
        "function": context.function_name,
        "remaining_ms": context.get_remaining_time_in_millis(),
        "reads": reads,
    }
