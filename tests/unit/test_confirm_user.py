"""Firebase lookups through the real firebase-admin library, against a local Auth endpoint.

firebase-admin talks to FIREBASE_AUTH_EMULATOR_HOST over the Identity Toolkit REST API; the
small server below answers `accounts:lookup` like the Auth emulator does.
"""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlparse

import confirm_user
import firebase_admin
import pytest
from fleet.errors import FirebaseUnavailable
from fleet.firebase_users import FirebaseUserDirectory

PROJECT = "demo-sandbox-fleet"


class AuthEndpoint(BaseHTTPRequestHandler):
    users: ClassVar[set[str]] = set()
    failing: ClassVar[bool] = False
    requests: ClassVar[list[dict[str, Any]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        type(self).requests.append({"path": self.path, "body": body})
        if type(self).failing:
            self._send(500, {"error": {"code": 500, "message": "INTERNAL", "status": "INTERNAL"}})
            return
        if not self.path.endswith(f"/projects/{PROJECT}/accounts:lookup"):
            self._send(404, {"error": {"code": 404, "message": "NOT_FOUND"}})
            return
        found = [{"localId": uid} for uid in body.get("localId", []) if uid in type(self).users]
        self._send(
            200, {"kind": "identitytoolkit#GetAccountInfoResponse", "users": found} if found else {}
        )

    def do_GET(self) -> None:
        """accounts:batchGet, the paginated listing behind auth.list_users."""
        query = parse_qs(urlparse(self.path).query)
        if not urlparse(self.path).path.endswith(f"/projects/{PROJECT}/accounts:batchGet"):
            self._send(404, {"error": {"code": 404, "message": "NOT_FOUND"}})
            return
        ordered = sorted(type(self).users)
        start = int(query.get("nextPageToken", ["0"])[0])
        size = int(query.get("maxResults", ["1000"])[0])
        page = ordered[start : start + size]
        payload: dict[str, Any] = {"users": [{"localId": uid} for uid in page]}
        if start + size < len(ordered):
            payload["nextPageToken"] = str(start + size)
        self._send(200, payload)

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def directory(monkeypatch: pytest.MonkeyPatch) -> Iterator[FirebaseUserDirectory]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), AuthEndpoint)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    AuthEndpoint.users, AuthEndpoint.failing, AuthEndpoint.requests = (
        {"alice", "ünï/../x"},
        False,
        [],
    )
    monkeypatch.setenv("FIREBASE_AUTH_EMULATOR_HOST", f"127.0.0.1:{server.server_address[1]}")
    app = firebase_admin.initialize_app(options={"projectId": PROJECT}, name=str(uuid.uuid4()))
    try:
        yield FirebaseUserDirectory(app)
    finally:
        firebase_admin.delete_app(app)
        server.shutdown()
        server.server_close()
        thread.join()


def test_existing_and_missing_users_are_told_apart(directory: FirebaseUserDirectory) -> None:
    assert directory.exists("alice") is True
    assert directory.exists("Alice") is False
    assert directory.exists("ünï/../x") is True
    assert AuthEndpoint.requests[0]["body"] == {"localId": ["alice"]}


def test_firebase_errors_become_firebase_unavailable(directory: FirebaseUserDirectory) -> None:
    AuthEndpoint.failing = True
    with pytest.raises(FirebaseUnavailable):
        directory.exists("alice")


def test_confirm_passes_known_users_and_raises_the_retried_error_otherwise(
    directory: FirebaseUserDirectory,
) -> None:
    assert confirm_user.confirm("alice", directory) == {"checked": True, "exists": True}
    with pytest.raises(confirm_user.FirebaseUserNotFound):
        confirm_user.confirm("mallory", directory)


def test_confirm_without_a_service_account_skips_and_says_so(
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert confirm_user.confirm("anyone", None) == {"checked": False, "exists": None}
    assert "not checked" in caplog.text


def test_handler_rejects_events_without_a_valid_uid(lambda_context: Any) -> None:
    confirm_user._directory.cache_clear()
    with pytest.raises(ValueError):
        confirm_user.lambda_handler({"uid": ""}, lambda_context)
    with pytest.raises(ValueError):
        confirm_user.lambda_handler({"uid": "a", "extra": 1}, lambda_context)


def test_a_broken_service_account_secret_is_a_configuration_error() -> None:
    from fleet.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        FirebaseUserDirectory.from_service_account('{"type": "service_account"}')
    with pytest.raises(ConfigurationError):
        FirebaseUserDirectory.from_service_account("not json")


def test_listing_walks_every_page(directory: FirebaseUserDirectory) -> None:
    AuthEndpoint.users = {f"user-{i:04d}" for i in range(2_345)}
    assert sorted(directory.list_uids()) == sorted(AuthEndpoint.users)
