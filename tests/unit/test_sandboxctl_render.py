"""How sandboxctl shows envelopes, users and figures to a person."""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from sandboxctl import render
from sandboxctl.controlplane import SandboxctlError, save_figures

PNG = b"\x89PNG\r\n\x1a\n" + b"\x01" * 8


def text_of(renderable: Any) -> str:
    console = Console(width=160, color_system=None, record=True)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


def test_dataframe_result_keeps_index_and_says_when_rows_were_cut() -> None:
    result = {
        "columns": ["revenue", "orders"],
        "index": ["north", "south"],
        "data": [[10.5, 3], [2.25, 1]],
        "index_names": ["region"],
        "total_rows": 1000,
        "returned_rows": 2,
    }
    out = text_of(render.result_renderable(result, "dataframe"))
    assert "1000 row(s), showing 2" in out
    header = next(line for line in out.splitlines() if "revenue" in line)
    assert "region" in header and "orders" in header
    assert any("north" in line and "10.5" in line and "3" in line for line in out.splitlines())


def test_series_result_uses_its_name_as_the_column() -> None:
    result = {"name": "units", "index": ["a", "b"], "data": [1, 2], "total_rows": 2}
    out = text_of(render.result_renderable(result, "series"))
    assert "units" in out
    assert any("b" in line and "2" in line for line in out.splitlines())


def test_frame_records_rebuilds_rows() -> None:
    result = {"columns": ["team", "mean"], "index": [0, 1], "data": [["ops", 1.5], ["sales", 2.0]]}
    assert render.frame_records(result) == [
        {"team": "ops", "mean": 1.5},
        {"team": "sales", "mean": 2.0},
    ]
    with pytest.raises(ValueError):
        render.frame_records("a repr string")


def test_envelope_shows_status_streams_error_and_figures(tmp_path: Path) -> None:
    envelope = {
        "status": "error",
        "result": None,
        "result_type": "none",
        "stdout": "partial output\n",
        "stdout_truncated": True,
        "stderr": "warning: x\n",
        "error": {
            "type": "ZeroDivisionError",
            "message": "division by zero",
            "traceback": "line 3",
        },
        "metrics": {"wall_ms": 4.2, "cache": "miss"},
    }
    out = text_of(render.envelope_renderable(envelope, [tmp_path / "f-1.png"]))
    assert "status error" in out and "wall_ms 4.2" in out and "cache miss" in out
    assert "partial output" in out and "truncated" in out
    assert "warning: x" in out
    assert "ZeroDivisionError: division by zero" in out and "line 3" in out
    assert f"figure saved: {tmp_path / 'f-1.png'}" in out


def test_markup_in_user_output_is_shown_literally() -> None:
    envelope = {
        "status": "ok",
        "result": "[bold]x[/bold]",
        "result_type": "repr",
        "stdout": "[red]",
    }
    out = text_of(render.envelope_renderable(envelope, []))
    assert "[bold]x[/bold]" in out and "[red]" in out


def test_users_table_shortens_digests_and_shows_errors() -> None:
    users = [
        {
            "uid": "alice",
            "status": "FAILED",
            "stack_name": "sbx-dev-abc",
            "function_name": "sbx-dev-abc",
            "image_digest": "sha256:" + "f" * 64,
            "last_error": "ROLLBACK_COMPLETE: role quota",
        }
    ]
    out = text_of(render.users_table(users))
    assert "sha256:ffffffffffff " in out and "f" * 13 not in out
    assert "ROLLBACK_COMPLETE: role quota" in out and "FAILED" in out


def test_stack_and_function_names_stay_whole_when_every_column_is_shown() -> None:
    name = "sbx-local-wu2c2qc67uk25we4mza3egngp5"
    users = [
        {
            "uid": "cli-9eb9099f/Ünïcode",
            "status": "READY",
            "stack_name": name,
            "function_name": name,
            "image_digest": "sha256:" + "e" * 64,
            "last_error": "smoke run: " + " ".join(f"reason{i}" for i in range(30)),
            "sandbox_protections": ["no_new_privs", "seccomp", "rlimits", "pid_namespace"],
            "sandbox_refused": ["dumpable"],
        }
    ]
    console = Console(width=150, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render.users_table(users))
    out = console.export_text()
    assert name in out, out  # on one line, copyable
    assert "dumpable" in out and "seccomp" in out and "reason29" in out


@pytest.mark.parametrize(
    ("value", "short"),
    [
        ("sha256:" + "0123456789abcdef" * 4, "sha256:0123456789ab"),
        ("123.dkr.ecr.us-east-1.amazonaws.com/repo@sha256:" + "9" * 64, "sha256:999999999999"),
        (None, "-"),
    ],
)
def test_short_digest(value: str | None, short: str) -> None:
    assert render.short_digest(value) == short


def test_save_figures_writes_pngs_and_refuses_other_data(tmp_path: Path) -> None:
    good = {"figures": [base64.b64encode(PNG).decode(), {"png": base64.b64encode(PNG).decode()}]}
    paths = save_figures(good, tmp_path / "out", "run")
    assert [p.name for p in paths] == ["run-1.png", "run-2.png"]
    assert all(p.read_bytes() == PNG for p in paths)
    bad = {"figures": [base64.b64encode(b"<svg/>").decode()]}
    with pytest.raises(SandboxctlError, match="not a PNG"):
        save_figures(bad, tmp_path / "bad", "run")
    assert not (tmp_path / "bad" / "run-1.png").exists()


def test_table_cells_round_floats_for_display_only() -> None:
    result = {"columns": ["mean"], "index": [0, 1], "data": [[112141.3043478261], [2.5]]}
    out = text_of(render.result_renderable(result, "dataframe"))
    assert "112141.3043" in out and "112141.30434" not in out
    assert "2.5" in out and "2.5000" not in out


def test_errors_in_tables_are_wrapped_whole_never_cut_at_80_columns() -> None:
    error = "stack sbx-dev-abc CREATE_FAILED: " + " ".join(f"reason{i}" for i in range(30))
    user = {"uid": "u" * 70, "status": "FAILED", "last_error": error}
    console = Console(width=80, record=True, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(render.users_table([user]))
    out = console.export_text()
    # Cells fold across lines beside each other; every word of the error is still there.
    assert all(f"reason{i}" in out for i in range(30))
    assert "CREATE_FAILED:" in out and "…" not in out


def test_piped_output_is_wider_than_80_columns(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("COLUMNS", raising=False)
    assert render.make_console(file=open(os.devnull, "w")).width == render.PIPED_WIDTH  # noqa: SIM115


def test_rollouts_table_shows_the_live_per_wave_counters() -> None:
    running = {"rollout_id": "r1", "status": "RUNNING", "canary_updated": 2, "canary_failed": 1}
    running |= {"rest_updated": 7, "rest_already_current": 3}
    out = " ".join(text_of(render.rollouts_table([running])).split())
    assert "canary: updated 2, failed 1" in out.replace(" │ ", " ")
    assert "already current 3" in out
