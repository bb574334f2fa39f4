"""`sandboxctl doctor` on the local cloud: every check passes, and a broken one says the fix."""

from __future__ import annotations

import pytest

from sandboxctl import doctor
from tests.integration.test_control_plane import Plane
from tests.integration.test_control_plane import plane as plane
from tests.integration.test_sandboxctl_cli import desired_image as desired_image
from tests.integration.test_sandboxctl_cli import endpoint as endpoint
from tests.integration.test_sandboxctl_cli import sandboxctl

pytestmark = pytest.mark.integration


def test_doctor_passes_on_the_local_cloud_and_leaves_no_probe_behind(
    plane: Plane, endpoint: str, desired_image: str
) -> None:
    res = sandboxctl(endpoint, "doctor", "--json", "--timeout", "240")
    rows = res.json()
    by_name = {row["check"]: row for row in rows}
    assert list(by_name) == [
        "user template",
        "sandbox image",
        "probe user stack",
        "alarm topic",
        "firebase",
    ]
    assert res.code == 0, [row for row in rows if row["status"] == "fail"]
    assert {row["status"] for row in rows} <= {"pass", "warn"}
    probe = by_name["probe user stack"]["detail"]
    assert "created, updated and deleted through the service role" in probe
    assert "smoke run ok" in probe
    # The local stage has no Firebase service account: a warning saying what is lost.
    assert by_name["firebase"]["status"] == "warn"
    assert "missed signup is never provisioned" in by_name["firebase"]["detail"]
    assert plane.live_stack(doctor.PROBE_UID) is None  # the probe stack is gone again


def test_doctor_usage_errors_exit_2(endpoint: str) -> None:
    with pytest.raises(SystemExit) as usage:
        sandboxctl(endpoint, "doctor", "--timeout", "-5")
    assert usage.value.code == 2


def test_a_stale_user_template_fails_with_the_command_that_fixes_it(plane: Plane) -> None:
    bucket, key = plane.out["TemplatesBucketName"], plane.out["UserTemplateKey"]
    original = plane.s3.get_object(Bucket=bucket, Key=key)["Body"].read()
    plane.s3.put_object(Bucket=bucket, Key=key, Body=original + b"\n# edited by hand\n")
    try:
        check = doctor.Doctor(plane.cp)
        check._check("user template", check.user_template)
    finally:
        plane.s3.put_object(Bucket=bucket, Key=key, Body=original)
    [result] = check.checks
    assert result.status == "fail"
    assert "differs from templates/user-sandbox.yaml" in result.detail
    assert result.fix == f"aws s3 cp templates/user-sandbox.yaml s3://{bucket}/{key}"
