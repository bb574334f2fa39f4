"""What each part installs: the emulator's dependencies stay in the `localcloud` extra."""

from __future__ import annotations

import io
import re
import sys
import tomllib
from pathlib import Path

import pytest
from rich.console import Console

from sandboxctl import cli

ROOT = Path(__file__).resolve().parents[2]
EMULATOR = {"moto", "aws-sam-translator", "jsonata-python", "pyjwt", "cfn-lint", "pyyaml"}


def names(requirements: list[str]) -> set[str]:
    return {re.split(r"[\[=<>~ ;]", r.strip(), maxsplit=1)[0].lower() for r in requirements if r}


def requirement_file(path: str) -> list[str]:
    lines = (ROOT / path).read_text().splitlines()
    return [line for line in lines if line.strip() and not line.lstrip().startswith("#")]


def test_the_emulator_is_an_extra_and_the_dev_install_includes_it() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not names(project["dependencies"]) & EMULATOR
    assert names(project["optional-dependencies"]["localcloud"]) == EMULATOR
    assert "sandbox-fleet[localcloud]" in project["optional-dependencies"]["dev"]


@pytest.mark.parametrize("path", ["functions/requirements.txt", "sandbox_runtime/requirements.txt"])
def test_functions_and_the_sandbox_image_install_no_emulator(path: str) -> None:
    assert not names(requirement_file(path)) & EMULATOR


@pytest.mark.parametrize("argv", [["local", "up"], ["local", "token", "alice"]])
def test_local_commands_without_the_extra_say_what_to_install(
    monkeypatch: pytest.MonkeyPatch, argv: list[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sandboxctl.localcloud.server", None)
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(
        argv,
        out=Console(file=out, width=200, color_system=None),
        err=Console(file=err, width=200, color_system=None),
    )
    assert code == 1
    assert "pip install 'sandbox-fleet[localcloud]'" in err.getvalue()
    assert len(err.getvalue().strip().splitlines()) == 1
