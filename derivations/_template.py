"""TEMPLATE for a new derivation: copy to ``derivations/<name>.py`` (no leading underscore).

The module is discovered automatically (``derivations.names()``); nothing else needs editing.
Fill in: the model and loss (derive vector fields with ``descent(loss_of, *params)``, never type them in), the
closed forms as named ``Formula`` objects whose ``args`` are the symbols a compiled predictor
takes by name, and the checks that prove them. See docs/tutorial_new_derivation.md.
"""

from __future__ import annotations

import sympy as sp

from simtheory.symbolic import (
    Derivation,
    Formula,
    at,
    check_zero,
    descent,
    gradient,
    identity_loss,
    matrix_symbols,
)

t = sp.Symbol("t", nonnegative=True)


class MyResult(Derivation):
    name = "my_result"  # unique; used by `simtheory derive my_result` and compiled("my_result", ...)
    title = "One line saying what is derived"
    reference = "where the result comes from"
    assumptions = ("state every assumption the closed form needs",)

    def build(self):
        # return {"formula_name": Formula(lhs, rhs, args=(symbols...), description="...")}
        raise NotImplementedError

    def checks(self, f):
        # return [check_zero("claim", expr_that_must_vanish), ...], using f["formula_name"].rhs
        raise NotImplementedError


# DERIVATION = MyResult()   # uncomment once build() and checks() are written
