"""The security suite's function: the real sandbox runtime, reading datasets from a directory.

It runs in a local-cloud execution environment (lambda_exec.Worker) under the Lambda profile
being tested, exactly like a user's sandbox function, but without S3: the attack tests need
no cloud, only the runtime as Lambda runs it.
"""

from __future__ import annotations

import os
from typing import Any

from sandbox_runtime.config import RuntimeConfig
from sandbox_runtime.runtime import Runtime
from sandbox_runtime.sources import DirectorySource

_runtime: Runtime | None = None


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    global _runtime
    if _runtime is None:
        _runtime = Runtime(RuntimeConfig.from_env(), DirectorySource(os.environ["TEST_DATA_DIR"]))
    if event.get("op") == "replace_executor":
        # What happens after an executor crash or a timeout: the next run starts a new one.
        _runtime._discard_executor()
        return {"replaced": True}
    return _runtime.invoke(event, context)
