"""AWS behaviour restored: an ECR image digest is ``sha256:`` + the SHA-256 of the image
manifest exactly as pushed, so two different manifests never share a digest and the digest a
client computes locally is the one ECR reports (and rollouts address images by it).

moto hashes the concatenated layer digests instead (every manifest with the same layers, or
none, gets the same digest: ``sha256:e3b0c442…`` for an empty layer list) and, without a
``layers`` key, picks one of 101 random digests.
"""

from __future__ import annotations

import hashlib

from moto.ecr.models import Image

from sandboxctl.localcloud.fixes._moto_refs import is_marked, mark, require_attr

FIX = "ecr_image_digest"


def manifest_digest(manifest: str | bytes) -> str:
    """The registry digest of a manifest (OCI/Docker distribution spec)."""
    data = manifest.encode("utf-8") if isinstance(manifest, str) else manifest
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _create_digest(self: Image) -> None:
    self._image_digest = manifest_digest(self.image_manifest)


def check() -> None:
    require_attr(Image, "_create_digest", FIX)
    require_attr(Image, "get_image_digest", FIX)
    if "_image_digest" not in Image.get_image_digest.__code__.co_names:
        from sandboxctl.localcloud.fixes import FidelityCheckError

        raise FidelityCheckError(f"{FIX}: Image.get_image_digest no longer reads _image_digest")


def apply() -> None:
    if is_marked(Image._create_digest, FIX):
        return
    Image._create_digest = mark(_create_digest, FIX)  # type: ignore[method-assign]
