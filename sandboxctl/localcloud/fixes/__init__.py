"""Fidelity fixes: each module corrects one way moto differs from AWS.

Every module here defines ``apply() -> None`` (idempotent: patch moto toward AWS) and
``check() -> None`` (raise ``FidelityCheckError`` when the pinned moto no longer looks the way the
fix expects). ``apply_all`` discovers the modules, so adding a fix means adding a module.
"""

from __future__ import annotations

import importlib
import pkgutil
from types import ModuleType

from sandboxctl.localcloud.fixes import _hooks


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
    """Check then apply every fix; return the names applied. Fails loudly on a moto mismatch.

    moto as it was before the first fix (every moto module the fixes import) is remembered,
    so ``unapply_all`` can give it back.
    """
    modules = fix_modules()
    _hooks.remember_moto()
    applied = []
    for module in modules:
        module.check()
        module.apply()
        applied.append(module.__name__.rsplit(".", 1)[-1])
    return applied


def unapply_all() -> None:
    """Give moto back as it was before ``apply_all`` (and any hook installed since)."""
    _hooks.unpatch_all()
