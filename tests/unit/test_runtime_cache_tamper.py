"""A run shares the runtime's uid in Lambda: a rewritten download cache is never trusted."""

from __future__ import annotations

import os
from pathlib import Path

import boto3
from moto import mock_aws

from sandbox_runtime.sources import S3Source

BUCKET = "sandbox-fleet-cache-test"
PREFIX = "users/cachetamper000000000000/"


def test_a_cached_object_rewritten_in_place_is_fetched_again(tmp_path: Path) -> None:
    with mock_aws():
        s3 = boto3.client("s3", region_name="us-east-1")
        s3.create_bucket(Bucket=BUCKET)
        s3.put_object(Bucket=BUCKET, Key=PREFIX + "data.csv", Body=b"a\n1\n2\n")
        source = S3Source(BUCKET, PREFIX, tmp_path / "cache", lambda: s3)

        first = source.fetch("data.csv", 1 << 20)
        # What a run could do: same size, same mtime, different numbers.
        info = os.stat(first.path)
        Path(first.path).write_bytes(b"a\n9\n9\n")
        os.utime(first.path, ns=(info.st_atime_ns, info.st_mtime_ns))

        again = source.fetch("data.csv", 1 << 20)
        assert again.downloaded is True
        assert Path(again.path).read_bytes() == b"a\n1\n2\n"

        untouched = source.fetch("data.csv", 1 << 20)
        assert untouched.downloaded is False  # an unchanged copy is still revalidated cheaply
