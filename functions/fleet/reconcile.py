"""Reconcile planning: compare Firebase users, the registry and the stacks, and list what to fix.

The plan is pure: it reads, decides and writes an S3 manifest; the Reconcile workflow carries
out each action in a Distributed Map child (events for provision/deprovision, stack or function
updates for stale images), so a dry run is exactly the plan. It is safe at any time: a running
rollout owns image changes (the plan then only checks digests), and every action goes through the
same idempotent workflows a signup or deletion would.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool

from fleet import naming, registry
from fleet.models import DELETING, FAILED, PROVISIONING, READY, iso_utc

RECONCILE_PREFIX = "reconcile"
# A FAILED user is retried after 15 min, 30 min, 1 h, ... at most daily, at most 8 times.
RETRY_BASE = timedelta(minutes=15)
RETRY_CAP = timedelta(hours=24)
MAX_RECONCILE_RETRIES = 8
# A deletion or provisioning still unfinished after this long is stuck, not in progress.
STUCK_AFTER = timedelta(hours=1)
REPORT_LIMIT = 50

Action = Literal["provision", "retry", "repair", "deprovision", "check_image"]


class PlanRequest(BaseModel):
    """What the Reconcile workflow passes: its own id, and whether to only report."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reconcile_id: Annotated[str, Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9_-]+$")]
    dry_run: StrictBool = False


class PlannedAction(BaseModel):
    """One thing to do for one user; the child workflow switches on `action`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action: Action
    uid: str
    user_digest: str
    stack_name: str
    function_name: str
    email: str | None = None
    reason: str
    event_id: str
    at: str


class PlanResult(BaseModel):
    """Where the actions are, what was found, and the image the fleet should run."""

    bucket: str
    key: str
    count: int
    counts: dict[str, int]
    desired_digest: str | None
    desired_image_uri: str | None
    rollout_running: bool
    firebase_checked: bool
    orphan_stacks: list[str]
    stuck: list[str]


@dataclass
class Inventory:
    """Everything the plan compares, as read at one moment."""

    users: list[dict[str, Any]]
    stacks: dict[str, str]  # stack name -> status, live stacks only
    firebase: dict[str, str | None] | None  # uid -> email, None when not configured
    desired: dict[str, Any] | None
    rollout_status: str | None
    now: datetime
    extra: dict[str, Any] = field(default_factory=dict)


def list_user_stacks(cloudformation: Any, stage: str) -> dict[str, str]:
    """Live stacks named `sbx-<stage>-…` (DELETE_COMPLETE ones are history, not stacks)."""
    prefix = f"{naming.NAME_PREFIX}-{stage}-"
    stacks: dict[str, str] = {}
    for page in cloudformation.get_paginator("list_stacks").paginate():
        for summary in page.get("StackSummaries", []):
            name, status = summary["StackName"], summary["StackStatus"]
            if name.startswith(prefix) and status != "DELETE_COMPLETE":
                stacks[name] = status
    return stacks


def _parse_time(value: Any) -> datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def retry_due(user: dict[str, Any], now: datetime) -> bool:
    """Exponential backoff between reconcile retries of a FAILED user, with a cap on tries."""
    tries = int(user.get("reconcile_retries") or 0)
    if tries >= MAX_RECONCILE_RETRIES:
        return False
    last = _parse_time(user.get("updated_at"))
    if last is None:
        return True
    wait = min(RETRY_BASE * (2**tries), RETRY_CAP)
    return now - last >= wait


def _stuck(user: dict[str, Any], now: datetime) -> bool:
    last = _parse_time(user.get("updated_at"))
    return last is not None and now - last >= STUCK_AFTER


# An action, its reason, and whether it carries the user's email (for a new signup event).
Decision = tuple[Action, str, bool]


def _decide(
    user: dict[str, Any], uid: str, status: str, stack_name: str, inventory: Inventory
) -> Decision | str | None:
    """What one registry user needs: an action, a finding only reported (a str), or nothing."""
    if status == DELETING:
        if _stuck(user, inventory.now):
            return "deprovision", "deletion unfinished for over an hour", False
        return None
    if inventory.firebase is not None and uid not in inventory.firebase:
        return "deprovision", "user no longer exists in Firebase", False
    if status == FAILED:
        if retry_due(user, inventory.now):
            return "retry", f"FAILED: {user.get('last_error') or 'no reason'}", True
        return None
    if status == PROVISIONING:
        if _stuck(user, inventory.now) and stack_name not in inventory.stacks:
            return f"{uid!r} PROVISIONING for over an hour without a stack"
        return None
    if status != READY:
        return None
    stack_status = inventory.stacks.get(stack_name)
    if stack_status is None:
        return "repair", "READY but its stack is gone", True
    if stack_status.endswith("_FAILED") or stack_status == "ROLLBACK_COMPLETE":
        return f"{uid!r} stack {stack_name} is {stack_status}"
    return "check_image", "READY: compare image digests", False


def plan(
    inventory: Inventory, stage: str, reconcile_id: str
) -> tuple[list[PlannedAction], dict[str, Any]]:
    """Decide every action; return them with the findings that are only reported."""
    now_text = iso_utc(inventory.now)
    actions: list[PlannedAction] = []
    stuck: list[str] = []
    known: set[str] = set()
    known_stacks: set[str] = set()

    def add(
        action: Action, uid: str, digest: str, reason: str, email: str | None = None, **names: str
    ) -> None:
        name = naming.resource_name(stage, digest)
        actions.append(
            PlannedAction(
                action=action,
                uid=uid,
                user_digest=digest,
                stack_name=names.get("stack_name") or name,
                function_name=names.get("function_name") or name,
                email=email,
                reason=reason,
                event_id=f"reconcile-{reconcile_id}-{digest}",
                at=now_text,
            )
        )

    for user in inventory.users:
        uid, status = str(user.get("uid", "")), str(user.get("status", ""))
        digest = str(user.get("user_digest", ""))
        if not uid or not naming.DIGEST_PATTERN.match(digest):
            stuck.append(f"malformed registry entry {user.get('pk')!r}")
            continue
        known.add(uid)
        names = {
            "stack_name": str(user.get("stack_name") or ""),
            "function_name": str(user.get("function_name") or ""),
        }
        stack_name = names["stack_name"] or naming.resource_name(stage, digest)
        known_stacks.add(stack_name)
        email = user.get("email") if isinstance(user.get("email"), str) else None
        decision = _decide(user, uid, status, stack_name, inventory)
        if isinstance(decision, str):
            stuck.append(decision)
        elif decision is not None:
            action, reason, with_email = decision
            add(action, uid, digest, reason, email if with_email else None, **names)

    if inventory.firebase is not None:
        for uid, email in sorted(inventory.firebase.items()):
            if uid not in known:
                add(
                    "provision",
                    uid,
                    naming.user_digest(uid),
                    "in Firebase, not in the registry",
                    email,
                )
                known_stacks.add(naming.resource_name(stage, naming.user_digest(uid)))

    orphans = sorted(name for name in inventory.stacks if name not in known_stacks)
    return actions, {"stuck": stuck, "orphan_stacks": orphans}


def firebase_users(list_users: Callable[[], Iterable[Any]]) -> dict[str, str | None]:
    """uid -> email from firebase-admin's paginated `list_users().iterate_all()`."""
    return {str(user.uid): getattr(user, "email", None) for user in list_users()}


def write_plan(
    request: PlanRequest,
    *,
    inventory: Inventory,
    s3: Any,
    bucket: str,
    stage: str,
) -> PlanResult:
    actions, findings = plan(inventory, stage, request.reconcile_id)
    key = f"{RECONCILE_PREFIX}/{request.reconcile_id}/actions.json"
    body = json.dumps([action.model_dump() for action in actions], separators=(",", ":"))
    s3.put_object(Bucket=bucket, Key=key, Body=body.encode("utf-8"), ContentType="application/json")
    desired = inventory.desired or {}
    return PlanResult(
        bucket=bucket,
        key=key,
        count=len(actions),
        counts=dict(Counter(action.action for action in actions)),
        desired_digest=desired.get("image_digest"),
        desired_image_uri=desired.get("image_uri"),
        rollout_running=inventory.rollout_status == "RUNNING",
        firebase_checked=inventory.firebase is not None,
        orphan_stacks=findings["orphan_stacks"][:REPORT_LIMIT],
        stuck=findings["stuck"][:REPORT_LIMIT],
    )


def take_inventory(
    *,
    dynamodb: Any,
    cloudformation: Any,
    table_name: str,
    stage: str,
    now: datetime,
    list_firebase_users: Callable[[], Iterable[Any]] | None,
) -> Inventory:
    """Read the desired image, its rollout, every user, every user stack and Firebase."""
    desired = registry.read_item(dynamodb, table_name, registry.DESIRED_IMAGE_KEY)
    rollout = (
        registry.read_item(
            dynamodb, table_name, f"{registry.ROLLOUT_PREFIX}{desired['rollout_id']}"
        )
        if desired and desired.get("rollout_id")
        else None
    )
    return Inventory(
        users=list(registry.iter_users(dynamodb, table_name)),
        stacks=list_user_stacks(cloudformation, stage),
        firebase=firebase_users(list_firebase_users) if list_firebase_users else None,
        desired=desired,
        rollout_status=str(rollout.get("status")) if rollout else None,
        now=now,
    )
