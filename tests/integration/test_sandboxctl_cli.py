"""sandboxctl against the local cloud: the real template, workflows, functions and IAM."""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from rich.console import Console

from sandboxctl import cli
from sandboxctl.localcloud import server

pytestmark = pytest.mark.integration


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


@pytest.fixture(scope="module")
def endpoint(local_cloud: Any) -> Iterator[str]:
    """The connection file `sandboxctl local up` writes, so the CLI finds the operator keys."""
    path = server.write_connection(local_cloud)
    try:
        yield str(local_cloud.endpoint)
    finally:
        path.unlink(missing_ok=True)


def sandboxctl(endpoint: str, *argv: str) -> Result:
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        [*argv, "--endpoint", endpoint],
        out=Console(file=out, width=200, color_system=None),
        err=Console(file=err, width=200, color_system=None),
    )
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="module")
def desired_image(endpoint: str, local_cloud: Any) -> str:
    """Provisioning builds users on the desired image: push one unless a rollout already did."""
    from sandboxctl.controlplane import ControlPlane

    desired = ControlPlane.from_local_cloud(local_cloud).desired_image()
    if desired:
        return str(desired["image_digest"])
    res = sandboxctl(endpoint, "push-image", f"cli-{uuid.uuid4().hex[:8]}", "--wait", "--json")
    assert res.code == 0, res.err
    pushed = res.json()
    assert pushed["rollout"]["status"] == "COMPLETED"
    return str(pushed["image_digest"])


@pytest.fixture(scope="module")
def ready_user(endpoint: str, desired_image: str) -> dict[str, Any]:
    """One user signed up through the webhook and provisioned by the workflow."""
    uid = f"cli-{uuid.uuid4().hex[:8]}/Ünïcode"
    res = sandboxctl(endpoint, "signup", uid, "--email", "cli@example.com", "--wait", "--json")
    assert res.code == 0, res.err
    user: dict[str, Any] = res.json()
    return user


def test_signup_wait_returns_a_ready_user_with_their_own_stack(
    ready_user: dict[str, Any], desired_image: str, local_cloud: Any
) -> None:
    assert ready_user["status"] == "READY"
    assert ready_user["image_digest"] == desired_image
    assert (
        ready_user["stack_name"].startswith("sbx-")
        and ready_user["user_digest"] in (ready_user["stack_name"])
    )
    stack = local_cloud.client("cloudformation").describe_stacks(
        StackName=ready_user["stack_name"]
    )["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE"


def test_users_lists_the_new_user(endpoint: str, ready_user: dict[str, Any]) -> None:
    rows = sandboxctl(endpoint, "users", "--json").json()
    mine = [u for u in rows if u["uid"] == ready_user["uid"]]
    assert [(u["status"], u["function_name"]) for u in mine] == [
        ("READY", ready_user["function_name"])
    ]
    table = sandboxctl(endpoint, "users", "--status", "READY")
    assert table.code == 0 and ready_user["function_name"] in table.out


def test_upload_then_run_in_the_users_sandbox(
    endpoint: str, ready_user: dict[str, Any], local_cloud: Any, tmp_path: Path
) -> None:
    csv = tmp_path / "prices.csv"
    csv.write_text("item,price\napple,1.5\npear,2.25\napple,0.5\n")
    up = sandboxctl(endpoint, "upload", ready_user["uid"], str(csv), "--json")
    assert up.code == 0, up.err
    assert up.json()["key"] == f"users/{ready_user['user_digest']}/prices.csv"

    code = (
        "totals = df.groupby('item', as_index=False)['price'].sum()\n"
        "plt.bar(totals['item'], totals['price'])\n"
        "print('rows', len(df))\n"
        "totals\n"
    )
    figures = tmp_path / "figs"
    res = sandboxctl(
        endpoint,
        "run",
        ready_user["uid"],
        "--dataset",
        "prices.csv",
        "--code",
        code,
        "--figures-dir",
        str(figures),
        "--json",
    )
    assert res.code == 0, res.err
    envelope = res.json()
    assert envelope["status"] == "ok" and envelope["stdout"] == "rows 3\n"
    frame = pd.DataFrame(envelope["result"]["data"], columns=envelope["result"]["columns"])
    assert dict(zip(frame["item"], frame["price"], strict=True)) == {"apple": 2.0, "pear": 2.25}
    [png] = envelope["figure_paths"]
    assert Path(png).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")

    human = sandboxctl(
        endpoint,
        "run",
        ready_user["uid"],
        "--dataset",
        "prices.csv",
        "--code",
        code,
        "--figures-dir",
        str(figures),
    )
    assert human.code == 0 and "apple" in human.out and "figure saved:" in human.out


def test_run_outside_the_prefix_is_refused_by_the_runtime(
    endpoint: str, ready_user: dict[str, Any]
) -> None:
    res = sandboxctl(
        endpoint,
        "run",
        ready_user["uid"],
        "--dataset",
        "../someone-else/data.csv",
        "--code",
        "df",
        "--json",
    )
    assert res.code == 1
    assert res.json()["status"] == "rejected"


def test_run_for_an_unknown_user_is_one_line(endpoint: str) -> None:
    res = sandboxctl(endpoint, "run", "nobody-here", "--dataset", "x.csv", "--code", "1")
    assert res.code == 1
    assert res.err.strip() == (
        "sandboxctl: error: no user 'nobody-here' in the registry (sign them up first)"
    )


def test_a_forged_signup_is_refused_and_nothing_is_registered(
    endpoint: str, local_cloud: Any
) -> None:
    from sandboxctl.controlplane import ControlPlane

    cp = ControlPlane.from_local_cloud(local_cloud)
    cp.webhook_secret = lambda: "not-the-secret"  # type: ignore[method-assign]
    uid = f"forged-{uuid.uuid4().hex[:8]}"
    with pytest.raises(cli.SandboxctlError, match="HTTP 401"):
        cp.signup(uid)
    assert cp.get_user(uid) is None


def test_delete_user_wait_tombstones_the_user_and_removes_their_stack(
    endpoint: str, desired_image: str, local_cloud: Any, tmp_path: Path
) -> None:
    uid = f"cli-delete-{uuid.uuid4().hex[:8]}"
    signed = sandboxctl(endpoint, "signup", uid, "--wait", "--json")
    assert signed.code == 0, signed.err
    stack_name = signed.json()["stack_name"]
    data = tmp_path / "d.csv"
    data.write_text("a\n1\n")
    assert sandboxctl(endpoint, "upload", uid, str(data)).code == 0

    res = sandboxctl(endpoint, "delete-user", uid, "--wait", "--timeout", "120", "--json")
    assert res.code == 0, res.err
    assert res.json()["status"] == "DELETED"
    cfn = local_cloud.client("cloudformation")
    remaining = [
        s["StackStatus"]
        for s in cfn.list_stacks()["StackSummaries"]
        if s["StackName"] == stack_name and s["StackStatus"] != "DELETE_COMPLETE"
    ]
    assert remaining == []
    run = sandboxctl(endpoint, "run", uid, "--dataset", "x.csv", "--code", "1")
    assert run.code == 1 and "DELETED, not READY" in run.err


def test_executions_and_rollouts_show_what_the_workflows_did(
    endpoint: str, ready_user: dict[str, Any], desired_image: str
) -> None:
    executions = sandboxctl(endpoint, "executions", "--workflow", "ProvisionUser", "--json")
    assert executions.code == 0, executions.err
    rows = executions.json()
    assert any(e["status"] == "SUCCEEDED" for e in rows)
    assert ready_user["uid"] in {e["uid"] for e in rows}  # who each execution was for
    assert all(e["cause"] is None for e in rows if e["status"] == "SUCCEEDED")
    assert all("console_url" not in e for e in rows)  # links only on AWS

    rollouts = sandboxctl(endpoint, "rollouts", "--json")
    assert rollouts.code == 0, rollouts.err
    mine = [r for r in rollouts.json() if r["image_digest"] == desired_image]
    assert [r["status"] for r in mine] == ["COMPLETED"]
    human = sandboxctl(endpoint, "rollouts")
    assert "desired image: " in human.out and desired_image in human.out
