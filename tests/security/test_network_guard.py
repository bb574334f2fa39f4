"""The in-process audit hook refuses sockets and new programs with a clear error."""

from __future__ import annotations

import socket

import pytest

from tests.security.conftest import Sandbox


def test_socket_connections_are_refused(sandbox: Sandbox, listener: socket.socket) -> None:
    port = listener.getsockname()[1]
    code = f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)"
    envelope = sandbox.run(code)

    assert envelope["status"] == "error"
    assert envelope["error"]["type"] == "SandboxPolicyError"
    assert "no network access" in envelope["error"]["message"]
    assert 'File "<user-code>", line 2' in envelope["error"]["traceback"]
    with pytest.raises(BlockingIOError):
        listener.accept()  # nobody ever connected
    sandbox.assert_serves_normally()


def test_reading_from_a_url_is_refused(sandbox: Sandbox) -> None:
    envelope = sandbox.run("pd.read_csv('http://127.0.0.1:9/data.csv')")

    assert envelope["status"] == "error"
    assert envelope["error"]["type"] == "SandboxPolicyError"


@pytest.mark.parametrize(
    "code",
    [
        "import subprocess\nsubprocess.run(['/bin/true'])",
        "import os\nos.system('true')",
        "import os\nos.execv('/bin/true', ['true'])",
        "import os\nos.posix_spawn('/bin/true', ['true'], {})",
    ],
    ids=["subprocess", "os.system", "os.execv", "posix_spawn"],
)
def test_starting_programs_is_refused(sandbox: Sandbox, code: str) -> None:
    envelope = sandbox.run(code)

    assert envelope["status"] == "error"
    assert envelope["error"]["type"] == "SandboxPolicyError"
    assert "cannot start programs" in envelope["error"]["message"]
    sandbox.assert_serves_normally()


def test_the_guard_can_be_turned_off_by_the_operator_only(sandbox: Sandbox) -> None:
    # The event has no switch for it: an unknown field is rejected, nothing runs.
    envelope = sandbox.run("1", network_guard=False)

    assert envelope["status"] == "rejected"
    assert "network_guard" in envelope["error"]["message"]
