"""One module per result of the theory; each defines ``DERIVATION``, a
:class:`simtheory.symbolic.Derivation` that builds its closed forms with SymPy and verifies them.

Modules are discovered automatically: adding a derivation means adding a module here that
defines ``DERIVATION``; nothing else has to be edited. Modules whose names start with ``_``
are skipped (``_template.py`` is the starting point for a new one).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil


@functools.lru_cache(maxsize=None)
def _by_name():
    table = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        deriv = getattr(module, "DERIVATION", None)
        if deriv is not None:
            if deriv.name in table:
                raise RuntimeError(f"two derivations are named {deriv.name!r}")
            table[deriv.name] = deriv
    return table


def names() -> tuple[str, ...]:
    """The names of all derivations, in module order."""
    return tuple(_by_name())


def get(name: str):
    """The derivation called ``name`` (see :func:`names`)."""
    table = _by_name()
    if name not in table:
        raise ValueError(f"unknown derivation {name!r}; known: {', '.join(sorted(table))}")
    return table[name]


def clear_cache() -> None:
    """Forget the discovered derivations (after an edit: :func:`simtheory.clear_caches` calls it)."""
    _by_name.cache_clear()


def all_derivations():
    return [get(n) for n in names()]
