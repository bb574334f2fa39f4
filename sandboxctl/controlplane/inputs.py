"""What an operator types, checked before anything is sent: UIDs, dataset names, image tags,
and the notices the Firebase function would send."""

from __future__ import annotations

import json
import re
import secrets
from datetime import UTC, datetime
from typing import Any

from fleet import naming
from pydantic import BaseModel, ValidationError

from sandboxctl.controlplane.errors import UsageError

# ECR's own tag rule.
IMAGE_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
MAX_DATASET_NAME = 512


def validate_uid(uid: str) -> str:
    """Firebase's rule (1 to 128 characters), the one the webhook and workflows apply."""
    try:
        return naming.validate_uid(uid)
    except naming.InvalidUid as exc:
        raise UsageError(f"not a Firebase UID: {exc}") from None


def validate_dataset_name(name: str) -> str:
    """A key relative to the user's prefix: no absolute path, no `..`, no empty segment."""
    if not name or len(name) > MAX_DATASET_NAME:
        raise UsageError(f"a dataset name is 1 to {MAX_DATASET_NAME} characters")
    if name.startswith("/") or "\\" in name or any(ord(c) < 32 for c in name):
        raise UsageError(f"dataset name {name!r} must be a relative key without backslashes")
    if any(part in ("", ".", "..") for part in name.split("/")):
        raise UsageError(f"dataset name {name!r} must not contain empty, '.' or '..' segments")
    return name


def validate_image_tag(tag: str) -> str:
    if not IMAGE_TAG.match(tag):
        raise UsageError(
            f"image tag {tag!r} is invalid: 1-128 of letters, digits, '_', '.', '-' "
            "(not starting with '.' or '-')"
        )
    return tag


def docker_manifest(tag: str) -> str:
    """A fresh image manifest (new config and layer digests) so each push is a new image."""
    config = secrets.token_hex(32)
    layer = secrets.token_hex(32)
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
        "config": {
            "mediaType": "application/vnd.docker.container.image.v1+json",
            "size": 1469,
            "digest": f"sha256:{config}",
        },
        "layers": [
            {
                "mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip",
                "size": 3_370_628,
                "digest": f"sha256:{layer}",
            }
        ],
        "annotations": {"org.opencontainers.image.ref.name": tag},
    }
    return json.dumps(manifest, separators=(",", ":"))


def signup_notice(
    uid: str, email: str | None, event_id: str, created_at: datetime
) -> dict[str, Any]:
    """The notice firebase/main.py sends, field for field and in the same order."""
    return {
        "type": "user.created",
        "uid": uid,
        "email": email,
        "event_id": event_id,
        "created_at": created_at.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }


def webhook_body(notice: dict[str, Any]) -> bytes:
    """Serialised as firebase/main.py does (compact, ASCII-escaped): the same bytes get signed."""
    return json.dumps(notice, separators=(",", ":")).encode("utf-8")


def checked_notice(model: type[BaseModel], notice: dict[str, Any]) -> dict[str, Any]:
    """Validate with the webhook's own model, so a bad value fails here and nothing is sent."""
    try:
        model.model_validate(notice)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field_name = ".".join(str(p) for p in first["loc"])
        raise UsageError(f"invalid {field_name}: {first['msg']}") from exc
    return notice
