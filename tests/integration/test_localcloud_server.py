"""The LocalCloud itself: start-up checks, one cloud per process, connection files, spawning."""

from __future__ import annotations

import io
import os
import stat
from collections.abc import Callable
from typing import Any

import pytest

from sandboxctl.localcloud import fixes, server
from sandboxctl.localcloud.fixes import FidelityCheckError
from tests.integration.localcloud_support import make_role, unique

pytestmark = pytest.mark.integration


def test_every_fix_passes_its_check_and_applies_once(local_cloud: Any) -> None:
    assert fixes.apply_all() == local_cloud.fixes_applied
    assert {"lambda_exec", "iam_policy_evaluation", "cloudformation_statemachine"} <= set(
        local_cloud.fixes_applied
    )


def test_check_fails_loudly_when_moto_no_longer_looks_as_expected(
    local_cloud: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from moto.iam.access_control import IAMRequestBase

    from sandboxctl.localcloud.fixes import iam_lambda_get_signature

    def reworked(self: Any) -> Any:  # what a future moto might ship instead
        return None

    monkeypatch.setattr(IAMRequestBase, "_create_aws_request", reworked)
    with pytest.raises(FidelityCheckError, match="iam_lambda_get_signature"):
        iam_lambda_get_signature.check()


def test_only_one_cloud_runs_per_process(local_cloud: Any) -> None:
    with pytest.raises(server.LocalCloudError, match="already running"):
        server.LocalCloud().start()
    assert server._active is local_cloud


def test_bad_port_is_refused() -> None:
    with pytest.raises(ValueError, match="port"):
        server.LocalCloud(port=70000)


def test_resources_and_outputs_describe_the_deployed_template(local_cloud: Any) -> None:
    types = {resource_type for _, resource_type, _ in local_cloud.resources}
    assert {"AWS::Lambda::Function", "AWS::StepFunctions::StateMachine", "AWS::IAM::Role"} <= types
    assert all(logical_id and kind for logical_id, kind, _ in local_cloud.resources)
    assert local_cloud.outputs["Stage"] == "local"
    out = io.StringIO()
    server.print_resources(local_cloud, out)
    assert local_cloud.outputs["SignupWebhookFunctionName"] in out.getvalue()


def test_connection_file_is_private_and_found_by_endpoint(local_cloud: Any) -> None:
    path = server.write_connection(local_cloud)
    try:
        assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
        connection = server.load_connection(local_cloud.endpoint)
        assert connection["aws_access_key_id"] == local_cloud.admin_credentials[0]
        assert connection["outputs"] == local_cloud.outputs
    finally:
        path.unlink()
    with pytest.raises(server.LocalCloudError, match="no local cloud"):
        server.load_connection(local_cloud.endpoint)
    with pytest.raises(server.LocalCloudError, match="not a local cloud endpoint"):
        server.load_connection("https://example.com")


def test_a_spawned_cloud_is_independent_of_this_one(
    local_cloud: Any, spawn_cloud: Callable[..., Any]
) -> None:
    other = spawn_cloud(faults="slow", seed=7)
    assert other.endpoint != local_cloud.endpoint
    assert other.outputs["Stage"] == "local"
    bucket = unique("lc-spawned")
    other.client("s3").create_bucket(Bucket=bucket)
    mine = {b["Name"] for b in local_cloud.client("s3").list_buckets()["Buckets"]}
    theirs = {b["Name"] for b in other.client("s3").list_buckets()["Buckets"]}
    assert bucket in theirs and bucket not in mine
    role = make_role(
        other,
        [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": f"arn:aws:s3:::{bucket}"}],
    )
    s3 = other.session_for_role(role).client("s3", endpoint_url=other.endpoint)
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


def test_a_template_that_fails_to_deploy_is_reported_with_its_reason(
    tmp_path: Any, spawn_cloud: Callable[..., Any]
) -> None:
    template = tmp_path / "template.yaml"
    template.write_text(
        "Resources:\n"
        "  Machine:\n"
        "    Type: AWS::StepFunctions::StateMachine\n"
        "    Properties:\n"
        "      RoleArn: arn:aws:iam::123456789012:role/nobody\n"
        '      DefinitionString: \'{"StartAt": "Nowhere", "States": {}}\'\n'
    )
    with pytest.raises(server.LocalCloudError, match=r"ROLLBACK_COMPLETE.*Machine"):
        spawn_cloud(template=template)
