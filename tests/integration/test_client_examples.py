"""docs/client.md's examples, run as a developer runs them, against the local HTTP API."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sandboxctl.localcloud.server import LocalCloud
from tests.integration.localcloud_support import ensure_desired_image
from tests.integration.test_http_api import Api, ready_user

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SALES = "region,units\nnorth,3\nsouth,5\nnorth,4\n"
CODE = """\
summary = df.groupby("region", as_index=False)["units"].sum()
summary.plot.bar(x="region", y="units")
print(f"{len(df)} rows")
summary
"""


@pytest.fixture(scope="module")
def developer(local_cloud: LocalCloud, tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    api = Api(local_cloud)
    ensure_desired_image(api.cp, "examples")
    uid = ready_user(api, "example")
    work = tmp_path_factory.mktemp("developer")
    (work / "sales.csv").write_text(SALES)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("SANDBOXCTL_")},
        "API_URL": local_cloud.api_url,
        "ID_TOKEN": local_cloud.id_token(uid),
        "WORK": str(work),
    }


def example(developer: dict[str, str], *argv: str) -> subprocess.CompletedProcess[str]:
    """Run an example from the developer's working directory with API_URL and ID_TOKEN set."""
    return subprocess.run(
        list(argv),
        cwd=developer["WORK"],
        env=developer,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_python_example_uploads_runs_and_saves_the_chart(developer: dict[str, str]) -> None:
    work = Path(developer["WORK"])
    res = example(
        developer,
        sys.executable,
        str(ROOT / "examples/client.py"),
        "--file",
        "sales.csv",
        "--code",
        CODE,
    )
    assert res.returncode == 0, res.stderr
    lines = res.stdout.splitlines()
    assert lines[0] == "3 rows"
    assert lines[1].split() == ["region", "units"]
    assert lines[2].split() == ["0", "north", "7"] and lines[3].split() == ["1", "south", "5"]
    assert (work / "figures/figure-1.png").read_bytes().startswith(b"\x89PNG")


def test_the_python_example_reports_a_failing_run(developer: dict[str, str]) -> None:
    client = str(ROOT / "examples/client.py")
    res = example(developer, sys.executable, client, "--file", "sales.csv", "--code", "1/0")
    assert res.returncode == 1
    assert "run ended error: ZeroDivisionError: division by zero" in res.stderr


@pytest.mark.skipif(not (shutil.which("curl") and shutil.which("jq")), reason="needs curl and jq")
def test_the_curl_example_runs_the_same_sequence(developer: dict[str, str]) -> None:
    res = example(developer, "bash", str(ROOT / "examples/curl.sh"), "sales.csv")
    assert res.returncode == 0, res.stderr
    answer = json.loads(res.stdout)
    assert answer["status"] == "ok" and answer["result_type"] == "dataframe"
    assert answer["result"]["columns"] == ["units"]
