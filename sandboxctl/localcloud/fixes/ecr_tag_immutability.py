"""AWS behaviour restored: in a repository with immutable tags, pushing a *different* image onto a
tag that already exists fails with ``ImageTagAlreadyExistsException`` ("The image tag '…' already
exists in the '…' repository and cannot be overwritten because the repository is immutable"),
and an ``IMMUTABLE_WITH_EXCLUSION`` WILDCARD filter matches the whole tag (``*`` is the only
wildcard: ``live`` excludes ``live`` and not ``lively``).

moto raises ``ImageAlreadyExistsException`` (AWS's error for the same image and tag pushed again)
and matches the filter as a regular expression from the tag's start. Hook:
``ECRBackend._resolve_image_tag_mutability``.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from moto.core.exceptions import ServiceException
from moto.ecr.exceptions import ImageAlreadyExistsException
from moto.ecr.models import ECRBackend

from sandboxctl.localcloud.fixes._hooks import original, patch
from sandboxctl.localcloud.fixes._moto_refs import require_attr

FIX = "ecr_tag_immutability"


class ImageTagAlreadyExistsException(ServiceException):
    code = "ImageTagAlreadyExistsException"


def _whole_tag_filters(repository: Any) -> list[dict[str, str]] | None:
    filters = repository.image_tag_mutability_exclusion_filters
    if not filters:
        return filters
    return [
        {**f, "filter": fnmatch.translate(f["filter"])}
        if f.get("filterType", "WILDCARD") == "WILDCARD"
        else f
        for f in filters
    ]


def _resolve(self: ECRBackend, repository: Any, proposed_image_tag: str) -> Any:
    saved = repository.image_tag_mutability_exclusion_filters
    repository.image_tag_mutability_exclusion_filters = _whole_tag_filters(repository)
    try:
        return original(ECRBackend, "_resolve_image_tag_mutability")(
            self, repository, proposed_image_tag
        )
    except ImageAlreadyExistsException as error:
        raise ImageTagAlreadyExistsException(
            f"The image tag '{proposed_image_tag}' already exists in the '{repository.name}' "
            "repository and cannot be overwritten because the repository is immutable."
        ) from error
    finally:
        repository.image_tag_mutability_exclusion_filters = saved


def check() -> None:
    require_attr(ECRBackend, "_resolve_image_tag_mutability", FIX)


def apply() -> None:
    patch(ECRBackend, "_resolve_image_tag_mutability", _resolve)
