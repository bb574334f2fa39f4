"""AWS behaviour restored: a Distributed Map whose ItemReader lists an empty S3 prefix
(``arn:aws:states:::s3:listObjectsV2``) runs zero iterations and succeeds.

ListObjectsV2 leaves ``Contents`` out of an empty listing; moto 5.2.5's reader indexes
``response["Contents"]`` and fails the Map with ``States.Runtime: 'Contents'`` (DeprovisionUser
hits it for every user who never uploaded a file). Hook:
``ResourceEvalS3._handle_list_objects_v2``.
"""

from __future__ import annotations

import inspect
from typing import Any

from moto.stepfunctions.parser.asl.component.state.exec.state_map.item_reader.eval import (
    resource_eval_s3,
)

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._moto_refs import is_marked, mark, require_attr

FIX = "sfn_itemreader_empty_listing"
_Reader = resource_eval_s3.ResourceEvalS3


def check() -> None:
    handler = require_attr(_Reader, "_handle_list_objects_v2", FIX)
    if is_marked(handler, FIX):
        return
    if 'response["Contents"]' not in inspect.getsource(handler):
        raise FidelityCheckError(
            f"{FIX}: moto's listObjectsV2 item reader changed; re-measure the empty-prefix case"
        )


def apply() -> None:
    if is_marked(_Reader._handle_list_objects_v2, FIX):
        return

    def _handle_list_objects_v2(
        env: Any, resource_runtime_part: Any, state_credentials: Any
    ) -> None:
        s3_client = _Reader._get_s3_client(
            resource_runtime_part=resource_runtime_part, state_credentials=state_credentials
        )
        parameters = env.stack.pop()
        response = s3_client.list_objects_v2(**parameters)
        env.stack.append(response.get("Contents", []))

    _Reader._handle_list_objects_v2 = staticmethod(mark(_handle_list_objects_v2, FIX))  # type: ignore[method-assign]
