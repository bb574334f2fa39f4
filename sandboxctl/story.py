"""A story told as steps, checked for real: each step passes, fails, is skipped (a step it needs
did not pass) or is "not available yet" (the deployment lacks what it needs, never faked), and a
summary (a table, and `summary.json` for CI) says which. `sandboxctl demo` is one such story.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botocore.exceptions import ClientError
from rich.console import Console
from rich.markup import escape
from rich.rule import Rule
from rich.table import Table
from rich.text import Text

from sandboxctl import render
from sandboxctl.controlplane import SandboxctlError, describe_client_error

PASSED, FAILED, UNAVAILABLE, SKIPPED = "passed", "FAILED", "not available yet", "skipped"
STYLE = {PASSED: "green", FAILED: "bold red", UNAVAILABLE: "yellow", SKIPPED: "yellow"}


def one_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    text = text if len(text) <= limit else text[: limit - 1] + "…"
    return f"{type(exc).__name__}: {text}"


class StepFailed(Exception):
    """A step did not behave as the story shows it."""


class NotAvailable(Exception):
    """The deployment has no resource this step needs."""


@dataclass
class StepResult:
    name: str
    outcome: str
    detail: str
    seconds: float


@dataclass(frozen=True)
class Step:
    """One step of a story: its title, what it does (returns a one-line detail or raises), and
    the steps that must have passed first."""

    name: str
    run: Callable[[Any], str]
    after: tuple[str, ...] = ()


class StoryRunner:
    """Runs steps in order, prints each outcome as it happens, then the summary."""

    title = "story"  # the header
    name = "story"  # the verdict: "<name> passed" / "<name> FAILED"

    def __init__(self, console: Console, output_dir: Path) -> None:
        self.console = console
        self.output_dir = output_dir
        self.results: list[StepResult] = []

    def tell(self, story: Sequence[Step]) -> None:
        self.console.print(Rule(f"[bold]{escape(self.title)}"))
        for step in story:
            self.step(step.name, functools.partial(step.run, self), step.after)

    def passed(self, *names: str) -> bool:
        done = {r.name: r.outcome for r in self.results}
        return all(done.get(n) == PASSED for n in names)

    def step(self, name: str, fn: Callable[[], str], after: Sequence[str] = ()) -> bool:
        self.console.print(Rule(f"[bold]{escape(name)}", align="left"))
        began = time.monotonic()
        blocked = [n for n in after if not self.passed(n)]
        if blocked:
            outcome, detail = SKIPPED, f"needs: {', '.join(blocked)}"
            # A step behind an unavailable step is itself unavailable, not a failure.
            done = {r.name: r.outcome for r in self.results}
            if all(done.get(n) == UNAVAILABLE for n in blocked):
                outcome = UNAVAILABLE
        else:
            outcome, detail = self._attempt(fn)
        seconds = time.monotonic() - began
        self.results.append(StepResult(name, outcome, detail, seconds))
        line = Text(f"  → {outcome}", style=STYLE[outcome])
        line.append(f" ({seconds:.1f}s) {detail}", style="")
        self.console.print(line)
        return outcome == PASSED

    @staticmethod
    def _attempt(fn: Callable[[], str]) -> tuple[str, str]:
        try:
            return PASSED, fn()
        except NotAvailable as exc:
            return UNAVAILABLE, str(exc)
        except (StepFailed, SandboxctlError) as exc:
            return FAILED, str(exc)
        except ClientError as exc:
            return FAILED, describe_client_error(exc)
        except Exception as exc:  # the story reports every failure in its summary
            return FAILED, one_line(exc)

    def waiting(self, what: str) -> AbstractContextManager[Callable[[str, float], None]]:
        return render.spinner(self.console, what)

    def say(self, text: str) -> None:
        self.console.print(f"  {text}", markup=False, highlight=False)

    def summary_extra(self) -> dict[str, Any]:
        """More for summary.json (a story's own facts)."""
        return {}

    def write_summary(self, seconds: float, verdict: str) -> None:
        """summary.json beside what the story wrote: what CI and the end-to-end test read."""
        self.output_dir.mkdir(parents=True, exist_ok=True)
        data = {
            "verdict": verdict,
            "seconds": round(seconds, 2),
            "steps": [
                {"name": r.name, "outcome": r.outcome, "detail": r.detail, "seconds": r.seconds}
                for r in self.results
            ],
            **self.summary_extra(),
        }
        (self.output_dir / "summary.json").write_text(json.dumps(data, indent=2) + "\n")

    def summary(self, seconds: float) -> int:
        table = Table(title="summary", title_justify="left", header_style="bold")
        for col in ("step", "outcome", "seconds", "detail"):
            table.add_column(col, overflow="fold")
        for r in self.results:
            table.add_row(
                escape(r.name),
                Text(r.outcome, style=STYLE[r.outcome]),
                f"{r.seconds:.1f}",
                escape(render.full(r.detail)),
            )
        self.console.print(table)
        failed = [r for r in self.results if r.outcome in (FAILED, SKIPPED)]
        unavailable = [r for r in self.results if r.outcome == UNAVAILABLE]
        passed = len(self.results) - len(failed) - len(unavailable)
        verdict = f"{self.name} FAILED" if failed else f"{self.name} passed"
        self.write_summary(seconds, verdict)
        self.console.print(
            f"{verdict}: {passed} passed, {len(unavailable)} not available yet, "
            f"{len(failed)} failed, in {seconds:.1f}s",
            style="bold red" if failed else "bold green",
        )
        return 1 if failed else 0
