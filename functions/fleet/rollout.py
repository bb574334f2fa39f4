"""Rollout manifests: the READY users a rollout wave walks, written to S3 for a Distributed Map.

A fleet of 50,000 users does not fit in a 256 KiB Step Functions payload, and an inline Map over
it would break the 25,000-event history limit, so the list lives in S3 and the Distributed Map
reads it (`ItemReader`). The canary manifest is written first; the rest is queried only after the
canary passed, so users who became READY in between are still included.
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from fleet import naming, registry
from fleet.errors import FleetError
from fleet.models import READY

ROLLOUT_ID_PATTERN = r"^[0-9a-f]{64}$"
MANIFEST_PREFIX = "rollouts"


class ManifestError(FleetError):
    """The manifest could not be built (a malformed registry entry, an unreadable canary list)."""


class ManifestRequest(BaseModel):
    """What the RolloutImage workflow asks for: one wave of one rollout."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    rollout_id: Annotated[str, Field(pattern=ROLLOUT_ID_PATTERN)]
    wave: Literal["canary", "rest"]


class ManifestEntry(BaseModel):
    """One user in a manifest: just what the per-user child workflow needs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    uid: str
    user_digest: Annotated[str, Field(pattern=naming.DIGEST_PATTERN.pattern)]
    stack_name: str
    function_name: str
    image_digest: str | None = None


class ManifestResult(BaseModel):
    """Where the wave's manifest is, and how many users it holds."""

    bucket: str
    key: str
    count: int


def manifest_key(rollout_id: str, wave: str) -> str:
    return f"{MANIFEST_PREFIX}/{rollout_id}/{wave}.json"


def entry_for(item: dict[str, Any], stage: str) -> ManifestEntry:
    """A registry item as a manifest entry; names fall back to the naming rule."""
    try:
        digest = str(item["user_digest"])
        name = naming.resource_name(stage, digest)
        return ManifestEntry(
            uid=str(item["uid"]),
            user_digest=digest,
            stack_name=str(item.get("stack_name") or name),
            function_name=str(item.get("function_name") or name),
            image_digest=item.get("image_digest"),
        )
    except (KeyError, ValueError) as error:
        raise ManifestError(f"malformed registry entry {item.get('pk')!r}: {error}") from error


def choose_canary(items: list[dict[str, Any]], size: int) -> list[dict[str, Any]]:
    """Users flagged `canary` in the registry; when nobody is flagged, the first `size` users.

    The index returns users sorted by key, so "the first N" is stable across retries.
    """
    flagged = [item for item in items if item.get("canary") is True]
    return flagged if flagged else items[: max(size, 0)]


def _read_manifest(s3: Any, bucket: str, key: str) -> list[dict[str, Any]]:
    try:
        body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        entries = json.loads(body)
    except (s3.exceptions.NoSuchKey, json.JSONDecodeError) as error:
        raise ManifestError(f"cannot read manifest s3://{bucket}/{key}: {error}") from error
    if not isinstance(entries, list):
        raise ManifestError(f"manifest s3://{bucket}/{key} is not a JSON array")
    return entries


def write_manifest(
    request: ManifestRequest,
    *,
    dynamodb: Any,
    s3: Any,
    table_name: str,
    bucket: str,
    stage: str,
    canary_size: int,
) -> ManifestResult:
    """Query the READY users, pick the wave's share, write it as a JSON array, say where."""
    items = list(registry.iter_users(dynamodb, table_name, (READY,)))
    if request.wave == "canary":
        chosen = choose_canary(items, canary_size)
    else:
        canary = _read_manifest(s3, bucket, manifest_key(request.rollout_id, "canary"))
        canary_uids = {str(entry.get("uid")) for entry in canary if isinstance(entry, dict)}
        chosen = [item for item in items if str(item.get("uid")) not in canary_uids]
    entries = [entry_for(item, stage).model_dump() for item in chosen]
    key = manifest_key(request.rollout_id, request.wave)
    s3.put_object(
        Bucket=bucket,
        Key=key,
        Body=json.dumps(entries, separators=(",", ":")).encode("utf-8"),
        ContentType="application/json",
    )
    return ManifestResult(bucket=bucket, key=key, count=len(entries))
