"""The Firebase blocking function: signs like the webhook expects, and never blocks a signup."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from fleet import signing

from firebase import main as firebase_fn

CREATED = datetime(2026, 1, 31, 13, 0, tzinfo=timezone(timedelta(hours=1)))


class Reply:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class Session:
    """Records the POST; answers with a status or raises like requests does."""

    def __init__(self, status: int = 202, error: Exception | None = None) -> None:
        self.status, self.error = status, error
        self.posts: list[dict[str, Any]] = []

    def post(self, url: str, **kwargs: Any) -> Reply:
        self.posts.append({"url": url, **kwargs})
        if self.error:
            raise self.error
        return Reply(self.status)


def report(session: Session, **overrides: Any) -> bool:
    args: dict[str, Any] = {
        "url": "https://api.example/hooks/firebase",
        "secret": "s3cret",
        "uid": "alice",
        "email": "alice@example.com",
        "event_id": "rWsyPtolplG2TBFoOkkgyg",
        "created_at": CREATED,
        "session": session,
        "now": 1_769_860_800,
    }
    args.update(overrides)
    return firebase_fn.report_signup(**args)


def test_the_notice_is_signed_exactly_as_the_webhook_verifies() -> None:
    session = Session()
    assert report(session) is True
    [post] = session.posts
    headers = post["headers"]
    signing.verify(
        ["s3cret"],
        post["data"],
        headers[signing.TIMESTAMP_HEADER],
        headers[signing.SIGNATURE_HEADER],
        now=1_769_860_800,
    )
    assert headers == {"content-type": "application/json"} | signing.sign(
        "s3cret", post["data"], 1_769_860_800
    )
    assert json.loads(post["data"]) == {
        "type": "user.created",
        "uid": "alice",
        "email": "alice@example.com",
        "event_id": "rWsyPtolplG2TBFoOkkgyg",
        "created_at": "2026-01-31T12:00:00Z",
    }
    assert post["timeout"] <= 3


@pytest.mark.parametrize(
    "session",
    [
        Session(error=requests.Timeout("slow")),
        Session(error=requests.ConnectionError("down")),
        Session(error=RuntimeError("anything at all")),
        Session(status=503),
        Session(status=401),
    ],
    ids=["timeout", "unreachable", "bug", "503", "401"],
)
def test_aws_trouble_is_logged_and_never_raised(
    session: Session, caplog: pytest.LogCaptureFixture
) -> None:
    assert report(session) is False
    assert "reconciler will catch up" in caplog.text


def test_missing_configuration_does_not_block_signups(caplog: pytest.LogCaptureFixture) -> None:
    session = Session()
    assert report(session, url="") is False
    assert report(session, secret="") is False
    assert session.posts == []


def test_it_is_a_blocking_before_create_function_with_the_secret_and_a_short_timeout() -> None:
    endpoint = getattr(firebase_fn.sandbox_fleet_before_user_created, "__firebase_endpoint__")  # noqa: B009
    assert endpoint.blockingTrigger["eventType"].endswith("user.beforeCreate")
    assert endpoint.secretEnvironmentVariables == [{"key": "SANDBOX_FLEET_WEBHOOK_SECRET"}]
    assert endpoint.timeoutSeconds <= 7
    assert endpoint.timeoutSeconds > firebase_fn.POST_TIMEOUT_SECONDS


def test_body_is_accepted_by_the_webhook_model() -> None:
    from fleet.models import UserCreatedNotice, WebhookNotice
    from pydantic import TypeAdapter

    body = firebase_fn.signup_body("a/b", None, "e1", datetime(2026, 1, 1, tzinfo=UTC))
    adapter: TypeAdapter[Any] = TypeAdapter(WebhookNotice)
    notice = adapter.validate_json(body)
    assert isinstance(notice, UserCreatedNotice)
    assert notice.uid == "a/b" and notice.email is None
