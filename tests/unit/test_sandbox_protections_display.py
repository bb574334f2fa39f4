"""Operators see what Lambda allowed each user's sandbox, as the rollout's smoke run recorded it."""

from __future__ import annotations

from typing import Any

from rich.console import Console

from sandboxctl import render
from sandboxctl.controlplane import sandbox_protections_summary


def text_of(renderable: Any) -> str:
    console = Console(width=200, color_system=None, record=True)
    with console.capture() as capture:
        console.print(renderable)
    return capture.get()


USERS = [
    {
        "uid": "alice",
        "status": "READY",
        "sandbox_protections": ["non_dumpable", "seccomp", "process_sweep"],
        "sandbox_refused": ["pdeathsig"],
    },
    {"uid": "bob", "status": "READY"},
]


def test_users_table_shows_recorded_protections_and_refusals() -> None:
    out = text_of(render.users_table(USERS))

    assert "sandbox protections" in out
    lines = out.splitlines()
    at = next(i for i, line in enumerate(lines) if "alice" in line)
    assert "on: non_dumpable, process_sweep, seccomp" in lines[at]
    assert "refused: pdeathsig" in lines[at + 1]
    at = next(i for i, line in enumerate(lines) if "bob" in line)
    assert "on: -" in lines[at] and "refused: -" in lines[at + 1]  # nothing recorded yet


def test_users_table_without_any_record_keeps_its_columns() -> None:
    out = text_of(render.users_table([{"uid": "carol", "status": "READY"}]))
    assert "sandbox protections" not in out and "refused" not in out


def test_status_sums_refusals_over_users() -> None:
    more = [*USERS, {"uid": "dan", "sandbox_protections": [], "sandbox_refused": ["pdeathsig"]}]

    assert sandbox_protections_summary(more) == (
        "2 of 3 ready users reported; refused: pdeathsig (2)"
    )
    assert sandbox_protections_summary(USERS[1:]) == "no smoke run has recorded them yet"
