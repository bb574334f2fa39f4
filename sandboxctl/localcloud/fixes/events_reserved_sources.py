"""AWS behaviour restored: a caller's PutEvents cannot publish events whose ``Source`` starts
with ``aws.`` (reserved for AWS services): each such entry fails with
``NotAuthorizedForSourceException`` and is not delivered; the other entries of the request go
through. Only the services themselves (here: the ECR push event) emit ``aws.*`` events.

moto accepts any source, so anyone allowed ``events:PutEvents`` could fake an "ECR Image Action"
and start an image rollout.
"""

from __future__ import annotations

import functools
import threading
from typing import Any

from moto.events.models import EventsBackend
from moto.events.responses import EventsHandler

from sandboxctl.localcloud.fixes._moto_refs import (
    is_marked,
    mark,
    require_attr,
    require_params,
)

FIX = "events_reserved_sources"
MAX_ENTRIES = 10
_from_api = threading.local()


def _reserved(entry: dict[str, Any]) -> bool:
    return str(entry.get("Source") or "").startswith("aws.")


def check() -> None:
    require_attr(EventsHandler, "put_events", FIX)
    require_params(require_attr(EventsBackend, "put_events", FIX), ["events"], FIX)


def apply() -> None:
    handler_put = EventsHandler.put_events
    if not is_marked(handler_put, FIX):

        @functools.wraps(handler_put)
        def api_put_events(self: EventsHandler) -> Any:
            _from_api.active = True
            try:
                return handler_put(self)
            finally:
                _from_api.active = False

        EventsHandler.put_events = mark(api_put_events, FIX)  # type: ignore[method-assign]

    backend_put = EventsBackend.put_events
    if is_marked(backend_put, FIX):
        return

    @functools.wraps(backend_put)
    def put_events(self: EventsBackend, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not getattr(_from_api, "active", False) or len(events) > MAX_ENTRIES:
            return backend_put(self, events)  # service-emitted, or moto's own size error
        # Nested put_events (a rule forwarding to another bus) is AWS's own doing: allowed.
        _from_api.active = False
        try:
            allowed = [event for event in events if not _reserved(event)]
            delivered = iter(backend_put(self, allowed) if allowed else [])
            return [
                {
                    "ErrorCode": "NotAuthorizedForSourceException",
                    "ErrorMessage": "Not authorized for the source.",
                }
                if _reserved(event)
                else next(delivered)
                for event in events
            ]
        finally:
            _from_api.active = True

    EventsBackend.put_events = mark(put_events, FIX)  # type: ignore[method-assign]
