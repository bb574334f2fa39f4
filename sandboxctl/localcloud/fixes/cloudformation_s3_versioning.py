"""A bucket created by CloudFormation keeps its ``VersioningConfiguration``.

AWS behaviour restored: ``AWS::S3::Bucket`` with ``VersioningConfiguration: {Status: Enabled}``
is a versioned bucket from the start: overwrites keep the older versions and DeleteObject only
adds a delete marker, which is why deleting a user's data must delete every version.

moto 5.2.5 reads only ``BucketEncryption`` and ``Tags`` from the template: the data bucket is
unversioned, so a DeleteObject really deletes and a workflow that leaves old versions behind
looks correct. Hook: ``FakeBucket.create_from_cloudformation_json`` (then
``S3Backend.put_bucket_versioning``).
"""

from __future__ import annotations

from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

FIX = "cloudformation_s3_versioning"


def _create_from_cloudformation_json(
    cls: Any,
    resource_name: str,
    cloudformation_json: Any,
    account_id: str,
    region_name: str,
    **kwargs: Any,
) -> Any:
    from moto.s3.models import FakeBucket, s3_backends
    from moto.utilities.utils import get_partition

    create = original(FakeBucket, "create_from_cloudformation_json").__func__
    bucket = create(cls, resource_name, cloudformation_json, account_id, region_name, **kwargs)
    properties = cloudformation_json.get("Properties") or {}
    status = (properties.get("VersioningConfiguration") or {}).get("Status")
    if status:
        backend = s3_backends[account_id][get_partition(region_name)]
        backend.put_bucket_versioning(bucket.name, status)
    return bucket


def check() -> None:
    from moto.s3.models import FakeBucket, S3Backend

    current = FakeBucket.__dict__.get("create_from_cloudformation_json")
    if not isinstance(current, classmethod):
        raise FidelityCheckError(f"{FIX}: FakeBucket.create_from_cloudformation_json changed")
    if not hasattr(S3Backend, "put_bucket_versioning"):
        raise FidelityCheckError(f"{FIX}: S3Backend.put_bucket_versioning is gone")


def apply() -> None:
    from moto.s3.models import FakeBucket

    patch(
        FakeBucket, "create_from_cloudformation_json", classmethod(_create_from_cloudformation_json)
    )
