"""botocore errors on one line, IAM denials, polling with backoff, console links."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from botocore.exceptions import BotoCoreError, ClientError


def describe_client_error(exc: ClientError | BotoCoreError) -> str:
    """`Code: message` for a botocore error, on one line."""
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = err.get("Code") or "Error"
        message = (err.get("Message") or str(exc)).replace("\n", " ")
        return f"{code}: {message}"
    return str(exc).replace("\n", " ")


def error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def is_access_denied(exc: ClientError) -> bool:
    """An IAM denial: `AccessDenied` (XML services: S3, IAM, STS) or `AccessDeniedException`."""
    return error_code(exc) in {"AccessDenied", "AccessDeniedException"}


@dataclass
class Poller:
    """Poll with a deadline, backing off from `start` to `cap` seconds between checks."""

    timeout_s: float
    start: float = 0.1
    cap: float = 1.0
    _clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    _sleep: Callable[[float], None] = field(default=time.sleep, repr=False)

    def __iter__(self) -> Iterator[float]:
        begin = self._clock()
        delay = self.start
        while True:
            elapsed = self._clock() - begin
            yield elapsed
            if elapsed >= self.timeout_s:
                return
            self._sleep(min(delay, max(0.0, self.timeout_s - elapsed)))
            delay = min(self.cap, delay * 1.5)


def console_url(region: str, arn: str, kind: str = "execution") -> str:
    """The Step Functions console page for an execution or state machine ARN."""
    base = f"https://{region}.console.aws.amazon.com/states/home?region={region}#"
    if kind == "execution":
        return f"{base}/v2/executions/details/{arn}"
    return f"{base}/statemachines/view/{arn}"
