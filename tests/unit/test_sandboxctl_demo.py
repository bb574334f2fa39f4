"""The demo's own checks: what counts as passed, failed, or not available yet."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from sandboxctl.controlplane import ControlPlane, Target
from sandboxctl.demo import (
    FAILED,
    PASSED,
    UNAVAILABLE,
    Demo,
    DemoCheckFailed,
    check_result,
    demo_users,
)


def frame(df: Any) -> dict[str, Any]:
    return {
        "columns": list(df.columns),
        "index": list(range(len(df))),
        "data": df.to_numpy().tolist(),
        "total_rows": len(df),
    }


def test_check_result_accepts_the_table_pandas_computes_here() -> None:
    for user in demo_users("t"):
        check_result(user, {"status": "ok", "result": frame(user.expected)})


def test_check_result_rejects_a_wrong_number() -> None:
    user = demo_users("t")[0]
    wrong = user.expected.copy()
    wrong.loc[0, "revenue"] += 1
    with pytest.raises(DemoCheckFailed, match="pandas here says"):
        check_result(user, {"status": "ok", "result": frame(wrong)})
    with pytest.raises(DemoCheckFailed, match="rows"):
        check_result(user, {"status": "ok", "result": frame(user.expected.head(1))})


def test_demo_users_have_different_data() -> None:
    a, b = demo_users("t")
    assert a.uid != b.uid and a.csv != b.csv
    assert b"salary" not in a.csv


def make_demo(outputs: dict[str, str], tmp_path: Path) -> tuple[Demo, io.StringIO]:
    buffer = io.StringIO()
    demo = Demo(Console(file=buffer, width=160, color_system=None), tmp_path)
    demo.cp = ControlPlane(Target(endpoint="http://127.0.0.1:1"), outputs=outputs)
    return demo, buffer


def test_a_missing_output_is_not_available_and_the_demo_still_passes(tmp_path: Path) -> None:
    demo, buffer = make_demo({"RegistryTableName": "registry"}, tmp_path)

    def signup() -> str:
        demo.needs("SignupWebhookFunctionName", "RegistryTableName")
        raise AssertionError("unreachable without the webhook")

    demo.step("sign up", signup)
    demo.step("upload", lambda: "uploaded", after=["sign up"])
    assert [r.outcome for r in demo.results] == [UNAVAILABLE, UNAVAILABLE]
    assert "no output SignupWebhookFunctionName" in demo.results[0].detail
    assert demo.summary(1.0) == 0
    assert "2 not available yet, 0 failed" in buffer.getvalue()


def test_a_step_that_misbehaves_fails_the_demo_and_blocks_its_dependants(tmp_path: Path) -> None:
    demo, buffer = make_demo({}, tmp_path)

    def isolation() -> str:
        raise DemoCheckFailed("IAM allowed the attacker to read B's file")

    demo.step("ok step", lambda: "fine")
    demo.step("isolation", isolation, after=["ok step"])
    demo.step("later", lambda: "never runs", after=["isolation"])
    assert [r.outcome for r in demo.results] == [PASSED, FAILED, "skipped"]
    assert demo.summary(1.0) == 1
    out = buffer.getvalue()
    assert "IAM allowed the attacker to read B's file" in out and "demo FAILED" in out


def test_a_failure_is_never_downgraded_to_not_available_further_down(tmp_path: Path) -> None:
    demo, _ = make_demo({}, tmp_path)

    def boom() -> str:
        raise RuntimeError("local cloud did not deploy")

    demo.step("start", boom)
    demo.step("signup", lambda: "x", after=["start"])
    demo.step("upload", lambda: "x", after=["signup"])
    assert [r.outcome for r in demo.results] == [FAILED, "skipped", "skipped"]
    assert demo.results[0].detail == "RuntimeError: local cloud did not deploy"
    assert demo.summary(1.0) == 1
