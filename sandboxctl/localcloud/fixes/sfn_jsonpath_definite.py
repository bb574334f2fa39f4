"""AWS behaviour restored: a *definite* JSONPath (only field names and single indices, such as
``$.Stacks[0].StackStatus``) yields the value itself; only an *indefinite* path (wildcard,
slice, filter, union, recursive descent) yields a list.

moto returns a one-element list whenever any step of the path indexes an array, so a Choice
on ``$.Stacks[0].StackStatus`` never matches and a stack wait loop spins until it times out.
"""

from __future__ import annotations

import functools
from typing import Any

from jsonpath_ng.ext import parse
from jsonpath_ng.jsonpath import Child, Fields, Index, JSONPath, Root, This
from moto.stepfunctions.parser.asl.utils import json_path

from sandboxctl.localcloud.fixes._moto_refs import (
    import_tree,
    is_marked,
    mark,
    replace_everywhere,
    require_attr,
)

FIX = "sfn_jsonpath_definite"
_PREFIXES = ("moto.stepfunctions.parser",)


def is_definite(expr: JSONPath) -> bool:
    """True when the path can address at most one node (Goessner's "definite path")."""
    if isinstance(expr, (Root, This)):
        return True
    if isinstance(expr, Child):
        return is_definite(expr.left) and is_definite(expr.right)
    if isinstance(expr, Fields):
        return len(expr.fields) == 1 and expr.fields[0] != "*"
    if isinstance(expr, Index):
        return len(expr.indices) == 1
    # Wildcard, Slice, Descendants, Filter, Where, unions, extensions: indefinite.
    return False


@functools.lru_cache(maxsize=4096)
def _compile(path: str) -> tuple[JSONPath, bool]:
    expr = parse(path)
    return expr, is_definite(expr)


def extract_json(path: str, data: Any) -> Any:
    """Evaluate an ASL JSONPath as Step Functions does."""
    expr, definite = _compile(path)
    matches = expr.find(data)
    if definite:
        if not matches:
            raise json_path.NoSuchJsonPathError(json_path=path, data=data)
        return matches[0].value
    if not matches and not json_path._contains_slice_or_wildcard_array(path):
        # Same as moto and AWS: a missing field on an indefinite path is still an error.
        raise json_path.NoSuchJsonPathError(json_path=path, data=data)
    return [match.value for match in matches]


def check() -> None:
    require_attr(json_path, "extract_json", FIX)
    require_attr(json_path, "NoSuchJsonPathError", FIX)
    require_attr(json_path, "_contains_slice_or_wildcard_array", FIX)


def apply() -> None:
    if is_marked(json_path.extract_json, FIX):
        return
    import_tree("moto.stepfunctions.parser.asl")
    replace_everywhere(json_path, "extract_json", mark(extract_json, FIX), _PREFIXES)
