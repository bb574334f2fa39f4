"""A per-user cap on concurrent runs: leases in one registry item, with expiry.

Lambda's reserved concurrency cannot do this for thousands of users (every reservation is taken
from the account's pool, which must keep 100 unreserved), so RunCode holds a lease per run in
the item ``RUNS#<uid>``: ``leases`` maps request id -> expiry (epoch seconds). A run takes a
lease only while fewer than the cap are live, with an optimistic version check so concurrent
requests cannot both take the last slot; it gives the lease back when it ends. A run that dies
without releasing (a crashed or timed-out RunCode) stops counting at its expiry, so no slot leaks.
The item has no ``status``, so it never appears in the ByStatus index.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botocore.exceptions import ClientError

LEASE_PREFIX = "RUNS#"
MAX_ATTEMPTS = 12
_UNREAD: Any = object()


class TooManyRuns(Exception):
    """The user already has `cap` runs in flight; `retry_after` seconds is a fair wait."""

    def __init__(self, cap: int, retry_after: int) -> None:
        super().__init__(f"you already have {cap} runs in progress")
        self.cap, self.retry_after = cap, retry_after


@dataclass
class RunLeases:
    dynamodb: Any
    table_name: str
    cap: int
    ttl_seconds: float
    now: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep

    @staticmethod
    def pk(uid: str) -> str:
        return LEASE_PREFIX + uid

    def _key(self, uid: str) -> dict[str, Any]:
        return {"pk": {"S": self.pk(uid)}}

    def acquire(self, uid: str, request_id: str, current: Any = _UNREAD) -> None:
        """Take a lease for `request_id`, or raise TooManyRuns (nothing written).

        `current` is the lease item as the caller just read it (None: there is none), which
        saves the first read; after a lost race the item is read again.
        """
        item = current
        for attempt in range(MAX_ATTEMPTS):
            if item is _UNREAD:
                item = self.dynamodb.get_item(
                    TableName=self.table_name, Key=self._key(uid), ConsistentRead=True
                ).get("Item")
            now = self.now()
            leases = {
                rid: float(value["N"])
                for rid, value in (item or {}).get("leases", {}).get("M", {}).items()
            }
            live = {rid: expiry for rid, expiry in leases.items() if expiry > now}
            if len(live) >= self.cap:
                soonest = min(live.values()) - now
                raise TooManyRuns(self.cap, max(1, min(math.ceil(soonest), 5)))
            live[request_id] = now + self.ttl_seconds
            version = int(item["v"]["N"]) if item and "v" in item else 0
            try:
                self.dynamodb.put_item(
                    TableName=self.table_name,
                    Item={
                        **self._key(uid),
                        "leases": {"M": {k: {"N": f"{v:.3f}"} for k, v in live.items()}},
                        "v": {"N": str(version + 1)},
                        # The registry's TTL-free table keeps one small item per active user.
                    },
                    ConditionExpression="attribute_not_exists(pk) OR v = :v",
                    ExpressionAttributeValues={":v": {"N": str(version)}},
                )
                return
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
            # Another request changed the leases between our read and write: read again.
            item = _UNREAD
            self.sleep(random.uniform(0, 0.01 * (attempt + 1)))  # noqa: S311 - jitter only
        raise TooManyRuns(self.cap, 1)

    def release(self, uid: str, request_id: str) -> None:
        """Give the lease back (bumping the version, so a concurrent acquire re-reads)."""
        self.dynamodb.update_item(
            TableName=self.table_name,
            Key=self._key(uid),
            UpdateExpression="REMOVE leases.#rid ADD v :one",
            ConditionExpression="attribute_exists(pk)",
            ExpressionAttributeNames={"#rid": request_id},
            ExpressionAttributeValues={":one": {"N": "1"}},
        )
