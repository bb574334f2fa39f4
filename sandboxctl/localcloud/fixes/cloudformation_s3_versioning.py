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
from sandboxctl.localcloud.fixes._cfn_create import after_create, is_cfn_classmethod

FIX = "cloudformation_s3_versioning"


def _versioning(bucket: Any, properties: dict[str, Any], account_id: str, region: str) -> None:
    from moto.s3.models import s3_backends
    from moto.utilities.utils import get_partition

    status = (properties.get("VersioningConfiguration") or {}).get("Status")
    if status:
        s3_backends[account_id][get_partition(region)].put_bucket_versioning(bucket.name, status)


def check() -> None:
    from moto.s3.models import FakeBucket, S3Backend

    if not is_cfn_classmethod(FakeBucket):
        raise FidelityCheckError(f"{FIX}: FakeBucket.create_from_cloudformation_json changed")
    if not hasattr(S3Backend, "put_bucket_versioning"):
        raise FidelityCheckError(f"{FIX}: S3Backend.put_bucket_versioning is gone")


def apply() -> None:
    from moto.s3.models import FakeBucket

    after_create(FakeBucket, _versioning)
