"""Names derived from UIDs, and the webhook signature shared with the Firebase function and CLI."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re

import pytest
from fleet import naming, signing
from hypothesis import given
from hypothesis import strategies as st

AWS_STACK_NAME = re.compile(r"^[A-Za-z][-A-Za-z0-9]{0,127}$")
AWS_FUNCTION_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
IAM_ROLE_NAME = re.compile(r"^[\w+=,.@-]{1,64}$")


def test_digest_is_the_documented_function() -> None:
    expected = base64.b32encode(hashlib.sha256(b"alice").digest()).decode().lower()[:26]
    assert naming.user_digest("alice") == expected
    assert len(expected) == 26


def test_alice_and_Alice_get_names_that_differ_case_insensitively() -> None:
    a, b = (
        naming.role_name("dev", naming.user_digest("alice")),
        naming.role_name("dev", naming.user_digest("Alice")),
    )
    assert a.lower() != b.lower()


@given(st.text(min_size=1, max_size=128))
def test_every_possible_uid_yields_valid_aws_names(uid: str) -> None:
    digest = naming.user_digest(uid)
    name = naming.stack_name("prod", digest)
    assert AWS_STACK_NAME.match(name)
    assert AWS_FUNCTION_NAME.match(naming.function_name("prod", digest))
    assert IAM_ROLE_NAME.match(naming.role_name("prod", digest))
    assert naming.log_group_name("prod", digest) == f"/aws/lambda/{name}"
    assert naming.user_prefix(digest) == f"users/{digest}/"
    assert name == name.lower()


def test_longest_stage_still_fits_function_and_role_limits() -> None:
    name = naming.function_name("a" * 10, naming.user_digest("x" * 128))
    assert len(name) <= 64


def test_fifty_awkward_uids_get_fifty_distinct_names() -> None:
    uids = ["alice", "Alice", "ALICE", "a" * 128, "../..", "a/b", "ü", "用户", " ", "\t"]
    uids += [f"user-{i}" for i in range(40)]
    assert len({naming.stack_name("dev", naming.user_digest(u)) for u in uids}) == 50


@pytest.mark.parametrize("uid", ["", "x" * 129])
def test_impossible_uids_are_refused(uid: str) -> None:
    with pytest.raises(naming.InvalidUid):
        naming.user_digest(uid)


@pytest.mark.parametrize("stage", ["Prod", "1dev", "dev-1", "a" * 11])
def test_bad_stage_names_are_refused(stage: str) -> None:
    with pytest.raises(naming.InvalidStage):
        naming.stack_name(stage, naming.user_digest("alice"))


def test_signature_is_hmac_sha256_over_timestamp_dot_body() -> None:
    headers = signing.sign("k", b'{"a":1}', timestamp=1700000000)
    expected = hmac.new(b"k", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert headers == {"X-Signature-Timestamp": "1700000000", "X-Signature": f"v1={expected}"}


def test_verify_accepts_any_configured_key_and_refuses_others() -> None:
    headers = signing.sign("old", b"body", timestamp=100)
    ts, sig = headers["X-Signature-Timestamp"], headers["X-Signature"]
    signing.verify(["new", "old"], b"body", ts, sig, now=100)
    with pytest.raises(signing.BadSignature):
        signing.verify(["new"], b"body", ts, sig, now=100)
    with pytest.raises(signing.BadSignature):
        signing.verify(["new", "old"], b"body2", ts, sig, now=100)
    with pytest.raises(signing.BadSignature):
        signing.verify(["", ""], b"body", ts, sig, now=100)


def test_verify_refuses_stale_and_future_timestamps() -> None:
    headers = signing.sign("k", b"x", timestamp=1000)
    args = (["k"], b"x", headers["X-Signature-Timestamp"], headers["X-Signature"])
    signing.verify(*args, now=1300)
    with pytest.raises(signing.StaleTimestamp):
        signing.verify(*args, now=1301)
    with pytest.raises(signing.StaleTimestamp):
        signing.verify(*args, now=699)
