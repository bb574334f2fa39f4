"""Helpers shared by the fix modules: patch a moto attribute once, recognise our own patch, and
give moto back as shipped.

Patches are process-global: a local cloud that stopped without undoing them would leave later
in-process moto users (``mock_aws`` unit tests) running against a patched moto. So ``patch``
records what it replaced, and ``remember_moto`` keeps a shallow copy of every loaded moto module
and class before the first fix goes in, which also covers the fixes that assign attributes
directly (``cls.attr = mark(...)``, ``_moto_refs.replace_everywhere``, the fault hooks).
``unpatch_all`` undoes both.
"""

from __future__ import annotations

import sys
from typing import Any

_MARK = "__sandbox_fleet_hook__"
_ORIGINAL = "__sandbox_fleet_original__"
_ABSENT = object()
_MOTO = "moto"

# (owner, name, what owner.__dict__ held before, or _ABSENT), in patch order.
_patched: list[tuple[Any, str, Any]] = []


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
    _patched.append((owner, name, vars(owner).get(name, _ABSENT)))
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


def _set(owner: Any, name: str, value: Any) -> None:
    if value is _ABSENT:
        if name in vars(owner):
            delattr(owner, name)
    else:
        setattr(owner, name, value)


def _moto_modules() -> dict[str, Any]:
    return {
        name: module
        for name, module in list(sys.modules.items())
        if module is not None and (name == _MOTO or name.startswith(_MOTO + "."))
    }


def _classes_of(module: Any) -> list[type]:
    return [
        value
        for value in list(vars(module).values())
        if isinstance(value, type) and value.__module__ == module.__name__
    ]


class _MotoSnapshot:
    """Every loaded moto module's and class's own attributes, by identity."""

    def __init__(self) -> None:
        self.modules = {name: dict(vars(m)) for name, m in _moto_modules().items()}
        self.classes = {
            cls: dict(vars(cls)) for m in _moto_modules().values() for cls in _classes_of(m)
        }

    def restore(self) -> None:
        replaced: dict[int, tuple[Any, Any]] = {}  # id(our object) -> (it, moto's)
        loaded = _moto_modules()
        for name, saved in self.modules.items():
            module = loaded.get(name)
            if module is None:
                continue
            now = vars(module)
            for attr, value in saved.items():
                current = now.get(attr, _ABSENT)
                if current is not value:
                    if current is not _ABSENT:
                        replaced[id(current)] = (current, value)
                    setattr(module, attr, value)
            # Names added since (submodules imported, lazy caches) are moto's own: kept.
        for cls, saved in self.classes.items():
            now = dict(vars(cls))
            for attr, value in saved.items():
                if now.get(attr, _ABSENT) is not value:
                    setattr(cls, attr, value)
            for attr in now.keys() - saved.keys():
                delattr(cls, attr)
        # Modules imported after the snapshot took our replacements by name (`from … import`).
        for name, module in loaded.items():
            if name in self.modules:
                continue
            for attr, value in list(vars(module).items()):
                ours = replaced.get(id(value))
                if ours is not None and ours[0] is value:
                    setattr(module, attr, ours[1])


_snapshot: _MotoSnapshot | None = None


def remember_moto() -> None:
    """Keep moto's current attributes for ``unpatch_all``; a no-op while a snapshot is held."""
    global _snapshot
    if _snapshot is None:
        _snapshot = _MotoSnapshot()


def unpatch_all() -> None:
    """Undo every ``patch`` and every other change to moto since ``remember_moto``."""
    global _snapshot
    while _patched:
        owner, name, previous = _patched.pop()
        _set(owner, name, previous)
    if _snapshot is not None:
        _snapshot.restore()
        _snapshot = None
