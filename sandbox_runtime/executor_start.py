"""Entry point of the executor process: non-dumpable before anything else is imported.

A process is shielded from same-uid peers (its /proc/<pid>/mem, environ, fds; ptrace) only
from the moment it calls PR_SET_DUMPABLE 0, so this runs first, before pandas and the rest of
the executor are even read from disk. Lambda's filter may refuse it: the executor then starts
anyway and reports the protection refused (the handler makes sure no run's process is alive
while it starts, see docs/security.md).
"""

import ctypes
import sys

PR_SET_DUMPABLE = 4
NON_DUMPABLE = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) == 0


def main() -> int:
    from sandbox_runtime import executor

    return executor.main(sys.argv[1:], non_dumpable=NON_DUMPABLE)


if __name__ == "__main__":
    sys.exit(main())
