"""Human-readable tables (rich) and plain JSON for scripts."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

MAX_CELL = 80


def dumps(value: Any) -> str:
    """Stable JSON for --json output (sorted keys are not forced: field order is meaningful)."""
    return json.dumps(value, indent=2, default=str, ensure_ascii=False)


def short_digest(digest: Any) -> str:
    """`sha256:0123456789ab` — enough to tell images apart in a table."""
    if not digest:
        return "-"
    text = str(digest)
    algo, _, hexpart = text.rpartition("@")[2].partition(":")
    return f"{algo}:{hexpart[:12]}" if hexpart else text[:19]


def clip(value: Any, width: int = MAX_CELL) -> str:
    if value is None or value == "":
        return "-"
    text = str(value).replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"


def full(value: Any) -> str:
    """A cell that carries meaning (an error, a detail, an id): whole, folded by the table."""
    if value is None or value == "":
        return "-"
    return " ".join(str(value).split())


def table(title: str | None, columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    t = Table(title=title, title_justify="left", header_style="bold", expand=False)
    for col in columns:
        t.add_column(col, overflow="fold")
    for row in rows:
        t.add_row(*(escape(clip(cell)) for cell in row))
    return t


STATUS_STYLE = {
    "READY": "green",
    "COMPLETED": "green",
    "SUCCEEDED": "green",
    "ok": "green",
    "FAILED": "red",
    "HALTED": "red",
    "ABORTED": "red",
    "TIMED_OUT": "red",
    "error": "red",
    "rejected": "yellow",
}


def styled(status: Any) -> Text:
    text = str(status) if status is not None else "-"
    return Text(text, style=STATUS_STYLE.get(text, ""))


def users_table(users: Sequence[dict[str, Any]]) -> Table:
    t = Table(title=f"{len(users)} user(s)", title_justify="left", header_style="bold")
    # A user's stack and function share one name: shown once, never folded, because operators
    # copy it into other tools. The other columns fold to make room.
    columns = ["uid", "status", "stack / function", "image digest", "last error"]
    # What the last smoke run found Lambda allowed (recorded by the rollout), when known.
    sandbox = any(u.get("sandbox_protections") is not None for u in users)
    if sandbox:
        columns.append("sandbox protections")
    names = [_stack_and_function(u) for u in users]
    whole = {
        "stack / function": max((len(line) for n in names for line in n.splitlines()), default=0),
    }
    for col in columns:
        t.add_column(col, overflow="fold", min_width=whole.get(col))
    for u, name in zip(users, names, strict=True):
        row: list[Any] = [
            escape(full(u.get("uid"))),
            styled(u.get("status")),
            escape(name),
            short_digest(u.get("image_digest")),
            escape(full(u.get("last_error"))),
        ]
        if sandbox:
            row.append(
                f"on: {_names(u.get('sandbox_protections'))}\n"
                f"refused: {_names(u.get('sandbox_refused'))}"
            )
        t.add_row(*row)
    return t


def _stack_and_function(user: dict[str, Any]) -> str:
    stack, function = full(user.get("stack_name")), full(user.get("function_name"))
    return stack if stack == function else f"{stack}\n{function}"


def _names(value: Any) -> str:
    if value is None:
        return "-"
    return escape(", ".join(sorted(str(v) for v in value)) or "none")


def _counts(r: dict[str, Any]) -> str:
    parts = []
    for key in ("total", "updated", "already_current", "failed", "skipped"):
        if key in r:
            parts.append(f"{key.replace('_', ' ')} {r[key]}")
    counts = r.get("counts")
    if isinstance(counts, dict):
        parts.extend(f"{k.replace('_', ' ')} {v}" for k, v in counts.items())
    groups = [", ".join(parts)] if parts else []
    # The live per-wave counters the workflow adds to as each user finishes.
    for wave in ("canary", "rest"):
        live = [
            f"{key.replace('_', ' ')} {r[f'{wave}_{key}']}"
            for key in ("updated", "already_current", "failed", "skipped")
            if f"{wave}_{key}" in r
        ]
        if live:
            groups.append(f"{wave}: " + ", ".join(live))
    return "; ".join(groups) or "-"


def rollouts_table(rollouts: Sequence[dict[str, Any]]) -> Table:
    t = Table(title=f"{len(rollouts)} rollout(s)", title_justify="left", header_style="bold")
    for col in ("rollout", "status", "image", "previous", "counts", "started", "finished"):
        t.add_column(col, overflow="fold")
    for r in rollouts:
        t.add_row(
            escape(full(r.get("rollout_id"))),
            styled(r.get("status")),
            short_digest(r.get("image_digest")),
            short_digest(r.get("previous_digest")),
            escape(_counts(r)),
            escape(clip(r.get("started_at"))),
            escape(clip(r.get("finished_at"))),
        )
    return t


def _failure_text(failure: Any) -> str:
    if isinstance(failure, dict) and "reason" in failure:
        where = failure.get("uid") or failure.get("stack_name") or "?"
        wave = f" ({failure['wave']} wave)" if failure.get("wave") else ""
        return f"{where}{wave}: {failure['reason']}"
    return failure if isinstance(failure, str) else json.dumps(failure, default=str)


def rollout_failures(rollouts: Sequence[dict[str, Any]]) -> list[str]:
    """`<rollout>: <who>: <reason>` lines, so reasons are shown, not just counted."""
    lines = []
    for r in rollouts:
        reasons = r.get("halt_reasons") or []
        for reason in reasons if isinstance(reasons, list) else [reasons]:
            lines.append(f"{r.get('rollout_id')}: halted: {_failure_text(reason)}")
        failures = r.get("failures") or []
        for f in failures if isinstance(failures, list) else [failures]:
            lines.append(f"{r.get('rollout_id')}: {_failure_text(f)}")
    return lines


def executions_table(rows: Sequence[dict[str, Any]], on_aws: bool) -> Table:
    t = Table(title=f"{len(rows)} execution(s)", title_justify="left", header_style="bold")
    cols = ["workflow", "execution", "user", "status", "started", "stopped", "cause"]
    if on_aws:
        cols.append("console")
    for col in cols:
        t.add_column(col, overflow="fold")
    for r in rows:
        cells: list[Any] = [
            r["workflow"],
            escape(full(r["name"])),
            escape(full(r.get("uid"))),
            styled(r["status"]),
            clip(r.get("started")),
            clip(r.get("stopped")),
            escape(full(r.get("cause"))),
        ]
        if on_aws:
            url = r.get("console_url", "")
            cells.append(Text("open", style=f"link {url}") if url else "-")
        t.add_row(*cells)
    return t


def status_table(checks: Sequence[dict[str, Any]]) -> Table:
    t = Table(title="control plane", title_justify="left", header_style="bold")
    for col in ("check", "ok", "detail"):
        t.add_column(col, overflow="fold")
    for c in checks:
        ok = Text("yes", style="green") if c["ok"] else Text("NO", style="bold red")
        t.add_row(escape(c["check"]), ok, escape(full(c["detail"])))
    return t


def _label(col: Any) -> str:
    return " / ".join(map(str, col)) if isinstance(col, list) else str(col)


def cell(value: Any) -> str:
    """A table cell: floats to at most 4 decimals (display only; --json keeps full precision)."""
    if isinstance(value, float):
        return f"{value:.4f}".rstrip("0").rstrip(".") if abs(value) < 1e15 else repr(value)
    return clip(value, 40)


def frame_table(result: dict[str, Any], kind: str = "dataframe", max_rows: int = 50) -> Table:
    """A DataFrame/Series result (split orientation, as the runtime returns it) as a table."""
    data = list(result.get("data") or [])
    if kind == "series":
        columns = [result.get("name") or "value"]
        data = [[v] for v in data]
    else:
        columns = list(result.get("columns") or [])
    index = result.get("index")
    names = [n for n in (result.get("index_names") or []) if n]
    show_index = isinstance(index, list) and len(index) == len(data)
    total = result.get("total_rows", len(data))
    title = f"{total} row(s)" + (
        f", showing {min(len(data), max_rows)}" if total != min(len(data), max_rows) else ""
    )
    t = Table(title=title, title_justify="left", header_style="bold")
    if show_index:
        t.add_column(escape(" / ".join(names)), style="dim")
    for col in columns:
        t.add_column(escape(_label(col)), justify="right")
    for i, row in enumerate(data[:max_rows]):
        cells = [escape(cell(v)) for v in (row if isinstance(row, list) else [row])]
        if show_index:
            assert isinstance(index, list)
            cells.insert(0, escape(clip(_label(index[i]), 40)))
        t.add_row(*cells)
    return t


def frame_records(result: Any) -> list[dict[str, Any]]:
    """A DataFrame result (split orientation) as a list of {column: value} rows."""
    if not isinstance(result, dict) or not isinstance(result.get("data"), list):
        raise ValueError("the result is not a table")
    columns = [_label(c) for c in result.get("columns") or []]
    return [dict(zip(columns, row, strict=True)) for row in result["data"]]


def result_renderable(result: Any, result_type: str | None = None) -> RenderableType:
    if result_type in {"dataframe", "series"} and isinstance(result, dict):
        return frame_table(result, result_type)
    if isinstance(result, str):
        return Text(result)
    return Text(dumps(result))


def _stream(envelope: dict[str, Any], name: str) -> str | None:
    text = str(envelope.get(name) or "")
    if envelope.get(f"{name}_truncated"):
        text += "\n[… truncated]"
    return text or None


def envelope_renderable(envelope: dict[str, Any], figure_paths: Sequence[Path]) -> Group:
    """The run's envelope for a person: status line, result table, streams, error, figures."""
    parts: list[RenderableType] = []
    status = str(envelope.get("status"))
    metrics = envelope.get("metrics") or {}
    keys = ("wall_ms", "cpu_ms", "peak_rss_mb", "load_ms", "cache")
    bits = [f"{k} {metrics[k]}" for k in keys if k in metrics]
    header = Text("status ")
    header.append(status, style=STATUS_STYLE.get(status, "bold"))
    if bits:
        header.append("   " + ", ".join(bits), style="dim")
    parts.append(header)
    if envelope.get("result") is not None:
        parts.append(result_renderable(envelope["result"], envelope.get("result_type")))
        if envelope.get("result_truncated"):
            parts.append(Text("(result truncated)", style="dim"))
    for name in ("stdout", "stderr"):
        text = _stream(envelope, name)
        if text:
            parts.append(Panel(Text(text.rstrip("\n")), title=name, title_align="left"))
    error = envelope.get("error")
    if error:
        if isinstance(error, dict):
            body = f"{error.get('type', 'Error')}: {error.get('message', '')}"
            if error.get("traceback"):
                body += "\n" + str(error["traceback"]).rstrip("\n")
        else:
            body = str(error)
        parts.append(Panel(Text(body), title="error", title_align="left", border_style="red"))
    for path in figure_paths:
        parts.append(Text(f"figure saved: {path}"))
    if envelope.get("figures_truncated"):
        parts.append(Text("(some figures were dropped to fit the response limit)", style="dim"))
    return Group(*parts)


# Piped output (CI logs, `| less`) is not 80 columns wide by nature; COLUMNS still decides.
PIPED_WIDTH = 160


def make_console(stderr: bool = False, **kwargs: Any) -> Console:
    console = Console(stderr=stderr, highlight=False, soft_wrap=False, **kwargs)
    if "width" not in kwargs and not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = PIPED_WIDTH
    return console


@contextmanager
def spinner(console: Console, what: str) -> Iterator[Callable[[str, float], None]]:
    """A spinner while waiting for `what`; yields a tick(status, elapsed) that updates it."""
    with console.status(what) as status:

        def tick(state: str, elapsed: float) -> None:
            status.update(f"{what}: {state} ({elapsed:.0f}s)")

        yield tick
