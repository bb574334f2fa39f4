"""Reads of the registry table (schema in docs/architecture.md); the workflows do the writes."""

from __future__ import annotations

from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from fleet import naming
from fleet.errors import UserNotFound
from fleet.models import DELETED, UserRecord


def _plain(item: dict[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values -> Python values."""
    deserializer = TypeDeserializer()
    return {key: deserializer.deserialize(value) for key, value in item.items()}


def get_user(dynamodb: Any, table_name: str, uid: str) -> UserRecord:
    """The user's record; UserNotFound when never provisioned or already deleted."""
    response = dynamodb.get_item(
        TableName=table_name,
        Key={"pk": {"S": naming.registry_key(uid)}},
        ConsistentRead=True,
    )
    item = response.get("Item")
    if not item:
        raise UserNotFound("no sandbox is registered for this user")
    record = UserRecord.model_validate(_plain(item))
    if record.status == DELETED:
        raise UserNotFound("this user's sandbox was deleted")
    return record
