"""A warm Lambda execution environment: one process, one function, many invocations.

The local cloud runs this file's source with ``python -c`` (so nothing but the function's own
code directory is on ``sys.path``, as in ``/var/task``), in the working directory of the
function's code, with the function's configured environment and its role's credentials. Like
the Lambda runtime it imports the handler once (init), then serves invocations one at a time:
a JSON request line arrives on one pipe, a JSON response line leaves on another, and whatever
the handler prints goes to stdout, framed by START/END/REPORT lines, which the local cloud
stores in the function's log group.

Standalone on purpose: it must not import ``sandboxctl`` (the function would see it).
"""

from __future__ import annotations

import importlib
import json
import os
import sys
import time
import traceback
from typing import Any


class LambdaContext:
    """The context object the Lambda Python runtime passes to a handler."""

    def __init__(self, request_id: str, deadline_ms: int) -> None:
        self.aws_request_id = request_id
        self.function_name = os.environ.get("AWS_LAMBDA_FUNCTION_NAME", "")
        self.function_version = os.environ.get("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        self.memory_limit_in_mb = os.environ.get("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        self.log_group_name = os.environ.get("AWS_LAMBDA_LOG_GROUP_NAME", "")
        self.log_stream_name = os.environ.get("AWS_LAMBDA_LOG_STREAM_NAME", "")
        self.invoked_function_arn = os.environ.get("_LOCALCLOUD_FUNCTION_ARN", "")
        self.identity = None
        self.client_context = None
        self._deadline_ms = deadline_ms

    def get_remaining_time_in_millis(self) -> int:
        return max(0, self._deadline_ms - int(time.time() * 1000))


def _error(exc: BaseException, error_type: str | None = None) -> dict[str, Any]:
    """The payload the Lambda Python runtime returns for an unhandled exception."""
    return {
        "errorMessage": str(exc),
        "errorType": error_type or type(exc).__name__,
        "requestId": "",
        "stackTrace": traceback.format_tb(exc.__traceback__),
    }


def _load_handler() -> tuple[Any, dict[str, Any] | None]:
    spec = os.environ.get("_HANDLER", "")
    module_name, _, function_name = spec.rpartition(".")
    if not module_name:
        return None, {
            "errorMessage": f"Bad handler '{spec}': not enough values to unpack",
            "errorType": "Runtime.MalformedHandlerName",
        }
    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        return None, _error(
            Exception(f"Unable to import module '{module_name}': {exc}"),
            "Runtime.ImportModuleError",
        )
    handler = getattr(module, function_name, None)
    if handler is None:
        return None, {
            "errorMessage": f"Handler '{function_name}' missing on module '{module_name}'",
            "errorType": "Runtime.HandlerNotFound",
        }
    return handler, None


def _serve() -> None:
    request_fd, response_fd = (int(fd) for fd in os.environ.pop("_LOCALCLOUD_FDS").split(","))
    requests = os.fdopen(request_fd, "rb")
    responses = os.fdopen(response_fd, "wb")
    handler, init_error = _load_handler()
    for raw in requests:
        request = json.loads(raw)
        request_id = request["request_id"]
        print(f"START RequestId: {request_id} Version: {request['version']}", flush=True)
        started = time.monotonic()
        if init_error is not None:
            response: dict[str, Any] = {"ok": False, "payload": {**init_error}}
        else:
            try:
                result = handler(
                    request["event"], LambdaContext(request_id, request["deadline_ms"])
                )
                response = {"ok": True, "payload": json.loads(json.dumps(result))}
            except (TypeError, ValueError) as exc:
                if "is not JSON serializable" in str(exc):
                    error = _error(exc, "Runtime.MarshalError")
                    response = {"ok": False, "payload": error}
                else:
                    response = {"ok": False, "payload": _error(exc)}
            except Exception as exc:
                response = {"ok": False, "payload": _error(exc)}
        if not response["ok"]:
            response["payload"]["requestId"] = request_id
            # The runtime logs unhandled errors as one JSON line, as Lambda does.
            print(json.dumps(response["payload"]), file=sys.stderr, flush=True)
        elapsed_ms = (time.monotonic() - started) * 1000
        sys.stdout.flush()
        sys.stderr.flush()
        print(f"END RequestId: {request_id}", flush=True)
        print(
            f"REPORT RequestId: {request_id}\tDuration: {elapsed_ms:.2f} ms\t"
            f"Memory Size: {os.environ.get('AWS_LAMBDA_FUNCTION_MEMORY_SIZE')} MB",
            flush=True,
        )
        responses.write(json.dumps(response).encode("utf-8") + b"\n")
        responses.flush()
        if init_error is not None:
            return  # a failed init is retried in a fresh environment, as Lambda does


if __name__ == "__main__":
    _serve()
