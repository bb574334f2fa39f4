"""AWS behaviour restored: a successful ECR image push (PutImage) emits the "ECR Image Action"
event on the account's default event bus, and an image deletion (BatchDeleteImage) emits the
DELETE variant, shaped as the ECR user guide documents::

    {"source": "aws.ecr", "detail-type": "ECR Image Action", "resources": [],
     "detail": {"result": "SUCCESS", "repository-name": …, "image-digest": "sha256:…",
                "action-type": "PUSH" | "DELETE", "image-tag": …}}

moto emits nothing, so no rollout rule ever fires. A push that fails (an immutable tag already
used, say) emits nothing, and the tag moves moto does inside PutImage emit no DELETE.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
from typing import Any

from moto.ecr.models import ECRBackend

from sandboxctl.localcloud.fixes._moto_refs import (
    is_marked,
    mark,
    require_attr,
    require_params,
)

FIX = "ecr_push_event"
LOG = logging.getLogger(__name__)
_inside_put_image = threading.local()


def image_action_detail(
    action: str, repository: str, digest: str, tag: str | None
) -> dict[str, Any]:
    """``detail`` of an "ECR Image Action" event, keys in the documented order."""
    detail: dict[str, Any] = {
        "result": "SUCCESS",
        "repository-name": repository,
        "image-digest": digest,
        "action-type": action,
    }
    if tag:
        detail["image-tag"] = tag
    return detail


def _emit(backend: ECRBackend, detail: dict[str, Any]) -> None:
    from moto.events.models import events_backends

    events_backends[backend.account_id][backend.region_name].put_events(
        [
            {
                "Source": "aws.ecr",
                "DetailType": "ECR Image Action",
                "Detail": json.dumps(detail),
                "Resources": [],
                "EventBusName": "default",
            }
        ]
    )


def check() -> None:
    put = require_attr(ECRBackend, "put_image", FIX)
    require_params(put, ["repository_name", "image_manifest", "image_tag"], FIX)
    delete = require_attr(ECRBackend, "batch_delete_image", FIX)
    require_params(delete, ["repository_name", "image_ids"], FIX)
    from moto.ecr.models import Image

    require_attr(Image, "get_image_digest", FIX)


def apply() -> None:
    put_original = ECRBackend.put_image
    if not is_marked(put_original, FIX):

        @functools.wraps(put_original)
        def put_image(self: ECRBackend, repository_name: str, *args: Any, **kwargs: Any) -> Any:
            _inside_put_image.depth = getattr(_inside_put_image, "depth", 0) + 1
            try:
                image = put_original(self, repository_name, *args, **kwargs)
            finally:
                _inside_put_image.depth -= 1
            tag = kwargs.get("image_tag", args[1] if len(args) > 1 else None)
            _emit(self, image_action_detail("PUSH", repository_name, image.get_image_digest(), tag))
            return image

        ECRBackend.put_image = mark(put_image, FIX)  # type: ignore[method-assign]

    delete_original = ECRBackend.batch_delete_image
    if not is_marked(delete_original, FIX):

        @functools.wraps(delete_original)
        def batch_delete_image(
            self: ECRBackend, repository_name: str, *args: Any, **kwargs: Any
        ) -> Any:
            response = delete_original(self, repository_name, *args, **kwargs)
            if getattr(_inside_put_image, "depth", 0):
                return response
            for image_id in response.get("imageIds", []):
                _emit(
                    self,
                    image_action_detail(
                        "DELETE",
                        repository_name,
                        image_id.image_digest,
                        getattr(image_id, "image_tag", None),
                    ),
                )
            return response

        ECRBackend.batch_delete_image = mark(batch_delete_image, FIX)  # type: ignore[method-assign]
