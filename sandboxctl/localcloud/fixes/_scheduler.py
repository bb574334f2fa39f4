"""A small in-process scheduler: run callables now or after a delay on daemon worker threads.

Used where AWS does work asynchronously after an API call returns (EventBridge target delivery
and its retries, a stack finishing after DescribeStacks showed it in progress).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

LOG = logging.getLogger(__name__)


class Scheduler:
    """Runs jobs on ``workers`` daemon threads, each no earlier than its due time."""

    def __init__(self, name: str, workers: int = 4) -> None:
        self._name = name
        self._workers = workers
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._counter = itertools.count()
        self._cond = threading.Condition()
        self._threads: list[threading.Thread] = []
        self._busy = 0

    def submit(self, job: Callable[[], None], delay: float = 0.0) -> None:
        """Run ``job`` after ``delay`` seconds (exceptions are logged, never raised here)."""
        with self._cond:
            self._start_locked()
            heapq.heappush(self._heap, (time.monotonic() + delay, next(self._counter), job))
            self._cond.notify()

    def idle(self) -> bool:
        """True when no job is queued or running."""
        with self._cond:
            return not self._heap and self._busy == 0

    def _start_locked(self) -> None:
        while len(self._threads) < self._workers:
            thread = threading.Thread(
                target=self._run, name=f"{self._name}-{len(self._threads)}", daemon=True
            )
            self._threads.append(thread)
            thread.start()

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._cond.wait(timeout)
                _, _, job = heapq.heappop(self._heap)
                self._busy += 1
            try:
                job()
            except Exception:
                LOG.exception("%s: scheduled job failed", self._name)
            finally:
                with self._cond:
                    self._busy -= 1
