"""The registry table's shape and its reads (schema in docs/architecture.md).

One home for what every reader needs: key prefixes, the status lists, the `ByStatus` query and
item decoding. Clients are passed in, so the control-plane functions, the reconciler, the rollout
manifest and `sandboxctl` share these with no configuration of their own. The workflows do the
writes.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Iterator, Sequence
from decimal import Decimal
from typing import Any

from boto3.dynamodb.types import TypeDeserializer

from fleet import naming
from fleet.errors import RegistryUnavailable, UserNotFound
from fleet.models import DELETED, DELETING, FAILED, PROVISIONING, READY, UserRecord

USER_PREFIX = "USER#"
ROLLOUT_PREFIX = "ROLLOUT#"
DESIRED_IMAGE_KEY = "CONFIG#image"
USER_STATUSES = (PROVISIONING, READY, FAILED, DELETING, DELETED)
# Users who still have (or are getting, or losing) a stack.
ACTIVE_STATUSES = (PROVISIONING, READY, FAILED, DELETING)
ROLLOUT_STATUSES = ("RUNNING", "COMPLETED", "HALTED", "SUPERSEDED")
BY_STATUS_INDEX = "ByStatus"

_DESERIALIZER = TypeDeserializer()
UNPROCESSED_RETRIES = 5


def plain(value: Any) -> Any:
    """DynamoDB Decimals and sets as JSON-friendly Python values."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, set):
        return sorted(plain(v) for v in value)
    return value


def decode_item(raw: dict[str, Any]) -> dict[str, Any]:
    """A DynamoDB item (attribute values) as plain Python values."""
    return {key: plain(_DESERIALIZER.deserialize(value)) for key, value in raw.items()}


def rollout_key(image_digest: str) -> str:
    """One rollout per digest: its id is the digest's hex."""
    return ROLLOUT_PREFIX + image_digest.removeprefix("sha256:")


def read_item(dynamodb: Any, table_name: str, pk: str) -> dict[str, Any] | None:
    """One item by key (strongly consistent), decoded; None when absent."""
    response = dynamodb.get_item(TableName=table_name, Key={"pk": {"S": pk}}, ConsistentRead=True)
    item = response.get("Item")
    return decode_item(item) if item else None


def query_status(
    dynamodb: Any, table_name: str, status: str, prefix: str = USER_PREFIX
) -> Iterator[dict[str, Any]]:
    """Items in one status whose key starts with `prefix`, page by page (never a Scan)."""
    pages = dynamodb.get_paginator("query").paginate(
        TableName=table_name,
        IndexName=BY_STATUS_INDEX,
        KeyConditionExpression="#status = :status AND begins_with(pk, :prefix)",
        ExpressionAttributeNames={"#status": "status"},
        ExpressionAttributeValues={":status": {"S": status}, ":prefix": {"S": prefix}},
    )
    for page in pages:
        for item in page.get("Items", []):
            yield decode_item(item)


def iter_users(
    dynamodb: Any, table_name: str, statuses: Iterable[str] = ACTIVE_STATUSES
) -> Iterator[dict[str, Any]]:
    """Every user in `statuses`, one ByStatus query each."""
    for status in statuses:
        yield from query_status(dynamodb, table_name, status, USER_PREFIX)


def read_raw_items(
    dynamodb: Any, table_name: str, pks: Sequence[str], sleep: Any = time.sleep
) -> dict[str, dict[str, Any]]:
    """Several items by key in one strongly consistent BatchGetItem, as DynamoDB returns them
    (attribute values), by key; absent items are left out. Unprocessed keys are asked again
    with backoff; RegistryUnavailable if some are still left."""
    wanted = [{"pk": {"S": pk}} for pk in pks]
    found: dict[str, dict[str, Any]] = {}
    for attempt in range(UNPROCESSED_RETRIES + 1):
        response = dynamodb.batch_get_item(
            RequestItems={table_name: {"Keys": wanted, "ConsistentRead": True}}
        )
        for item in response.get("Responses", {}).get(table_name, []):
            found[item["pk"]["S"]] = item
        wanted = response.get("UnprocessedKeys", {}).get(table_name, {}).get("Keys", [])
        if not wanted:
            return found
        if attempt < UNPROCESSED_RETRIES:
            sleep(random.uniform(0, 0.05 * 2**attempt))  # noqa: S311 - jitter only
    raise RegistryUnavailable(f"{len(wanted)} registry item(s) unread after retries")


def user_record(item: dict[str, Any] | None) -> UserRecord:
    """A user item (decoded or as DynamoDB returns it) as a record; UserNotFound when absent
    or deleted."""
    if not item:
        raise UserNotFound("no sandbox is registered for this user")
    plain_item = decode_item(item) if isinstance(item.get("pk"), dict) else item
    record = UserRecord.model_validate(plain_item)
    if record.status == DELETED:
        raise UserNotFound("this user's sandbox was deleted")
    return record


def get_user(dynamodb: Any, table_name: str, uid: str) -> UserRecord:
    """The user's record; UserNotFound when never provisioned or already deleted."""
    return user_record(read_item(dynamodb, table_name, naming.registry_key(uid)))
