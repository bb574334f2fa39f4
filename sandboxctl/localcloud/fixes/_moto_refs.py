"""Helpers for the Step Functions/EventBridge/ECR fixes: idempotent patching of moto internals.

Many moto modules import helpers by name (``from … import extract_json``), so patching the
defining module alone leaves stale references behind; ``replace_everywhere`` swaps every
reference that still points at the original. Replacements carry the name of the fix that
installed them, so a second ``apply()`` recognises them and does nothing.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from sandboxctl.localcloud.fixes import FidelityCheckError

_MARK = "__sandbox_fleet_fix_name__"


def mark(func: Callable[..., Any], fix: str) -> Callable[..., Any]:
    """Tag a replacement with the fix that installed it."""
    setattr(func, _MARK, fix)
    return func


def is_marked(obj: Any, fix: str) -> bool:
    """True when ``obj`` is a replacement installed by ``fix``."""
    return getattr(obj, _MARK, None) == fix


def original_of(obj: Any) -> Any:
    """The moto function a ``functools.wraps`` replacement wraps (or ``obj`` itself)."""
    return getattr(obj, "__wrapped__", obj)


def import_tree(package: str) -> None:
    """Import every submodule of ``package`` so by-name imports exist before patching."""
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
        try:
            importlib.import_module(info.name)
        except ImportError:
            # A few LocalStack leftovers in moto import modules moto does not ship.
            continue


def replace_everywhere(
    module: ModuleType, name: str, replacement: Callable[..., Any], prefixes: Iterable[str]
) -> int:
    """Point ``module.name`` and its by-name imports under ``prefixes`` at ``replacement``."""
    original = getattr(module, name)
    prefixes = tuple(prefixes)
    count = 0
    for mod_name, mod in list(sys.modules.items()):
        if mod is None or not (mod is module or mod_name.startswith(prefixes)):
            continue
        if getattr(mod, name, None) is original:
            setattr(mod, name, replacement)
            count += 1
    return count


def require_attr(owner: Any, name: str, fix: str) -> Any:
    """Fetch a hook point or fail loudly: the pinned moto no longer has it."""
    if not hasattr(owner, name):
        raise FidelityCheckError(f"{fix}: moto no longer has {owner!r}.{name}; re-check the fix")
    return getattr(owner, name)


def require_params(func: Callable[..., Any], params: Iterable[str], fix: str) -> None:
    """Fail loudly when a hooked moto function no longer takes the parameters the fix uses."""
    have = set(inspect.signature(original_of(func)).parameters)
    missing = [p for p in params if p not in have]
    if missing:
        raise FidelityCheckError(
            f"{fix}: {getattr(func, '__qualname__', func)} no longer takes {missing}"
        )
