"""Every AWS name of a user derives from the user digest: the only implementation of that rule.

Firebase UIDs are up to 128 arbitrary characters, AWS names are short and restricted, and IAM
compares role names case-insensitively, so `alice` and `Alice` must not map to names that differ
only in case. Lowercase base32 of SHA-256 keeps 130 bits in 26 characters of `[a-z2-7]`.
"""

from __future__ import annotations

import base64
import hashlib
import re

DIGEST_LENGTH = 26
MAX_UID_LENGTH = 128
NAME_PREFIX = "sbx"
DIGEST_PATTERN = re.compile(r"^[a-z2-7]{26}$")
STAGE_PATTERN = re.compile(r"^[a-z][a-z0-9]{0,9}$")


class InvalidUid(ValueError):
    """The value cannot be a Firebase UID (empty or longer than 128 characters)."""


class InvalidStage(ValueError):
    """The stage name would not fit the naming scheme."""


def validate_uid(uid: str) -> str:
    """Reject what Firebase would never issue, so no name is derived from garbage."""
    if not isinstance(uid, str) or not uid:
        raise InvalidUid("uid must be a non-empty string")
    if len(uid) > MAX_UID_LENGTH:
        raise InvalidUid(f"uid must be at most {MAX_UID_LENGTH} characters")
    return uid


def user_digest(uid: str) -> str:
    """Short, case-safe, collision-resistant name part for a UID (see docs/architecture.md)."""
    validate_uid(uid)
    raw = hashlib.sha256(uid.encode("utf-8")).digest()
    return base64.b32encode(raw).decode("ascii").lower().rstrip("=")[:DIGEST_LENGTH]


def _check(stage: str, digest: str) -> None:
    if not STAGE_PATTERN.match(stage):
        raise InvalidStage(f"stage {stage!r} must match {STAGE_PATTERN.pattern}")
    if not DIGEST_PATTERN.match(digest):
        raise ValueError(f"{digest!r} is not a user digest")


def resource_name(stage: str, digest: str) -> str:
    """Stack, function and role name: `sbx-<stage>-<digest>` (at most 41 characters)."""
    _check(stage, digest)
    return f"{NAME_PREFIX}-{stage}-{digest}"


def stack_name(stage: str, digest: str) -> str:
    return resource_name(stage, digest)


def function_name(stage: str, digest: str) -> str:
    return resource_name(stage, digest)


def role_name(stage: str, digest: str) -> str:
    return resource_name(stage, digest)


def log_group_name(stage: str, digest: str) -> str:
    return f"/aws/lambda/{resource_name(stage, digest)}"


def user_prefix(digest: str) -> str:
    """The user's S3 prefix in the data bucket, with the trailing slash IAM policies rely on."""
    if not DIGEST_PATTERN.match(digest):
        raise ValueError(f"{digest!r} is not a user digest")
    return f"users/{digest}/"


def registry_key(uid: str) -> str:
    """Partition key of a user's registry item."""
    return f"USER#{validate_uid(uid)}"
