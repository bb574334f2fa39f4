"""AWS behaviour restored: concurrent requests are safe. Under load (a 200-user rollout, dozens
of Step Functions executions at once) moto's server answered HTTP 500 ("OrderedDict mutated
during iteration", ``KeyError`` on half-written items, connections closed mid-response): its
backends are plain dicts and lists shared by the threaded server's request threads, with no
locking.

Hook: ``DomainDispatcherApplication.__call__`` (every request of the threaded server). Requests
run one at a time under one lock, except Lambda invocations: they run user code for up to the
function's timeout, and that code calls back into this server, so they run outside it (they only
read the function they invoke). moto is pure Python under the GIL, so the lock costs little
throughput.
"""

from __future__ import annotations

import re
import threading
from typing import Any

from moto.moto_server.werkzeug_app import DomainDispatcherApplication

from sandboxctl.localcloud.fixes._hooks import original, patch
from sandboxctl.localcloud.fixes._moto_refs import require_attr

FIX = "server_request_lock"
LOCK = threading.RLock()
# Invoke, InvokeAsync, InvokeWithResponseStream.
_INVOCATION = re.compile(
    r"^/20[0-9-]+/functions/[^/]+/(invocations|invoke-async/?|response-streaming-invocations)$"
)


def _call(self: Any, environ: dict[str, Any], start_response: Any) -> Any:
    call = original(DomainDispatcherApplication, "__call__")
    if _INVOCATION.match(environ.get("PATH_INFO", "")):
        return call(self, environ, start_response)
    with LOCK:
        response = call(self, environ, start_response)
        # Flask responses are lists already; anything lazy is materialised under the lock.
        return response if isinstance(response, list) else list(response)


def check() -> None:
    require_attr(DomainDispatcherApplication, "__call__", FIX)
    require_attr(DomainDispatcherApplication, "get_application", FIX)


def apply() -> None:
    patch(DomainDispatcherApplication, "__call__", _call)
