"""The client path over real HTTP: Firebase ID token -> HTTP API -> JWT authorizer -> functions.

Every request here goes over a socket to the local cloud's HTTP API, and every token is verified
against the local issuer's JWKS; nothing calls a function directly.
"""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

import jwt
import pytest
import requests
from fleet import naming
from fleet.api_models import ApiErrorBody, RunEnvelope

from firebase import main as firebase_fn
from sandboxctl.controlplane import ControlPlane
from sandboxctl.localcloud.httpapi import TokenIssuer
from sandboxctl.localcloud.server import LocalCloud
from tests.integration.localcloud_support import ensure_desired_image
from tests.integration.localcloud_support import wait_for_value as wait_for

pytestmark = pytest.mark.integration

DEV_ORIGIN = "http://localhost:5173"
CSV = b"city,sales\nparis,3\nlyon,4\nnice,5\n"


class Api:
    def __init__(self, cloud: LocalCloud) -> None:
        self.cloud = cloud
        self.url = cloud.api_url
        self.cp = ControlPlane.from_local_cloud(cloud)
        self.logs = cloud.client("logs")

    def post(self, path: str, token: str | None = None, **kwargs: Any) -> requests.Response:
        headers = dict(kwargs.pop("headers", {}))
        if token is not None:
            headers["authorization"] = f"Bearer {token}"
        return requests.post(self.url + path, headers=headers, timeout=60, **kwargs)

    def run_code_invocations(self) -> int:
        """START lines in RunCode's log group: one per invocation of the function."""
        group = f"/aws/lambda/{self.cloud.outputs['RunCodeFunctionName']}"
        try:
            events = self.logs.filter_log_events(logGroupName=group)["events"]
        except self.logs.exceptions.ResourceNotFoundException:
            return 0
        return sum(1 for e in events if e["message"].startswith("START RequestId"))


@pytest.fixture(scope="module")
def api(local_cloud: LocalCloud) -> Api:
    api = Api(local_cloud)
    ensure_desired_image(api.cp, "http")
    return api


def ready_user(api: Api, label: str) -> str:
    uid = f"{label}-{uuid.uuid4().hex[:8]}"
    api.cp.signup(uid)
    user = api.cp.wait_for_user(uid, {"READY", "FAILED"}, 120, lambda status, elapsed: None)
    assert user is not None and user["status"] == "READY", user
    return uid


@pytest.fixture(scope="module")
def user(api: Api) -> str:
    """A READY user whose dataset was uploaded through POST /datasets and its presigned PUT."""
    uid = ready_user(api, "http")
    token = api.cloud.id_token(uid)
    signed = api.post(
        "/datasets",
        token,
        json={"name": "cities.csv", "content_type": "text/csv", "size": len(CSV)},
    )
    assert signed.status_code == 200, signed.text
    upload = signed.json()
    put = requests.put(upload["url"], data=CSV, headers=upload["headers"], timeout=30)
    assert put.status_code == 200, put.text
    return uid


def test_a_token_runs_code_in_the_callers_own_sandbox(api: Api, user: str) -> None:
    reply = api.post(
        "/run",
        api.cloud.id_token(user),
        json={"code": "df.sales.sum()", "dataset": "cities.csv"},
    )
    assert reply.status_code == 200, reply.text
    assert reply.headers["content-type"] == "application/json"
    envelope = reply.json()
    assert envelope["status"] == "ok", envelope
    assert envelope["result"] == 12


def test_a_bare_token_without_bearer_is_accepted(api: Api, user: str) -> None:
    reply = requests.post(
        api.url + "/run",
        headers={"authorization": api.cloud.id_token(user)},
        json={"code": "len(df)", "dataset": "cities.csv"},
        timeout=60,
    )
    assert reply.status_code == 200 and reply.json()["result"] == 3


def test_a_presigned_upload_url_is_bound_to_its_key(api: Api, user: str) -> None:
    signed = api.post(
        "/datasets",
        api.cloud.id_token(user),
        json={"name": "other.csv", "content_type": "text/csv", "size": len(CSV)},
    ).json()
    tampered = signed["url"].replace("/other.csv?", "/elsewhere.csv?")
    put = requests.put(tampered, data=CSV, headers=signed["headers"], timeout=30)
    assert put.status_code == 403


def _claims(issuer: TokenIssuer, uid: str, **changes: Any) -> dict[str, Any]:
    return {**issuer.claims(uid), **changes}


def _bad_tokens(cloud: LocalCloud, uid: str) -> dict[str, str]:
    issuer = cloud.token_issuer
    now = int(time.time())
    foreign = TokenIssuer.generate(issuer.project_id)
    return {
        "expired": issuer.sign(_claims(issuer, uid, iat=now - 7200, exp=now - 3600)),
        "not yet valid": issuer.sign(_claims(issuer, uid, iat=now + 600, exp=now + 4200)),
        "nbf in the future": issuer.sign(_claims(issuer, uid, nbf=now + 600)),
        "wrong audience": issuer.sign(_claims(issuer, uid, aud="someone-elses-project")),
        "wrong issuer": issuer.sign(
            _claims(issuer, uid, iss="https://securetoken.google.com/someone-elses-project")
        ),
        "issuer with a trailing slash": issuer.sign(_claims(issuer, uid, iss=issuer.issuer + "/")),
        "foreign key, our kid": foreign.sign(_claims(issuer, uid), kid=issuer.kid),
        "foreign key, its own kid": foreign.sign(_claims(issuer, uid)),
        "HS256 with the public key": jwt.encode(
            _claims(issuer, uid), "not-a-secret" * 4, algorithm="HS256", headers={"kid": issuer.kid}
        ),
        "not a JWT": "definitely.not.ajwt",
    }


def test_every_bad_token_gets_401_and_the_function_is_never_invoked(api: Api, user: str) -> None:
    # One good call first, so RunCode's log group exists and its count is meaningful.
    ok = api.post("/run", api.cloud.id_token(user), json={"code": "1", "dataset": "cities.csv"})
    assert ok.status_code == 200
    before = wait_for(lambda: api.run_code_invocations() or None, 30, "RunCode's logs")

    answers: dict[str, tuple[int, Any, str]] = {}
    for case, token in {"missing": None, **_bad_tokens(api.cloud, user)}.items():
        reply = api.post("/run", token, json={"code": "1", "dataset": "cities.csv"})
        answers[case] = (
            reply.status_code,
            reply.json(),
            reply.headers.get("www-authenticate", ""),
        )

    assert all(ApiErrorBody.model_validate(a[1]) for a in answers.values())
    assert {case: a[:2] for case, a in answers.items()} == {
        case: (401, {"message": "Unauthorized"}) for case in answers
    }
    assert all(a[2].startswith('Bearer scope="" error="invalid_token"') for a in answers.values())
    assert "audience" in answers["wrong audience"][2]
    assert "expired" in answers["expired"][2]
    # The good call's log lines are all in; the rejected ones added none.
    assert api.run_code_invocations() == before


def test_the_caller_is_the_tokens_subject(api: Api, user: str) -> None:
    # /datasets refuses a dataset name from the verified sub only when the user exists: the
    # route sees exactly the token's subject (a token for someone unregistered gets 404).
    stranger = api.post(
        "/datasets",
        api.cloud.id_token(f"nobody-{uuid.uuid4().hex[:6]}"),
        json={"name": "x.csv", "content_type": "text/csv", "size": 3},
    )
    assert stranger.status_code == 404
    assert "sign up first" in stranger.json()["message"]


def test_unknown_routes_wrong_methods_and_big_bodies_are_answered_as_api_gateway(
    api: Api, user: str
) -> None:
    token = api.cloud.id_token(user)
    unknown = api.post("/nowhere", token, json={})
    wrong_method = requests.get(api.url + "/run", timeout=30)
    too_big = api.post(
        "/run", token, data=b"x" * (10 * 1024 * 1024 + 1), headers={"content-type": "text/plain"}
    )
    assert (unknown.status_code, unknown.json()) == (404, {"message": "Not Found"})
    assert (wrong_method.status_code, wrong_method.json()) == (404, {"message": "Not Found"})
    assert too_big.status_code == 413
    # The function's own limit answers for a body under the gateway's 10 MB.
    own_limit = api.post("/run", token, data=b"{" + b" " * 200_000 + b"}")
    assert own_limit.status_code == 413
    assert "larger than" in own_limit.json()["message"]


def test_cors_preflight_and_response_headers_come_from_the_api(api: Api, user: str) -> None:
    preflight = requests.options(
        api.url + "/run",
        headers={
            "origin": DEV_ORIGIN,
            "access-control-request-method": "POST",
            "access-control-request-headers": "authorization,content-type",
        },
        timeout=30,
    )
    assert preflight.status_code == 204
    assert preflight.headers["access-control-allow-origin"] == DEV_ORIGIN
    assert "POST" in preflight.headers["access-control-allow-methods"]
    assert "authorization" in preflight.headers["access-control-allow-headers"]
    assert preflight.headers["access-control-max-age"] == "600"

    answered = api.post(
        "/run",
        api.cloud.id_token(user),
        json={"code": "1", "dataset": "cities.csv"},
        headers={"origin": "http://localhost:3000"},
    )
    assert answered.status_code == 200
    assert answered.headers["access-control-allow-origin"] == "http://localhost:3000"
    assert "retry-after" in answered.headers["access-control-expose-headers"]

    stranger = requests.options(
        api.url + "/run",
        headers={"origin": "https://evil.example", "access-control-request-method": "POST"},
        timeout=30,
    )
    assert "access-control-allow-origin" not in stranger.headers
    unauthorized = api.post("/run", None, json={}, headers={"origin": DEV_ORIGIN})
    assert unauthorized.status_code == 401
    assert unauthorized.headers["access-control-allow-origin"] == DEV_ORIGIN


def test_the_firebase_function_signs_up_a_user_over_http(api: Api) -> None:
    uid = f"fb-{uuid.uuid4().hex[:8]}"
    url = api.url + "/hooks/firebase"
    secret = api.cp.webhook_secret()
    created = datetime.now(UTC)

    assert firebase_fn.report_signup(url, secret, uid, None, str(uuid.uuid4()), created)
    user = api.cp.wait_for_user(uid, {"READY", "FAILED"}, 120, lambda s, e: None)
    assert user is not None and user["status"] == "READY"

    other = f"fb-{uuid.uuid4().hex[:8]}"
    wrong_key = firebase_fn.report_signup(url, "x" * 64, other, None, str(uuid.uuid4()), created)
    assert wrong_key is False
    assert api.cp.get_user(other) is None


def test_the_webhook_refuses_a_tampered_body_over_http(api: Api) -> None:
    body = firebase_fn.signup_body("someone", None, str(uuid.uuid4()), datetime.now(UTC))
    headers = firebase_fn.sign(api.cp.webhook_secret(), body, int(time.time()))
    reply = requests.post(
        api.url + "/hooks/firebase",
        data=body.replace(b"someone", b"sometwo"),
        headers={**headers, "content-type": "application/json"},
        timeout=30,
    )
    assert reply.status_code == 401
    assert api.cp.get_user("sometwo") is None


def _post_all(api: Api, uid: str, bodies: list[dict[str, Any]]) -> list[requests.Response]:
    barrier = threading.Barrier(len(bodies))
    token = api.cloud.id_token(uid)

    def send(body: dict[str, Any]) -> requests.Response:
        barrier.wait()
        return api.post("/run", token, json=body)

    with ThreadPoolExecutor(max_workers=len(bodies)) as pool:
        return list(pool.map(send, bodies))


def _environments(api: Api, uid: str) -> int:
    from sandboxctl.localcloud.fixes import lambda_exec

    name = naming.function_name(api.cloud.outputs["Stage"], naming.user_digest(uid))
    return lambda_exec.environment_count(name)


def test_concurrent_runs_of_one_user_get_separate_environments(api: Api, user: str) -> None:
    slow = {"code": "import time\ntime.sleep(1.5)\nlen(df)", "dataset": "cities.csv"}
    replies = _post_all(api, user, [slow] * 4)
    assert [r.status_code for r in replies] == [200] * 4, [r.text for r in replies]
    assert all(r.json()["status"] == "ok" and r.json()["result"] == 3 for r in replies)
    # Runs that overlapped could not share an environment: one environment each.
    assert _environments(api, user) >= 2


def test_beyond_the_per_user_cap_requests_get_429_with_retry_after(api: Api) -> None:
    uid = ready_user(api, "capped")
    table = api.cloud.outputs["RegistryTableName"]
    # Eight runs already in flight (leases that expire in a minute), against the cap of 10.
    in_flight = {f"held-{i}": {"N": str(time.time() + 60)} for i in range(8)}
    api.cloud.client("dynamodb").put_item(
        TableName=table,
        Item={"pk": {"S": f"RUNS#{uid}"}, "leases": {"M": in_flight}, "v": {"N": "1"}},
    )
    replies = _post_all(api, uid, [{"code": "import time\ntime.sleep(1)\n1"}] * 4)

    codes = [r.status_code for r in replies]
    assert set(codes) <= {200, 429} and codes.count(429) >= 2, [r.text for r in replies]
    for reply in replies:
        if reply.status_code == 429:
            assert int(reply.headers["retry-after"]) >= 1
            assert "at most 10 at once" in reply.json()["message"]
        else:
            assert reply.json()["status"] == "ok"
    item = api.cloud.client("dynamodb").get_item(
        TableName=table, Key={"pk": {"S": f"RUNS#{uid}"}}, ConsistentRead=True
    )["Item"]
    assert set(item["leases"]["M"]) == set(in_flight)  # the runs that got in gave theirs back


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"code": "df.city.tolist()", "dataset": "cities.csv"}, "ok"),
        ({"code": "1 / 0", "dataset": "cities.csv"}, "error"),
        (
            {"code": "import time\ntime.sleep(5)", "dataset": "cities.csv", "timeout_s": 1},
            "timeout",
        ),
        ({"code": "df", "dataset": "missing.csv"}, "rejected"),
    ],
)
def test_run_answers_match_the_published_response_schema(
    api: Api, user: str, body: dict[str, Any], status: str
) -> None:
    reply = api.post("/run", api.cloud.id_token(user), json=body)
    assert reply.status_code == 200, reply.text
    envelope = RunEnvelope.model_validate(reply.json())
    assert envelope.status == status, envelope.error
    assert set(reply.json()) <= set(RunEnvelope.model_fields) | {"sandbox"}
