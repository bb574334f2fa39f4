"""Fidelity fixes: each module corrects one way moto differs from AWS.

Every module here defines ``apply() -> None`` (idempotent: patch moto toward AWS) and
``check() -> None`` (raise ``FidelityCheckError`` when the pinned moto no longer looks the way the
fix expects). ``apply_all`` discovers the modules, so adding a fix means adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType


class FidelityCheckError(RuntimeError):
    """The installed moto no longer matches what a fidelity fix was written against."""


def fix_modules() -> list[ModuleType]:
    """Every fix module in this package, in name order."""
    return [
        importlib.import_module(f"{__name__}.{info.name}")
        for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name)
        if not info.name.startswith("_")
    ]


def apply_all() -> list[str]:
    """Check then apply every fix; return the names applied. Fails loudly on a moto mismatch."""
    applied = []
    for module in fix_modules():
        module.check()
        module.apply()
        applied.append(module.__name__.rsplit(".", 1)[-1])
    return applied
