"""What sandboxctl reports as one clear line (exit 1), or as a usage error (exit 2)."""

from __future__ import annotations


class SandboxctlError(Exception):
    """A failure worth one clear line on stderr and exit status 1."""


class UsageError(SandboxctlError):
    """The operator asked for something malformed; nothing was sent (exit status 2)."""


class OutputMissingError(SandboxctlError):
    """The control-plane stack lacks an output: that part is not deployed (yet)."""

    def __init__(self, key: str, stack: str) -> None:
        super().__init__(f"stack {stack} has no output {key}: that part is not deployed")
        self.key = key


class UserNotFoundError(SandboxctlError):
    """No registry entry for the UID."""


class WaitTimeoutError(SandboxctlError):
    """A --wait ran past its deadline."""


class WaitFailedError(SandboxctlError):
    """The workflow a --wait follows ended without reaching the awaited status."""
