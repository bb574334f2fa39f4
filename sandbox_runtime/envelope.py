"""The response envelope: always JSON, always under Lambda's 6 MB response limit."""

from __future__ import annotations

import json
from typing import Any

STATUSES = ("ok", "error", "timeout", "memory", "limit", "rejected")
TRUNCATION_MARK = "\n…[{skipped} bytes truncated]…\n"


class OutputCapture:
    """Keeps the first and last `limit // 2` bytes of a stream and counts the rest."""

    def __init__(self, limit: int) -> None:
        self.limit = max(limit, 2)
        self.head = bytearray()
        self.tail = bytearray()
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        head_room = self.limit // 2 - len(self.head)
        if head_room > 0:
            self.head += data[:head_room]
            data = data[head_room:]
        if data:
            self.tail += data
            keep = self.limit - self.limit // 2
            if len(self.tail) > keep:
                del self.tail[: len(self.tail) - keep]

    @property
    def truncated(self) -> bool:
        return self.total > len(self.head) + len(self.tail)

    def text(self) -> str:
        head = bytes(self.head).decode("utf-8", errors="replace")
        tail = bytes(self.tail).decode("utf-8", errors="replace")
        if not self.truncated:
            return head + tail
        skipped = self.total - len(self.head) - len(self.tail)
        return head + TRUNCATION_MARK.format(skipped=skipped) + tail


def cap_text(text: str, limit: int) -> tuple[str, bool]:
    """Cap `text` to about `limit` UTF-8 bytes, keeping head and tail."""
    data = text.encode("utf-8", errors="replace")
    if len(data) <= limit:
        return text, False
    capture = OutputCapture(limit)
    capture.feed(data)
    return capture.text(), True


def empty_metrics() -> dict[str, Any]:
    return {"wall_ms": 0.0, "cpu_ms": 0.0, "peak_rss_mb": 0.0, "load_ms": 0.0, "cache": "none"}


def make_envelope(
    status: str,
    *,
    error: dict[str, Any] | None = None,
    request_id: str | None = None,
) -> dict[str, Any]:
    """A complete envelope with every field present, so callers never need `.get`."""
    if status not in STATUSES:
        raise ValueError(f"unknown status {status!r}")
    return {
        "status": status,
        "result": None,
        "result_type": "none",
        "result_truncated": False,
        "stdout": "",
        "stdout_truncated": False,
        "stderr": "",
        "stderr_truncated": False,
        "figures": [],
        "figures_truncated": False,
        # Figures that could not be rendered, and why (never dropped silently).
        "figure_errors": [],
        "error": error,
        "metrics": empty_metrics(),
        "request_id": request_id,
        # Which protections held for this run: {"profile", "in_force", "refused"}.
        "sandbox": {"profile": None, "in_force": [], "refused": []},
    }


def error_info(kind: str, message: str, traceback: str | None = None) -> dict[str, Any]:
    return {"type": kind, "message": message, "traceback": traceback}


def encoded_size(envelope: dict[str, Any]) -> int:
    """Bytes of the envelope as the Lambda runtime serialises it (ASCII-escaped JSON)."""
    return len(json.dumps(envelope, ensure_ascii=True, allow_nan=False))


def fit_envelope(envelope: dict[str, Any], max_bytes: int) -> dict[str, Any]:
    """Shrink the largest parts until the whole envelope fits `max_bytes`.

    Each part is capped where it is produced; this is the last line of defence, so the order
    drops what the user can most easily regenerate first: figures, then the result, then output.
    """
    if encoded_size(envelope) <= max_bytes:
        return envelope
    if envelope["figures"]:
        envelope["figures"] = []
        envelope["figures_truncated"] = True
        if encoded_size(envelope) <= max_bytes:
            return envelope
    if envelope["result"] is not None:
        rendered = json.dumps(envelope["result"], ensure_ascii=True)
        budget = max(max_bytes // 4, 1024)
        envelope["result"] = cap_text(rendered, budget)[0]
        envelope["result_type"] = "repr"
        envelope["result_truncated"] = True
        if encoded_size(envelope) <= max_bytes:
            return envelope
    budget = max_bytes // 4
    while encoded_size(envelope) > max_bytes and budget >= 64:
        for stream in ("stdout", "stderr"):
            text, cut = cap_text(envelope[stream], budget)
            # ASCII escaping can grow text up to 6x; cap on the escaped size too.
            while len(json.dumps(text)) > budget and len(text) > 64:
                text, cut = cap_text(text, len(text.encode("utf-8")) // 2)[0], True
            envelope[stream] = text
            envelope[f"{stream}_truncated"] = envelope[f"{stream}_truncated"] or cut
        if envelope["error"] and envelope["error"].get("traceback"):
            envelope["error"]["traceback"], _ = cap_text(envelope["error"]["traceback"], budget)
        if envelope["error"] and envelope["error"].get("message"):
            envelope["error"]["message"], _ = cap_text(envelope["error"]["message"], budget)
        if envelope["result"] is not None and encoded_size(envelope) > max_bytes:
            envelope["result"], _ = cap_text(str(envelope["result"]), budget)
        budget //= 2
    if encoded_size(envelope) > max_bytes:
        # Unreachable with sane caps; never return something Lambda would refuse.
        request_id = envelope.get("request_id")
        metrics = envelope["metrics"]
        envelope = make_envelope(
            "limit",
            error=error_info("OutputLimit", "the response was too large to return"),
            request_id=request_id if isinstance(request_id, str) else None,
        )
        envelope["metrics"] = metrics
    return envelope
