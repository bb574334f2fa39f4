"""Where a run's data comes from: the user's S3 prefix in Lambda, a directory locally.

Both return a local file path plus a version tag (the ETag) so the executor can keep parsed
frames across runs and reload exactly when the object changes.
"""

from __future__ import annotations

import hashlib
import os
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sandbox_runtime.request import RequestRejected


class DatasetNotFound(RequestRejected):
    """The named object does not exist under the user's prefix."""


class DatasetAccessDenied(RequestRejected):
    """The function's role may not read the named object."""


class DatasetTooLarge(RequestRejected):
    """The object is larger than the runtime is configured to load."""


class DatasetFetchError(RuntimeError):
    """Fetching failed for a reason that is not the caller's fault (S3 errors, disk full)."""


class SourceConfigError(ValueError):
    """DATA_BUCKET / USER_PREFIX are missing or malformed."""


@dataclass(frozen=True)
class LocalObject:
    """A dataset available on local disk, tagged with the version it was read at."""

    name: str
    path: str
    etag: str
    size: int
    downloaded: bool


class ObjectSource(Protocol):
    def fetch(self, name: str, max_bytes: int) -> LocalObject:
        """Make `name` (already validated) available locally."""
        ...


def validate_prefix(prefix: str) -> str:
    if not prefix or not prefix.endswith("/") or prefix.startswith("/"):
        raise SourceConfigError("USER_PREFIX must be a relative key prefix ending in '/'")
    if any(part in {"", ".", ".."} for part in prefix[:-1].split("/")):
        raise SourceConfigError("USER_PREFIX must not contain '.', '..' or empty segments")
    return prefix


class DirectorySource:
    """A local directory standing in for the user's S3 prefix (CLI, tests, benchmarks)."""

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.root = Path(root).resolve()
        if not self.root.is_dir():
            raise SourceConfigError(f"data directory {str(root)!r} does not exist")

    def fetch(self, name: str, max_bytes: int) -> LocalObject:
        path = (self.root / name).resolve()
        if not path.is_relative_to(self.root):
            # A symlink inside the directory pointing out of it.
            raise DatasetAccessDenied(f"dataset {name!r} resolves outside the data directory")
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise DatasetNotFound(f"dataset {name!r} does not exist") from None
        if not path.is_file():
            raise DatasetNotFound(f"dataset {name!r} is not a file")
        if stat.st_size > max_bytes:
            raise DatasetTooLarge(f"dataset {name!r} is larger than {max_bytes} bytes")
        version = f"{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}:{path}"
        etag = hashlib.sha256(version.encode()).hexdigest()[:32]
        return LocalObject(
            name=name, path=str(path), etag=etag, size=stat.st_size, downloaded=False
        )


def _error_code(exc: Exception) -> str:
    response: dict[str, Any] = getattr(exc, "response", {}) or {}
    return str(response.get("Error", {}).get("Code", ""))


class S3Source:
    """The user's prefix in the data bucket, cached under /tmp by ETag.

    A conditional GET (If-None-Match) revalidates the cached copy in one round trip; the
    function's role only needs s3:GetObject on its own prefix.
    """

    def __init__(
        self,
        bucket: str,
        prefix: str,
        cache_dir: str | os.PathLike[str],
        client_factory: Callable[[], Any] | None = None,
    ) -> None:
        if not bucket:
            raise SourceConfigError("DATA_BUCKET is not set")
        self.bucket = bucket
        self.prefix = validate_prefix(prefix)
        self.cache_dir = Path(cache_dir)
        self._client_factory = client_factory or _default_client
        self._client: Any = None
        self._client_key: tuple[str | None, ...] | None = None
        self._cached: dict[str, LocalObject] = {}
        # What each cached file looked like when we wrote it. Runs share the runtime's uid in
        # Lambda and could rewrite the cache; ctime cannot be set back, so any change shows.
        self._stamps: dict[str, tuple[int, ...]] = {}

    @staticmethod
    def _stamp(path: str) -> tuple[int, ...] | None:
        try:
            info = os.stat(path, follow_symlinks=False)
        except OSError:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return (info.st_dev, info.st_ino, info.st_size, info.st_mtime_ns, info.st_ctime_ns)

    @classmethod
    def from_env(cls, cache_dir: str | os.PathLike[str]) -> S3Source:
        return cls(os.environ.get("DATA_BUCKET", ""), os.environ.get("USER_PREFIX", ""), cache_dir)

    def _s3(self) -> Any:
        # Recreate the client if the function's temporary credentials were rotated.
        key = tuple(
            os.environ.get(name)
            for name in ("AWS_ACCESS_KEY_ID", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL")
        )
        if self._client is None or key != self._client_key:
            self._client = self._client_factory()
            self._client_key = key
        return self._client

    def fetch(self, name: str, max_bytes: int) -> LocalObject:
        key = self.prefix + name
        if not key.startswith(self.prefix):
            raise RequestRejected(f"dataset {name!r} is outside your data folder")
        cached = self._cached.get(key)
        if cached is not None and self._stamp(cached.path) != self._stamps.get(key):
            # Gone, replaced or written to since we stored it: fetch it whole again.
            Path(cached.path).unlink(missing_ok=True)
            cached = None
        kwargs: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if cached is not None:
            kwargs["IfNoneMatch"] = cached.etag
        try:
            response = self._s3().get_object(**kwargs)
        except Exception as exc:
            code = _error_code(exc)
            if code in {"304", "NotModified"} and cached is not None:
                return LocalObject(cached.name, cached.path, cached.etag, cached.size, False)
            if code in {"NoSuchKey", "404", "NotFound"}:
                raise DatasetNotFound(f"dataset {name!r} does not exist") from None
            if code in {"AccessDenied", "403", "AllAccessDisabled"}:
                raise DatasetAccessDenied(f"not allowed to read dataset {name!r}") from None
            raise DatasetFetchError(f"could not fetch dataset {name!r}: {code or exc}") from exc
        body = response["Body"]
        try:
            size = int(response.get("ContentLength", 0))
            if size > max_bytes:
                raise DatasetTooLarge(f"dataset {name!r} is larger than {max_bytes} bytes")
            etag = str(response.get("ETag", ""))
            path = self._store(key, etag, body, max_bytes)
        finally:
            body.close()
        if cached is not None and cached.path != str(path):
            Path(cached.path).unlink(missing_ok=True)
        fetched = LocalObject(name=name, path=str(path), etag=etag, size=size, downloaded=True)
        self._cached[key] = fetched
        stamp = self._stamp(str(path))
        if stamp is not None:
            self._stamps[key] = stamp
        return fetched

    def _store(self, key: str, etag: str, body: Any, max_bytes: int) -> Path:
        self.cache_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        digest = hashlib.sha256(f"{self.bucket}\0{key}\0{etag}".encode()).hexdigest()[:40]
        target = self.cache_dir / (digest + Path(key).suffix.lower())
        fd, tmp_name = tempfile.mkstemp(dir=self.cache_dir, prefix=".part-")
        written = 0
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in iter(lambda: body.read(1024 * 1024), b""):
                    written += len(chunk)
                    if written > max_bytes:
                        raise DatasetTooLarge(f"dataset is larger than {max_bytes} bytes")
                    out.write(chunk)
            os.replace(tmp_name, target)
        except OSError as exc:
            Path(tmp_name).unlink(missing_ok=True)
            raise DatasetFetchError(f"could not store the dataset locally: {exc}") from exc
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise
        return target


def _default_client() -> Any:
    import boto3  # imported lazily: the CLI path never needs it

    # boto3 honours AWS_ENDPOINT_URL (local cloud) and the VPC's S3 gateway endpoint natively.
    return boto3.client("s3")
