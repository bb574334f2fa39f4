"""Lambda entry point of every user's sandbox function.

The handler is thin: Powertools logging, then the runtime, which is created on first use and
kept warm across invocations (the executor with its parsed frames lives as long as this
process). User code output and credentials are never logged.
"""

from __future__ import annotations

import atexit
import fcntl
import hashlib
import json
import os
import pwd
import threading
from pathlib import Path
from typing import Any

from aws_lambda_powertools import Logger

from sandbox_runtime.config import RuntimeConfig
from sandbox_runtime.runtime import Runtime
from sandbox_runtime.sources import S3Source

logger = Logger(service="sandbox-runtime")

FUNCTION_MEMORY_RESERVE_MB = 512
_runtime: Runtime | None = None
_runtime_lock = threading.Lock()


UID_BASE = 100_000
UID_COUNT = 900_000
# Host-wide, root-only: which user prefix owns which sandbox uid.
UID_REGISTRY = "/var/lib/sandbox-fleet/uids.json"


def sandbox_uid_for(prefix: str, registry: str | None = None) -> int:
    """A uid of this user's own, for when the runtime starts as root (local cloud, containers).

    Many users' functions may then share one host; a uid per user keeps their run children
    from signalling each other or reading each other's scratch directories. A hash alone
    collides (about 43% chance among 1,000 users in 900,000 uids), so the uid is allocated once
    in a host-wide registry under a lock: the hash is only where the search starts. (In Lambda
    the function is not root, cannot change uid, and is alone in its micro-VM anyway.)
    """
    path = Path(registry or os.environ.get("SANDBOX_UID_REGISTRY") or UID_REGISTRY)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "r+", encoding="utf-8") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        text = handle.read()
        owners: dict[str, int] = json.loads(text) if text.strip() else {}
        if prefix in owners:
            return owners[prefix]
        taken = set(owners.values())
        digest = hashlib.sha256(prefix.encode("utf-8")).digest()
        start = int.from_bytes(digest[:4], "big") % UID_COUNT
        for step in range(UID_COUNT):
            uid = UID_BASE + (start + step) % UID_COUNT
            if uid not in taken and not _uid_in_use(uid):
                break
        else:
            raise RuntimeError("no free sandbox uid left on this host")
        owners[prefix] = uid
        handle.seek(0)
        handle.truncate()
        json.dump(owners, handle)
        handle.flush()
        os.fsync(handle.fileno())
        return uid


def _uid_in_use(uid: int) -> bool:
    """A uid some account of this host already has is never handed to a sandbox."""
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def get_runtime() -> Runtime:
    """The process-wide runtime, built from DATA_BUCKET, USER_PREFIX and SANDBOX_* settings."""
    global _runtime
    with _runtime_lock:
        if _runtime is None:
            config = RuntimeConfig.from_env()
            function_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "")
            if function_mb.isdigit() and "SANDBOX_MEMORY_MB" not in os.environ:
                # Leave room for the handler and the executor (with its frames), so hitting the
                # run's limit is a `memory` envelope, not the whole function running out.
                budget = max(128, int(function_mb) - FUNCTION_MEMORY_RESERVE_MB)
                config = config.with_overrides(memory_mb=min(budget, config.memory_mb))
            prefix = os.environ.get("USER_PREFIX", "")
            if prefix and "SANDBOX_SANDBOX_UID" not in os.environ and os.geteuid() == 0:
                uid = sandbox_uid_for(prefix)
                config = config.with_overrides(sandbox_uid=uid, sandbox_gid=uid)
            source = S3Source.from_env(config.cache_dir)
            _runtime = Runtime(config, source, log=logger)
        return _runtime


def shutdown_runtime() -> None:
    """Stop the executor; the next invocation starts a fresh runtime from the environment."""
    global _runtime
    with _runtime_lock:
        runtime, _runtime = _runtime, None
    if runtime is not None:
        runtime.close()


atexit.register(shutdown_runtime)


@logger.inject_lambda_context(log_event=False)
def lambda_handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return get_runtime().invoke(event, context)
