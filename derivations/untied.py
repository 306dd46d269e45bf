"""Untied two-layer linear model f(x) = W2 W1 x with balanced small initialisation.

Gradient flow on ``L = 1/2 tr((W2 W1 - I) A (W2 W1 - I)^T)`` (derived by differentiation):

    dW1/dt = -W2^T (W2 W1 - I) A,      dW2/dt = -(W2 W1 - I) A W1^T,

conserves ``W1 W1^T - W2^T W2`` (balancedness). With ``A = diag(a)`` and a balanced, aligned
start ``W1(0) = W2(0)^T = diag(sqrt(u_i(0)))``, every mode follows a Saxe-type sigmoid

    u_i(t) = u_i(0) / (u_i(0) + (1 - u_i(0)) e^{-2 a_i t}),     W1 = W2^T = diag(sqrt(u)),

i.e. the product ``W2 W1 = diag(u)`` learns concept i at rate ``2 a_i`` (half the symmetric model's
gradient-flow rate ``4 a_i``, which shares one factor between both layers). Time is
gradient-flow time (lr x steps).
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
u0 = sp.Symbol("u0", positive=True)


def flow(W1: sp.Matrix, W2: sp.Matrix, A: sp.Matrix) -> tuple[sp.Matrix, sp.Matrix]:
    """(dW1/dt, dW2/dt) = -gradients of the loss, by differentiation."""
    return descent(lambda Z1, Z2: identity_loss(Z2 * Z1, A), W1, W2)


def mode(a_, t_, u0_):
    return u0_ / (u0_ + (1 - u0_) * sp.exp(-2 * a_ * t_))


class Untied(Derivation):
    name = "untied"
    title = "Untied two-layer linear model W2 W1, balanced initialisation"
    reference = "Saxe et al. (2014); Yang et al. (ICLR 2025), Appendix (two-layer linear)"
    assumptions = (
        "f(x) = W2 W1 x, W1: h x d, W2: d x h; gradient flow on (W1, W2); t = lr x steps",
        "mode-wise solution: A = diag(a), h = d, W1(0) = W2(0)^T = diag(sqrt(u(0))), u(0) > 0",
        "other initialisations have no closed form: simtheory.theory.untied_flow integrates them numerically",
    )

    def build(self):
        W1, W2, A = (sp.MatrixSymbol(n, 2, 2) for n in ("W_1", "W_2", "A"))
        E = W2 * W1 - sp.Identity(2)
        return {
            "flow_W1": Formula(sp.Symbol(r"\dot{W}_1"), -W2.T * E * A),
            "flow_W2": Formula(sp.Symbol(r"\dot{W}_2"), -E * A * W1.T),
            "mode": Formula(
                sp.Function("u_i")(t),
                mode(a, t, u0),
                args=(a, t, u0),
                description="product mode i, a = a_i, u0 = u_i(0)",
            ),
        }

    def checks(self, f):
        out = []
        d, h = 2, 3
        W1, W2 = matrix_symbols("p", h, d), matrix_symbols("q", d, h)
        A = matrix_symbols("A", d, d, symmetric=True)
        g1, g2 = flow(W1, W2, A)
        E = W2 * W1 - sp.eye(d)
        out.append(
            check_zero(
                "dW1/dt = -W2^T (W2 W1 - I) A (d = 2, h = 3, symmetric A)", g1 + W2.T * E * A, simplify=False
            )
        )
        out.append(
            check_zero(
                "dW2/dt = -(W2 W1 - I) A W1^T (d = 2, h = 3, symmetric A)", g2 + E * A * W1.T, simplify=False
            )
        )
        out.append(
            check_zero(
                "W1 W1^T - W2^T W2 is conserved",
                g1 * W1.T + W1 * g1.T - g2.T * W2 - W2.T * g2,
                simplify=False,
            )
        )
        # Balanced aligned solution, d = h = 3.
        d = 3
        avec = diag_symbols("a", d, positive=True)
        us = diag_symbols("u0", d, positive=True)
        root = sp.diag(
            *[sp.sqrt(f["mode"].rhs.subs({a: avec[i], u0: us[i]}, simultaneous=True)) for i in range(d)]
        )
        g1, g2 = flow(root, root, sp.diag(*avec))
        out.append(check_zero("W1 = W2^T = diag(sqrt(u(t))) satisfies dW1/dt (d = 3)", root.diff(t) - g1))
        out.append(check_zero("W1 = W2^T = diag(sqrt(u(t))) satisfies dW2/dt (d = 3)", root.diff(t) - g2))
        out.append(check_zero("u_i(0) = u0", f["mode"].rhs.subs(t, 0) - u0))
        return out


DERIVATION = Untied()
