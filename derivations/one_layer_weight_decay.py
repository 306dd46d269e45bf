"""One-layer linear model with weight decay (L2 penalty lambda/2 ||W||_F^2) under gradient flow.

From ``L = 1/2 tr((W - I) A (W - I)^T) + lambda/2 ||W||_F^2`` the flow is
``dW/dt = -(W - I) A - lambda W`` (derived by differentiation). With ``A = diag(a)``:

    w_ki(t) = delta_ki a_i/(a_i + lambda) + (w_ki(0) - delta_ki a_i/(a_i + lambda)) e^{-(a_i + lambda) t},

so concept i is only learned to the fraction a_i/(a_i + lambda): weight decay shrinks weak concepts
most. This module is the worked example of docs/tutorial_new_derivation.md.
"""

from __future__ import annotations

import sympy as sp

from simtheory.symbolic import (
    Derivation,
    Formula,
    check_zero,
    descent,
    diag_symbols,
    identity_loss,
    matrix_symbols,
)

t = sp.Symbol("t", nonnegative=True)
a = sp.Symbol("a", positive=True)
lam = sp.Symbol("lambda", positive=True)
w0 = sp.Symbol("w0", real=True)
delta = sp.Symbol("delta", nonnegative=True)


def flow(W: sp.Matrix, A: sp.Matrix) -> sp.Matrix:
    """-dL/dW of the penalised loss, by differentiation."""
    return descent(lambda Z: identity_loss(Z, A) + lam / 2 * sum(z**2 for z in Z), W)[0]


class OneLayerWeightDecay(Derivation):
    name = "one_layer_weight_decay"
    title = "One-layer linear model with weight decay, gradient flow"
    reference = "extension of Yang et al. (ICLR 2025), Theorem 4.1 (tutorial example)"
    assumptions = (
        "f(x) = W x, loss 1/2 tr((W - I) A (W - I)^T) + lambda/2 ||W||^2, lambda > 0",
        "entry-wise form: A = diag(a); t = lr x steps",
    )

    def build(self):
        fixed = delta * a / (a + lam)
        return {
            "entry": Formula(
                sp.Function("w_ki")(t),
                fixed + (w0 - fixed) * sp.exp(-(a + lam) * t),
                args=(a, lam, t, w0, delta),
                description="entry (k, i), a = a_i, delta = delta_ki",
            ),
            "fixed_point": Formula(
                sp.Symbol("w_ii^*"), a / (a + lam), args=(a, lam), description="learned fraction of concept i"
            ),
        }

    def checks(self, f):
        d = 3
        avec = diag_symbols("a", d, positive=True)
        W0 = matrix_symbols("v", d, d)
        sol = f["entry"].rhs
        Wt = sp.Matrix(
            d,
            d,
            lambda k, i: sol.subs({a: avec[i], w0: W0[k, i], delta: 1 if k == i else 0}, simultaneous=True),
        )
        return [
            check_zero(
                "closed form satisfies dW/dt = -dL/dW (diagonal A, d = 3)",
                Wt.diff(t) - flow(Wt, sp.diag(*avec)),
            ),
            check_zero("closed form has W(0) = W0", Wt.subs(t, 0) - W0),
            check_zero(
                "t -> oo gives the fixed point a/(a + lambda)",
                sp.limit(sol.subs(delta, 1), t, sp.oo) - f["fixed_point"].rhs,
            ),
        ]


DERIVATION = OneLayerWeightDecay()
