"""Compile closed forms from ``derivations/`` into NumPy functions.

One object owns ``lambdify``: :func:`compiled` takes a derivation name and a formula name,
lambdifies the formula's right-hand side with common-subexpression elimination, and returns a
function whose arguments are passed **by name** (the names of the formula's symbols), so that no
code depends on the arbitrary order of ``free_symbols``. Compiled functions are cached in memory
for the life of the process; SymPy is imported only on the first call.
"""

from __future__ import annotations

import functools
from typing import Callable


class CompiledFormula:
    """A lambdified formula called with keyword arguments named after its symbols."""

    def __init__(self, derivation, formula: str):
        import sympy as sp

        if isinstance(derivation, str):
            from simtheory import derivations

            derivation = derivations.get(derivation)
        if not hasattr(derivation, "formulas") or not isinstance(getattr(derivation, "name", None), str):
            raise ValueError(
                "derivation must be a name in the derivations package or a Derivation object; "
                f"got {derivation!r}"
            )
        if formula not in derivation.formulas:
            raise ValueError(
                f"formula must be one of {sorted(derivation.formulas)} of {derivation.name}; got {formula!r}"
            )
        f = derivation.formulas[formula]
        if not f.args:
            raise ValueError(f"{derivation.name}.{formula} declares no arguments and cannot be compiled")
        self.derivation = derivation.name
        self.formula = formula
        self.arg_names = tuple(s.name for s in f.args)
        self.latex = f.latex()
        self._fn: Callable = sp.lambdify(list(f.args), f.rhs, modules="numpy", cse=True)

    def __call__(self, **kwargs):
        missing = set(self.arg_names) - set(kwargs)
        extra = set(kwargs) - set(self.arg_names)
        if missing or extra:
            raise TypeError(
                f"{self.derivation}.{self.formula} takes arguments {self.arg_names}; "
                f"missing {sorted(missing)}, unexpected {sorted(extra)}"
            )
        import numpy as np

        # the guard of the built-in predictors: an exponential that overflows in a decaying term (1 / exp(a t)
        # at large t) gives its limit, 0, without a warning (fatal where warnings are errors); a result that
        # is still not finite (inf / inf) keeps numpy's "invalid value" warning
        with np.errstate(over="ignore", under="ignore"):
            return self._fn(*(kwargs[n] for n in self.arg_names))

    def __repr__(self) -> str:
        return f"<compiled {self.derivation}.{self.formula}({', '.join(self.arg_names)})>"


@functools.lru_cache(maxsize=None)
def compiled(derivation, formula: str) -> CompiledFormula:
    """The compiled ``formula`` of ``derivation`` (a name in the ``derivations`` package, or a user's own
    :class:`~simtheory.symbolic.Derivation` object, e.g. one defined in the user's model module); cached per
    process (:func:`clear_caches` forgets them)."""
    return CompiledFormula(derivation, formula)


def clear_caches() -> None:
    """Pick up edited derivations: reload every module of ``derivations/`` from disk, forget the derivation
    table and every compiled formula. Call it after editing a derivation in a running session (a notebook);
    the next :func:`compiled` or ``derivations.get`` builds from the edited source."""
    import importlib
    import sys

    from simtheory import derivations

    compiled.cache_clear()
    for name in sorted(n for n in sys.modules if n.startswith(derivations.__name__ + ".")):
        module = sys.modules[name]
        if getattr(module, "__file__", None):
            importlib.reload(module)
    derivations.clear_cache()
