"""Helpers shared by the fix modules: patch a moto attribute once, and recognise our own patch."""

from __future__ import annotations

from typing import Any

_MARK = "__sandbox_fleet_hook__"
_ORIGINAL = "__sandbox_fleet_original__"


def _function_of(value: Any) -> Any:
    if isinstance(value, (classmethod, staticmethod)):
        return value.__func__
    if isinstance(value, property):
        return value.fget
    return value


def _current(owner: Any, name: str) -> Any:
    return owner.__dict__.get(name) if isinstance(owner, type) else getattr(owner, name, None)


def patch(owner: Any, name: str, replacement: Any) -> None:
    """Set `owner.name` to `replacement` (function, classmethod or property), once."""
    if is_patched(owner, name):
        return
    function = _function_of(replacement)
    setattr(function, _MARK, True)
    setattr(function, _ORIGINAL, _current(owner, name))
    setattr(owner, name, replacement)


def is_patched(owner: Any, name: str) -> bool:
    """True when `owner.name` is one of our replacements."""
    return bool(getattr(_function_of(_current(owner, name)), _MARK, False))


def original(owner: Any, name: str) -> Any:
    """moto's own implementation of `owner.name` (a classmethod/property object as moto had it)."""
    current = _current(owner, name)
    function = _function_of(current)
    if getattr(function, _MARK, False):
        return getattr(function, _ORIGINAL)
    return current
