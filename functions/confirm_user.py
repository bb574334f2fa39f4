"""ProvisionUser's "Confirm Firebase user" step: does Firebase know this UID?

This cannot happen in the webhook: the Firebase function is a `before_user_created` blocking
function, so at that moment the user is not saved yet. The workflow asks right after, and its
Retry on FirebaseUserNotFound waits for Firebase to finish creating the user. Without a
service-account secret the check is skipped, and the result says so.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import boto3
from aws_lambda_powertools import Logger, Tracer
from aws_lambda_powertools.utilities.parameters import SecretsProvider
from aws_lambda_powertools.utilities.typing import LambdaContext
from fleet.errors import FleetError
from fleet.firebase_users import FirebaseUserDirectory
from fleet.models import Uid
from pydantic import BaseModel, ConfigDict

logger = Logger()
tracer = Tracer()


class FirebaseUserNotFound(FleetError):
    """Firebase has no such UID (yet): the workflow retries, then records FAILED."""


class ConfirmRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    uid: Uid


def confirm(uid: str, directory: Any | None) -> dict[str, Any]:
    """{"checked": False} without a directory; raises FirebaseUserNotFound for unknown UIDs."""
    if directory is None:
        logger.info("no Firebase service account configured: UID existence not checked")
        return {"checked": False, "exists": None}
    if not directory.exists(uid):
        raise FirebaseUserNotFound("Firebase has no user with this uid")
    return {"checked": True, "exists": True}


@functools.cache
def _directory() -> FirebaseUserDirectory | None:
    arn = os.environ.get("FIREBASE_SERVICE_ACCOUNT_SECRET_ARN", "")
    if not arn:
        return None
    secrets = SecretsProvider(boto3_client=boto3.client("secretsmanager"))
    return FirebaseUserDirectory.from_service_account(str(secrets.get(arn, max_age=3600)))


@logger.inject_lambda_context(clear_state=True)
@tracer.capture_lambda_handler
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    request = ConfirmRequest.model_validate(event)
    return confirm(request.uid, _directory())
