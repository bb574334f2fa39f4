"""Local CLI: run code files through the real handler path with a directory standing in for S3.

    python -m sandbox_runtime run --data-dir DIR --dataset NAME --code-file FILE [...]

Prints one envelope per line as JSON; exits 0 whenever envelopes were printed, whatever the
user code did (its outcome is in each envelope's `status`).
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from sandbox_runtime.config import ConfigError, RuntimeConfig
from sandbox_runtime.runtime import ExecutorStartError, Runtime
from sandbox_runtime.sources import DirectorySource, SourceConfigError


@dataclass
class LocalContext:
    """Stands in for the Lambda context: the CLI has no invocation deadline of its own."""

    remaining_ms: int

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m sandbox_runtime")
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run code files against a local data directory")
    run.add_argument("--data-dir", required=True, help="directory standing in for the S3 prefix")
    run.add_argument(
        "--dataset", action="append", default=[], help="dataset key (repeat for several)"
    )
    run.add_argument("--code-file", action="append", required=True, help="code to run, in order")
    run.add_argument("--repeat", type=int, default=1, help="run the whole sequence N times")
    run.add_argument("--timeout-s", type=float, default=None, help="per-run wall-clock limit")
    run.add_argument("--memory-mb", type=int, default=None, help="per-run memory budget")
    run.add_argument("--max-output-bytes", type=int, default=None, help="stdout/stderr cap")
    run.add_argument("--work-dir", default=None, help="scratch and cache directory")
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")
    codes: list[str] = []
    for name in args.code_file:
        try:
            codes.append(Path(name).read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError) as exc:
            parser.error(f"cannot read --code-file {name}: {exc}")
    try:
        config = RuntimeConfig.from_env()
        overrides: dict[str, object] = {}
        if args.memory_mb is not None:
            overrides["memory_mb"] = args.memory_mb
        if args.work_dir is not None:
            overrides["work_dir"] = args.work_dir
        config = config.with_overrides(**overrides)
        source = DirectorySource(args.data_dir)
    except (ConfigError, SourceConfigError) as exc:
        parser.error(str(exc))

    event_base: dict[str, object] = {}
    if args.dataset:
        event_base["dataset"] = args.dataset[0]
        if len(args.dataset) > 1:
            event_base["datasets"] = args.dataset
    if args.timeout_s is not None:
        event_base["timeout_s"] = args.timeout_s
    if args.max_output_bytes is not None:
        event_base["max_output_bytes"] = args.max_output_bytes

    runtime = Runtime(config, source)
    context = LocalContext(remaining_ms=int((config.max_timeout_s + 600) * 1000))
    try:
        for round_number in range(args.repeat):
            for index, code in enumerate(codes):
                event = dict(event_base, code=code, request_id=f"{round_number + 1}.{index + 1}")
                envelope = runtime.invoke(event, context)
                sys.stdout.write(json.dumps(envelope) + "\n")
                sys.stdout.flush()
    except ExecutorStartError as exc:
        print(f"sandbox_runtime: {exc}", file=sys.stderr)
        return 1
    finally:
        runtime.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
