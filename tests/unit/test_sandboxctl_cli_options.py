"""sandboxctl's surface: help on every argument, --version, the environment in --help, uploads."""

from __future__ import annotations

import argparse
import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from rich.console import Console

from sandboxctl import cli


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found += _parsers(sub)
    return found


def test_every_argument_and_option_has_help_text() -> None:
    missing = [
        f"{prog}: {'/'.join(action.option_strings) or action.dest}"
        for prog, parser in _parsers(cli.build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction) and not action.help
    ]
    assert missing == []


def test_version_and_the_environment_are_in_the_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("sandboxctl ")
    text = cli.build_parser().format_help()
    for variable in ("SANDBOXCTL_ENDPOINT", "SANDBOXCTL_STACK", "AWS_REGION", "SANDBOXCTL_DEBUG"):
        assert variable in text


def test_upload_refuses_a_type_run_would_refuse_before_sending_anything(tmp_path: Path) -> None:
    sheet = tmp_path / "sales.xlsx"
    sheet.write_bytes(b"PK\x03\x04 not a csv")
    err = io.StringIO()
    code = cli.main(
        ["upload", "alice", str(sheet), "--endpoint", "http://127.0.0.1:9"],
        out=Console(file=io.StringIO()),
        err=Console(file=err),
    )
    assert code == cli.EXIT_USAGE
    assert "'sales.xlsx' is not a type the sandbox reads; use one of .csv" in err.getvalue()


def test_local_up_without_the_project_sources_says_what_it_needs(tmp_path: Path) -> None:
    env = {**os.environ, "SANDBOXCTL_PROJECT_ROOT": str(tmp_path)}
    res = subprocess.run(
        [sys.executable, "-m", "sandboxctl.cli", "local", "up"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert res.returncode == 1
    assert "from a source checkout" in res.stderr and "SANDBOXCTL_PROJECT_ROOT" in res.stderr
