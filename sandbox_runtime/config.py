"""Server-side limits. Every limit a caller may ask for is clamped to these caps."""

from __future__ import annotations

import os
from dataclasses import dataclass, fields, replace
from pathlib import Path

MIB = 1024 * 1024

# Lambda's synchronous response limit is 6 MB; stay well below it after JSON encoding.
LAMBDA_RESPONSE_LIMIT = 6 * 1000 * 1000


class ConfigError(ValueError):
    """A SANDBOX_* environment variable holds a value the runtime cannot use."""


@dataclass(frozen=True)
class RuntimeConfig:
    """Caps and defaults for one runtime; `from_env` reads the SANDBOX_* overrides."""

    default_timeout_s: float = 30.0
    max_timeout_s: float = 120.0
    memory_mb: int = 1024
    default_output_bytes: int = 64 * 1024
    max_output_bytes: int = 512 * 1024
    flood_bytes: int = 16 * MIB
    max_procs: int = 32
    max_open_files: int = 256
    max_file_bytes: int = 128 * MIB
    # Everything one run may add to /tmp (all its files together, anywhere in /tmp).
    max_disk_bytes: int = 256 * MIB
    max_result_bytes: int = 1 * MIB
    max_rows: int = 1000
    max_figure_bytes: int = 2 * MIB
    max_figures: int = 20
    max_traceback_bytes: int = 32 * 1024
    max_envelope_bytes: int = 5_500_000
    max_code_bytes: int = 256 * 1024
    max_datasets: int = 8
    max_dataset_bytes: int = 4096 * MIB
    frame_cache_entries: int = 4
    network_guard: bool = True
    sandbox_uid: int = 65534
    sandbox_gid: int = 65534
    work_dir: str = "/tmp/sandbox-runtime"  # noqa: S108  (Lambda's only writable path)
    executor_start_timeout_s: float = 120.0
    # Kept back from the Lambda deadline to kill the run and still return the envelope.
    deadline_margin_s: float = 1.5

    def __post_init__(self) -> None:
        if self.max_envelope_bytes > LAMBDA_RESPONSE_LIMIT:
            raise ConfigError("max_envelope_bytes must stay below Lambda's 6 MB response limit")
        if self.default_timeout_s <= 0 or self.max_timeout_s <= 0:
            raise ConfigError("timeouts must be positive")
        for name in (
            "memory_mb",
            "default_output_bytes",
            "max_output_bytes",
            "flood_bytes",
            "max_procs",
            "max_open_files",
            "max_file_bytes",
            "max_disk_bytes",
            "max_result_bytes",
            "max_rows",
            "max_code_bytes",
            "max_datasets",
            "frame_cache_entries",
        ):
            if getattr(self, name) <= 0:
                raise ConfigError(f"{name} must be positive")

    @property
    def cache_dir(self) -> Path:
        return Path(self.work_dir) / "cache"

    @property
    def scratch_root(self) -> Path:
        return Path(self.work_dir) / "runs"

    def with_overrides(self, **changes: object) -> RuntimeConfig:
        return replace(self, **changes)  # type: ignore[arg-type]

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> RuntimeConfig:
        """Build from SANDBOX_<FIELD> variables (e.g. SANDBOX_MEMORY_MB=2048)."""
        env = os.environ if environ is None else environ
        changes: dict[str, object] = {}
        for field in fields(cls):
            raw = env.get(f"SANDBOX_{field.name.upper()}")
            if raw is None:
                continue
            kind = type(getattr(cls, field.name))
            try:
                if kind is bool:
                    lowered = raw.strip().lower()
                    if lowered not in {"true", "false", "1", "0"}:
                        raise ValueError(raw)
                    changes[field.name] = lowered in {"true", "1"}
                else:
                    changes[field.name] = kind(raw)
            except ValueError as exc:
                raise ConfigError(
                    f"SANDBOX_{field.name.upper()}={raw!r} is not a {kind.__name__}"
                ) from exc
        return cls(**changes)  # type: ignore[arg-type]
