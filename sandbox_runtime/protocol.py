"""Length-prefixed JSON messages between the handler and the executor (never pickle)."""

from __future__ import annotations

import json
import os
import select
import struct
import time
from typing import Any

HEADER = struct.Struct(">I")
ACK = struct.Struct(">Q")  # request id, written by the executor when it starts a request
MAX_MESSAGE_BYTES = 64 * 1024 * 1024


class ChannelClosed(EOFError):
    """The other side of the channel went away."""


class ChannelTimeout(TimeoutError):
    """No complete message arrived before the deadline."""


def send_message(fd: int, message: dict[str, Any]) -> None:
    data = json.dumps(message, ensure_ascii=True, allow_nan=False).encode("ascii")
    if len(data) > MAX_MESSAGE_BYTES:
        raise ValueError("message too large")
    view = memoryview(HEADER.pack(len(data)) + data)
    while view:
        try:
            written = os.write(fd, view)
        except BrokenPipeError as exc:
            raise ChannelClosed("peer closed the channel") from exc
        view = view[written:]


def _read_exact(fd: int, size: int, deadline: float | None) -> bytes:
    chunks = bytearray()
    while len(chunks) < size:
        if deadline is not None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ChannelTimeout("timed out waiting for the peer")
            ready, _, _ = select.select([fd], [], [], remaining)
            if not ready:
                raise ChannelTimeout("timed out waiting for the peer")
        chunk = os.read(fd, min(size - len(chunks), 1024 * 1024))
        if not chunk:
            raise ChannelClosed("peer closed the channel")
        chunks += chunk
    return bytes(chunks)


def recv_message(fd: int, deadline: float | None = None) -> dict[str, Any]:
    (size,) = HEADER.unpack(_read_exact(fd, HEADER.size, deadline))
    if size > MAX_MESSAGE_BYTES:
        raise ChannelClosed(f"peer sent an oversized message ({size} bytes)")
    message = json.loads(_read_exact(fd, size, deadline))
    if not isinstance(message, dict):
        raise ChannelClosed("peer sent a message that is not an object")
    return message
