"""DeleteObjects is authorized per object, as DeleteObject or DeleteObjectVersion.

AWS behaviour restored: a multi-object delete (``POST /?delete``) needs, for each object,
``s3:DeleteObject`` on ``arn:aws:s3:::bucket/key`` (``s3:DeleteObjectVersion`` when the object
names a ``VersionId``); a role allowed to delete under ``users/*`` deletes every version of its
users' data in calls of up to 1,000 keys.

A denied object is not an error of the request: S3 deletes the permitted objects and lists
each denied one in ``Errors`` (``AccessDenied``), in a 200 answer.

moto 5.2.5 authorizes the whole request once as ``s3:DeleteObject`` on the *bucket* ARN, so a
role scoped to a prefix gets ``AccessDenied`` for every key. Hook:
``S3Response._bucket_response_post``: each object is authorized as AWS does; moto deletes the
permitted ones (with its own bucket-policy and object-lock checks) and the denied ones are
added to ``Errors``.
"""

from __future__ import annotations

from typing import Any

import xmltodict

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

FIX = "s3_delete_objects_authorization"


def _objects(body: Any) -> list[dict[str, Any]]:
    parsed = xmltodict.parse(body, strip_whitespace=False)
    objects = (parsed.get("Delete") or {}).get("Object", [])
    return objects if isinstance(objects, list) else [objects]


def _bucket_response_post(self: Any, request: Any, bucket_name: str) -> Any:
    from moto.s3.exceptions import S3AccessDeniedError
    from moto.s3.responses import S3Response

    self.path = self._get_path(request)
    if not (request.headers.get("Content-Length") and self.is_delete_keys()):
        return original(S3Response, "_bucket_response_post")(self, request, bucket_name)
    permitted, denied = [], []
    for obj in _objects(self.body):
        self.data["Action"] = "DeleteObjectVersion" if obj.get("VersionId") else "DeleteObject"
        try:
            self._authenticate_and_authorize_s3_action(
                bucket_name=bucket_name, key_name=obj.get("Key")
            )
        except S3AccessDeniedError:
            denied.append(obj)
        else:
            permitted.append(obj)
    self.data["Action"] = "DeleteObject"
    if not denied:
        return self._bucket_response_delete_keys(bucket_name, authenticated=True)
    if not permitted:
        return self._bucket_response_delete_keys(bucket_name, authenticated=False)
    return _delete_some(self, bucket_name, permitted, denied)


def _delete_some(
    self: Any, bucket_name: str, permitted: list[dict[str, Any]], denied: list[dict[str, Any]]
) -> Any:
    """moto's multi-object delete of the permitted objects, with the denied ones in Errors."""
    parsed = xmltodict.parse(self.body, strip_whitespace=False)
    parsed["Delete"]["Object"] = permitted
    self.body = xmltodict.unparse(parsed).encode()
    answer = self._bucket_response_delete_keys(bucket_name, authenticated=True)
    status, headers, body = answer if isinstance(answer, tuple) else (200, {}, answer)
    result = xmltodict.parse(body, force_list=("Deleted", "Error"))
    root = result["DeleteResult"]
    refused = [
        {"Key": o.get("Key"), "Code": "AccessDenied", "Message": "Access Denied"} for o in denied
    ]
    root["Error"] = [*(root.get("Error") or []), *refused]
    return status, headers, xmltodict.unparse(result)


def check() -> None:
    import inspect

    from moto.s3.responses import S3Response

    for name in ("_bucket_response_post", "_bucket_response_delete_keys", "is_delete_keys"):
        if not hasattr(S3Response, name):
            raise FidelityCheckError(f"{FIX}: S3Response.{name} is gone")
    source = inspect.getsource(original(S3Response, "_bucket_response_post"))
    if "self._authenticate_and_authorize_s3_action(bucket_name=bucket_name)" not in source:
        raise FidelityCheckError(f"{FIX}: moto no longer authorizes DeleteObjects on the bucket")


def apply() -> None:
    from moto.s3.responses import S3Response

    patch(S3Response, "_bucket_response_post", _bucket_response_post)
