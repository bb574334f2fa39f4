"""A stopped LocalCloud leaves moto as shipped, so a ``mock_aws`` test may run right after one.

The local cloud patches moto's classes in this process, turns IAM enforcement on and changes
moto's config and the environment; the suite runs in any order only if ``stop()`` gives all of
it back.
"""

from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws
from moto.core import config as moto_config

from sandboxctl.localcloud import server
from sandboxctl.localcloud.fixes import _hooks


def _moto_attributes() -> dict[tuple[str, str], Any]:
    """(owner, attribute) -> value for every loaded moto module and the classes it defines."""
    seen: dict[tuple[str, str], Any] = {}
    for name, module in list(sys.modules.items()):
        if module is None or not (name == "moto" or name.startswith("moto.")):
            continue
        for attr, value in list(vars(module).items()):
            if isinstance(value, type) and value.__module__ == name:
                for cls_attr, cls_value in list(vars(value).items()):
                    seen[(f"{name}.{value.__qualname__}", cls_attr)] = cls_value
            elif not isinstance(value, type(sys)):
                seen[(name, attr)] = value
    return seen


@pytest.fixture(scope="module")
def before_and_after() -> Iterator[tuple[dict[tuple[str, str], Any], dict[str, Any]]]:
    """moto's attributes before a template-less LocalCloud started, and moto's config then."""
    # Import what the fixes patch first, so "before" already holds every attribute they touch.
    from sandboxctl.localcloud import fixes

    fixes.fix_modules()
    before = _moto_attributes()
    config = {k: dict(v) for k, v in moto_config.default_user_config.items()}
    environ = dict(os.environ)
    cloud = server.LocalCloud(template=Path(tempfile.mkdtemp()) / "no-template.yaml")
    cloud.start()
    try:
        assert _hooks.is_patched(_lambda_function(), "invoke"), "the cloud patched nothing?"
        assert moto_config.default_user_config["stepfunctions"]["execute_state_machine"]
        assert os.environ["MOTO_PORT"] == str(cloud.port)
    finally:
        cloud.stop()
    yield before, {"config": config, "environ": environ}


def _lambda_function() -> Any:
    from moto.awslambda.models import LambdaFunction

    return LambdaFunction


def test_every_patched_moto_attribute_is_moto_s_own_again(
    before_and_after: tuple[dict[tuple[str, str], Any], dict[str, Any]],
) -> None:
    before, _ = before_and_after
    after = _moto_attributes()
    changed = sorted(
        f"{owner}.{attr}"
        for (owner, attr), value in before.items()
        if after.get((owner, attr), before) is not value
    )
    added = sorted(
        f"{owner}.{attr}"
        for (owner, attr), value in after.items()
        if (owner, attr) not in before and getattr(value, "__sandbox_fleet_hook__", False)
    )
    assert changed == []
    assert added == []
    assert not _hooks.is_patched(_lambda_function(), "invoke")


def test_iam_is_not_enforced_for_mock_aws(before_and_after: Any) -> None:
    with mock_aws():
        s3 = boto3.client(
            "s3",
            region_name="us-east-1",
            aws_access_key_id="no-such-key",
            aws_secret_access_key="no-such-secret",
        )
        s3.create_bucket(Bucket="after-a-local-cloud")
        assert [b["Name"] for b in s3.list_buckets()["Buckets"]] == ["after-a-local-cloud"]


def test_mock_aws_accepts_reserved_event_sources_as_moto_does(before_and_after: Any) -> None:
    # The local cloud rejects `aws.*` sources from callers (as AWS does); shipped moto accepts.
    with mock_aws():
        events = boto3.client("events", region_name="us-east-1")
        response = events.put_events(
            Entries=[{"Source": "aws.ecr", "DetailType": "ECR Image Action", "Detail": "{}"}]
        )
    assert response["FailedEntryCount"] == 0


def test_moto_config_and_environment_are_given_back(
    before_and_after: tuple[Any, dict[str, Any]],
) -> None:
    _, saved = before_and_after
    assert moto_config.default_user_config == saved["config"]
    assert moto_config.default_user_config["stepfunctions"]["execute_state_machine"] is False
    leftover = {
        k: v for k, v in os.environ.items() if saved["environ"].get(k) != v and "PYTEST" not in k
    }
    assert leftover == {}
    assert "MOTO_PORT" not in os.environ or os.environ["MOTO_PORT"] == saved["environ"].get(
        "MOTO_PORT"
    )
