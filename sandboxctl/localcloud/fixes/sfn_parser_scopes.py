"""AWS behaviour restored: executions that start at the same time run the definition they were
given. moto parses a definition for every execution, and its parser keeps the stack of
QueryLanguage scopes in a *class* attribute (``Preprocessor._query_language_per_scope = []``),
shared by every parse in every thread: two parses at once push and pop each other's scopes, so
a JSONata state is parsed as JSONPath (``ValueError: Unsupported declaration in
QueryLanguage=JSONata block``) and the execution stays RUNNING with no history.

Hook: ``Preprocessor.__init__``: each parser gets its own scope stack.
"""

from __future__ import annotations

from typing import Any

from moto.stepfunctions.parser.asl.parse.preprocessor import Preprocessor

from sandboxctl.localcloud.fixes import FidelityCheckError
from sandboxctl.localcloud.fixes._hooks import original, patch

FIX = "sfn_parser_scopes"


def _init(self: Any, *args: Any, **kwargs: Any) -> None:
    original(Preprocessor, "__init__")(self, *args, **kwargs)
    self._query_language_per_scope = []


def check() -> None:
    if not isinstance(Preprocessor.__dict__.get("_query_language_per_scope"), list):
        raise FidelityCheckError(f"{FIX}: Preprocessor no longer shares a scope list")


def apply() -> None:
    if "__init__" not in Preprocessor.__dict__:
        # Inherited: install our own, calling the parent's.
        parent_init = Preprocessor.__init__

        def base_init(self: Any, *args: Any, **kwargs: Any) -> None:
            parent_init(self, *args, **kwargs)

        Preprocessor.__init__ = base_init  # type: ignore[method-assign]
    patch(Preprocessor, "__init__", _init)
