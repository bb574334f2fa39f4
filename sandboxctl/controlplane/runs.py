"""Runs: a user's data files, runs in their sandbox, and their function's logs."""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from fleet import models, naming

from sandboxctl.controlplane.aws import error_code
from sandboxctl.controlplane.errors import (
    SandboxctlError,
    UsageError,
)
from sandboxctl.controlplane.inputs import (
    validate_dataset_name,
    validate_uid,
)
from sandboxctl.controlplane.users import Users


class Runs(Users):
    """Upload a data file, run code in the user's own function, read its logs."""

    def upload(
        self,
        uid: str,
        path: Path,
        name: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> dict[str, Any]:
        """Put a data file under the user's prefix; the digest comes from the registry.

        A name `run` would refuse (its type) is refused here, before a byte is sent;
        `progress` is called with each chunk's byte count.
        """
        validate_uid(uid)
        name = validate_dataset_name(name or path.name)
        if not name.lower().endswith(models.DATASET_SUFFIXES):
            raise UsageError(
                f"{name!r} is not a type the sandbox reads; use one of "
                + ", ".join(models.DATASET_SUFFIXES)
            )
        if not path.is_file():
            raise UsageError(f"{path} is not a readable file")
        user = self.require_user(uid)
        if user.get("status") in {"DELETING", "DELETED"}:
            raise SandboxctlError(f"user {uid!r} is {user['status']}; not uploading")
        digest = user.get("user_digest")
        if not digest:
            raise SandboxctlError(f"registry entry for {uid!r} has no user_digest")
        bucket = self.output("DataBucketName")
        key = naming.user_prefix(str(digest)) + name
        s3 = self.client("s3")
        # Managed transfer: multipart for large files, streamed from disk.
        s3.upload_file(str(path), bucket, key, Callback=progress)
        head = s3.head_object(Bucket=bucket, Key=key)
        return {
            "uid": uid,
            "bucket": bucket,
            "key": key,
            "dataset": name,
            "bytes": int(head["ContentLength"]),
            "etag": str(head.get("ETag", "")).strip('"'),
        }

    def run(
        self,
        uid: str,
        dataset: str,
        code: str,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Invoke the user's own sandbox function and return its envelope.

        The dataset name is passed as given: the runtime is what confines it to the prefix.
        """
        validate_uid(uid)
        if not dataset:
            raise UsageError("--dataset must not be empty")
        if not code.strip():
            raise UsageError("the code to run is empty")
        user = self.require_user(uid)
        if user.get("status") != "READY":
            raise SandboxctlError(f"user {uid!r} is {user.get('status')}, not READY")
        function = user.get("function_name") or user.get("function_arn")
        if not function:
            raise SandboxctlError(f"registry entry for {uid!r} names no function")
        event: dict[str, Any] = {
            "code": code,
            "dataset": dataset,
            "request_id": str(uuid.uuid4()),
        }
        if timeout_s is not None:
            event["timeout_s"] = timeout_s
        resp = self.client("lambda").invoke(
            FunctionName=function,
            InvocationType="RequestResponse",
            Payload=json.dumps(event).encode(),
        )
        raw = resp["Payload"].read()
        try:
            payload = json.loads(raw or b"null")
        except ValueError as exc:
            raise SandboxctlError(f"{function} returned non-JSON: {raw[:200]!r}") from exc
        if resp.get("FunctionError"):
            message = payload.get("errorMessage") if isinstance(payload, dict) else payload
            raise SandboxctlError(f"{function} failed ({resp['FunctionError']}): {message}")
        if not isinstance(payload, dict) or "status" not in payload:
            raise SandboxctlError(f"{function} returned no envelope: {str(payload)[:200]}")
        return payload

    def logs(self, uid: str, limit: int = 50) -> list[dict[str, Any]]:
        """The user function's most recent log events (oldest first), from CloudWatch Logs."""
        if limit < 1:
            raise UsageError("--limit must be at least 1")
        user = self.require_user(uid)
        function = user.get("function_name")
        if not function:
            raise SandboxctlError(f"user {uid!r} has no function yet ({user.get('status')})")
        group = f"/aws/lambda/{function}"
        logs = self.client("logs")
        events: list[dict[str, Any]] = []
        try:
            for page in logs.get_paginator("filter_log_events").paginate(logGroupName=group):
                events.extend(page.get("events", []))
        except ClientError as exc:
            if error_code(exc) == "ResourceNotFoundException":
                return []  # never invoked: Lambda creates the stream on the first run
            raise
        events.sort(key=lambda e: (e.get("timestamp", 0), e.get("eventId", "")))
        return [
            {
                "time": datetime.fromtimestamp(e["timestamp"] / 1000, UTC).isoformat(),
                "stream": e.get("logStreamName"),
                "message": str(e.get("message", "")).rstrip("\n"),
            }
            for e in events[-limit:]
        ]


def save_figures(envelope: dict[str, Any], out_dir: Path, stem: str) -> list[Path]:
    """Write each base64 PNG figure of an envelope to `out_dir`; return the paths."""
    figures = envelope.get("figures") or []
    paths: list[Path] = []
    if not figures:
        return paths
    out_dir.mkdir(parents=True, exist_ok=True)
    for i, fig in enumerate(figures, start=1):
        data = fig.get("png") or fig.get("data") if isinstance(fig, dict) else fig
        if not isinstance(data, str):
            raise SandboxctlError(f"figure {i} is not base64 PNG data")
        raw = base64.b64decode(data, validate=False)
        if not raw.startswith(b"\x89PNG\r\n\x1a\n"):
            raise SandboxctlError(f"figure {i} is not a PNG image")
        path = out_dir / f"{stem}-{i}.png"
        path.write_bytes(raw)
        paths.append(path)
    return paths
