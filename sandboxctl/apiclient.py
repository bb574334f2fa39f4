"""The client path, as an app takes it: Firebase ID token -> HTTP API (/datasets, /run).

The demo and `bench/` use it against the local cloud; docs/client.md describes the same calls.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

# API Gateway gives an integration 30 s; a little more so the gateway's 503 arrives first.
REQUEST_TIMEOUT_S = 35.0


class ApiError(Exception):
    """The API answered with an error status; `message` is the body's message."""

    def __init__(self, status: int, message: str, retry_after: str | None = None) -> None:
        super().__init__(f"HTTP {status}: {message}")
        self.status, self.message, self.retry_after = status, message, retry_after


@dataclass
class ApiClient:
    """One user's calls to the HTTP API; `token` returns a current Firebase ID token."""

    base_url: str
    token: Callable[[], str]
    session: requests.Session | None = None
    origin: str | None = None

    def _post(self, path: str, body: dict[str, Any]) -> requests.Response:
        headers = {"authorization": f"Bearer {self.token()}"}
        if self.origin:
            headers["origin"] = self.origin
        http = self.session or requests
        return http.post(
            self.base_url.rstrip("/") + path, json=body, headers=headers, timeout=REQUEST_TIMEOUT_S
        )

    @staticmethod
    def _check(reply: requests.Response) -> dict[str, Any]:
        try:
            data = reply.json()
        except ValueError:
            data = {"message": reply.text[:300]}
        if reply.status_code >= 400:
            message = data.get("message", "") if isinstance(data, dict) else str(data)
            errors = data.get("errors") if isinstance(data, dict) else None
            if errors:
                message += ": " + "; ".join(f"{e['field']}: {e['problem']}" for e in errors)
            raise ApiError(reply.status_code, message, reply.headers.get("retry-after"))
        if not isinstance(data, dict):
            raise ApiError(reply.status_code, f"not a JSON object: {str(data)[:200]}")
        return data

    def upload(self, name: str, data: bytes, content_type: str) -> dict[str, Any]:
        """POST /datasets for a presigned PUT, then PUT the bytes to it."""
        signed = self._check(
            self._post("/datasets", {"name": name, "content_type": content_type, "size": len(data)})
        )
        http = self.session or requests
        put = http.put(
            signed["url"], data=data, headers=signed["headers"], timeout=REQUEST_TIMEOUT_S
        )
        if put.status_code != 200:
            raise ApiError(put.status_code, f"the upload was refused: {put.text[:300]}")
        return signed

    def run(self, code: str, dataset: str | None = None, **options: Any) -> dict[str, Any]:
        """POST /run; the sandbox's envelope (raises ApiError for 4xx/5xx)."""
        body: dict[str, Any] = {"code": code, **options}
        if dataset is not None:
            body["dataset"] = dataset
        return self._check(self._post("/run", body))
