"""A deleted user's data in the versioned data bucket (issue 10, item 9).

"delete" must remove every version and delete marker (a plain DeleteObject only adds a marker
and keeps the data); "retain N days" must mean N days after the deletion (the lifecycle rule
expires the versions the deletion made noncurrent; see also test_control_plane's retain test).
"""

from __future__ import annotations

import json
import uuid
from typing import Any

import pytest
from fleet import naming
from samtranslator.yaml_helper import yaml_parse

from tests.integration.localcloud_support import wait_for_value
from tests.integration.test_control_plane import FINAL, Plane, new_uid
from tests.integration.test_control_plane import plane as plane
from tests.unit.sfn_harness import ROOT

pytestmark = pytest.mark.integration


def delete_mode_machine(plane: Plane) -> str:
    """The deployed DeprovisionUser as a stack with DeletedUserData=delete would have it."""
    deployed = plane.sfn.describe_state_machine(
        stateMachineArn=plane.out["DeprovisionUserStateMachineArn"]
    )
    definition = deployed["definition"].replace(
        '"data_handling": "retain"', '"data_handling": "delete"'
    )
    assert definition != deployed["definition"]
    return str(
        plane.sfn.create_state_machine(
            name=f"deprovision-delete-{uuid.uuid4().hex[:8]}",
            definition=definition,
            roleArn=deployed["roleArn"],
        )["stateMachineArn"]
    )


def versions(plane: Plane, prefix: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    for page in plane.s3.get_paginator("list_object_versions").paginate(
        Bucket=plane.out["DataBucketName"], Prefix=prefix
    ):
        found += [(v["Key"], "version") for v in page.get("Versions", [])]
        found += [(m["Key"], "marker") for m in page.get("DeleteMarkers", [])]
    return found


def test_delete_mode_removes_every_version_and_marker_of_that_user_only(plane: Plane) -> None:
    uid, other = new_uid("purge"), new_uid("neighbour")
    for who in (uid, other):
        plane.cp.signup(who)
    for who in (uid, other):
        assert plane.wait_user(who, FINAL)["status"] == "READY"
    bucket = plane.out["DataBucketName"]
    prefix = naming.user_prefix(naming.user_digest(uid))
    theirs = naming.user_prefix(naming.user_digest(other))
    # 300 keys written twice, one of them deleted by the user earlier: 601 entries, two pages.
    for index in range(300):
        for body in (b"a\n1\n", b"a\n2\n"):
            plane.s3.put_object(Bucket=bucket, Key=f"{prefix}part-{index:03}.csv", Body=body)
    plane.s3.delete_object(Bucket=bucket, Key=f"{prefix}part-000.csv")
    plane.s3.put_object(Bucket=bucket, Key=f"{theirs}keep.csv", Body=b"a\n1\n")
    assert len(versions(plane, prefix)) == 601

    machine = delete_mode_machine(plane)
    detail = {
        "uid": uid,
        "user_digest": naming.user_digest(uid),
        "event_id": f"del-{uuid.uuid4().hex}",
        "deleted_at": "2030-01-01T00:00:00.000Z",
    }
    execution = plane.sfn.start_execution(
        stateMachineArn=machine, input=json.dumps({"detail": detail})
    )["executionArn"]

    def finished() -> dict[str, Any] | None:
        described: dict[str, Any] = plane.sfn.describe_execution(executionArn=execution)
        return None if described["status"] == "RUNNING" else described

    result = wait_for_value(finished, 240, "the delete-mode deprovisioning")
    assert result["status"] == "SUCCEEDED", plane.user(uid)["last_error"]  # type: ignore[index]
    assert versions(plane, prefix) == []  # no version, no delete marker: the data is gone
    assert versions(plane, theirs) == [(f"{theirs}keep.csv", "version")]
    assert plane.user(uid)["status"] == "DELETED"  # type: ignore[index]


def test_retention_counts_from_the_deletion_not_from_each_objects_creation() -> None:
    template = yaml_parse((ROOT / "template.yaml").read_text())
    rules = template["Resources"]["DataBucket"]["Properties"]["LifecycleConfiguration"]["Rules"]
    [deleted] = [r for r in rules if r["Id"] == "expire-deleted-users"]
    assert deleted["TagFilters"] == [{"Key": "sandbox-fleet:deleted-user", "Value": "true"}]
    # Expiration(InDays) counts from creation: a two-year-old file would go the day after.
    assert "ExpirationInDays" not in deleted and "ExpirationDate" not in deleted
    assert deleted["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": {"Ref": "DeletedUserRetentionDays"}
    }
    assert any(r.get("ExpiredObjectDeleteMarker") for r in rules)
