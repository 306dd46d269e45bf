"""One-layer linear model f(x) = W x under gradient flow (paper Theorem 4.1).

From the loss ``L = 1/2 tr((W - I) A (W - I)^T)`` the flow is ``dW/dt = -dL/dW = -(W - I) A``
(derived here by differentiation). With ``A = diag(a)`` every entry evolves on its own:

    w_ki(t) = delta_ki (1 - e^{-a_i t}) + e^{-a_i t} w_ki(0)

and for a general symmetric ``A = Q diag(lambda) Q^T`` the same holds in the eigenbasis of A
(the flow is covariant under orthogonal changes of basis), i.e. ``W(t) = I - (I - W0) expm(-A t)``.
Time is gradient-flow time: learning rate x steps of full-batch gradient descent.
"""

from __future__ import annotations

import sympy as sp

from simtheory.symbolic import (
    Derivation,
    Formula,
    check_rotation_covariance,
    check_true,
    check_zero,
    descent,
    diag_symbols,
    identity_loss,
    matrix_symbols,
)

t = sp.Symbol("t", nonnegative=True)
a = sp.Symbol("a", positive=True)
w0 = sp.Symbol("w0", real=True)
delta = sp.Symbol("delta", nonnegative=True)  # Kronecker delta_ki: 0 or 1
eps = sp.Symbol("epsilon", positive=True)


def flow(W: sp.Matrix, A: sp.Matrix) -> sp.Matrix:
    """``dW/dt = -dL/dW`` at ``W``, obtained by differentiating the loss with respect to free symbols."""
    return descent(lambda Z: identity_loss(Z, A), W)[0]


def entry(a_, t_, w0_, delta_):
    return delta_ * (1 - sp.exp(-a_ * t_)) + sp.exp(-a_ * t_) * w0_


class OneLayerFlow(Derivation):
    name = "one_layer_flow"
    title = "One-layer linear model, gradient flow (Theorem 4.1)"
    reference = "Yang et al. (ICLR 2025), Theorem 4.1"
    assumptions = (
        "f(x) = W x, loss L = 1/2 tr((W - I) A (W - I)^T), A symmetric positive semi-definite",
        "gradient flow dW/dt = -dL/dW; t = learning rate x steps",
        "entry-wise form: A = diag(a) (a general A is handled in its eigenbasis)",
        "concept-learning time and learning order: relative error eps in (0, 1)",
    )

    def build(self):
        wt = sp.Function("w_ki")(t)
        ood = sp.Symbol(r"\mathcal{L}_{\mathrm{OOD}}")
        mus = diag_symbols("mu", 2, positive=True)
        avec = diag_symbols("a", 2, positive=True)
        W = sp.Matrix(2, 2, lambda k, i: entry(avec[i], t, 0, 1 if k == i else 0))
        x = sp.Matrix(mus)
        loss = sp.Rational(1, 2) * ((W * x - x).T * (W * x - x))[0, 0]
        V0 = matrix_symbols("w", 2, 2)
        W_gen = sp.Matrix(2, 2, lambda k, i: entry(avec[i], t, V0[k, i], 1 if k == i else 0))
        y1 = sp.Function(r"\hat{y}_1")(t)
        return {
            "ood_output": Formula(
                y1,
                sp.collect(sp.expand((W_gen * x)[0]), [sp.exp(-avec[0] * t), sp.exp(-avec[1] * t)]),
                description="OOD output, coordinate 1 (s = 2, any W(0)): sum_p w_1p(t) mu_p",
            ),
            "flow": Formula(
                sp.Symbol(r"\dot{W}"),
                -(sp.MatrixSymbol("W", 2, 2) - sp.Identity(2)) * sp.MatrixSymbol("A", 2, 2),
                description="gradient flow of the loss",
            ),
            "entry": Formula(
                wt,
                entry(a, t, w0, delta),
                args=(a, t, w0, delta),
                description="entry (k, i) with a = a_i, w0 = w_ki(0), delta = delta_ki",
            ),
            "matrix": Formula(
                sp.Function("W")(t),
                sp.Identity(2)
                - (sp.Identity(2) - sp.MatrixSymbol("W_0", 2, 2)) * sp.MatrixSymbol("e^{-A t}", 2, 2),
                description="matrix form for any symmetric A",
            ),
            "ood_loss_zero_init": Formula(
                ood, sp.simplify(loss), description="OOD loss from W(0) = 0, s = 2"
            ),
            "time_to_eps": Formula(
                sp.Symbol("t_p"),
                sp.log(1 / eps) / a,
                args=(a, eps),
                description="time for concept p to reach relative error eps (a = a_p)",
            ),
        }

    def checks(self, f):
        out = []
        # 1. The flow, derived from the loss, is -(W - I) A for a general symmetric A (d = 3).
        d = 3
        W = matrix_symbols("w", d, d)
        A = matrix_symbols("A", d, d, symmetric=True)
        out.append(
            check_zero("dW/dt = -dL/dW = -(W - I) A (d = 3, symmetric A)", flow(W, A) + (W - sp.eye(d)) * A)
        )
        # 2. The entry-wise closed form satisfies the derived flow and the initial condition (diagonal A).
        avec = diag_symbols("a", d, positive=True)
        A_diag = sp.diag(*avec)
        W0 = matrix_symbols("v", d, d)
        sol = f["entry"].rhs
        Wt = sp.Matrix(
            d,
            d,
            lambda k, i: sol.subs({a: avec[i], w0: W0[k, i], delta: 1 if k == i else 0}, simultaneous=True),
        )
        out.append(
            check_zero(
                "closed form satisfies dW/dt = -dL/dW (diagonal A, d = 3)", Wt.diff(t) - flow(Wt, A_diag)
            )
        )
        out.append(check_zero("closed form has W(0) = W0", Wt.subs(t, 0) - W0))
        # 3. Covariance under rotations, so the eigenbasis form is exact for any symmetric A.
        out.append(
            check_rotation_covariance("flow is covariant under orthogonal change of basis (d = 2)", flow)
        )
        # 4. OOD loss from zero init equals 1/2 sum_p mu_p^2 e^{-2 a_p t} and decreases monotonically.
        mus = diag_symbols("mu", 2, positive=True)
        a1, a2 = diag_symbols("a", 2, positive=True)
        expected = sp.Rational(1, 2) * (mus[0] ** 2 * sp.exp(-2 * a1 * t) + mus[1] ** 2 * sp.exp(-2 * a2 * t))
        out.append(
            check_zero(
                "OOD loss = 1/2 sum_p mu_p^2 exp(-2 a_p t) (W0 = 0, s = 2)",
                f["ood_loss_zero_init"].rhs - expected,
            )
        )
        out.append(
            check_true(
                "OOD loss is strictly decreasing (no swing-by in one layer)", sp.diff(expected, t).is_negative
            )
        )
        # 4b. OOD output coordinate 1 approaches mu_1 and the minor entry's contribution decays.
        y1 = f["ood_output"].rhs
        out.append(check_zero("OOD output -> mu_1 as t -> oo", sp.limit(y1, t, sp.oo) - mus[0]))
        out.append(
            check_zero(
                "OOD output at t = 0 is w_11(0) mu_1 + w_12(0) mu_2",
                y1.subs(t, 0)
                - (sp.Symbol("w_11", real=True) * mus[0] + sp.Symbol("w_12", real=True) * mus[1]),
            )
        )
        # 5. Concept p reaches relative error eps at t_p = log(1/eps)/a_p ...
        tp = f["time_to_eps"].rhs
        err = (f["entry"].rhs.subs({t: tp, delta: 1}, simultaneous=True) - 1) - eps * (w0 - 1)
        out.append(check_zero("|w_pp(t_p) - 1| = eps |w_pp(0) - 1|", err))
        # ... so concepts are learned in decreasing order of a_p.
        h, da = sp.Symbol("h", positive=True), sp.Symbol("Delta", positive=True)
        t_eps = lambda rate: tp.subs({a: rate, eps: 1 / (1 + h)})  # eps in (0, 1)
        out.append(
            check_true(
                "a_p > a_q implies t_p < t_q (learning order)",
                sp.simplify(t_eps(a + da) - t_eps(a)).is_negative,
            )
        )
        return out


DERIVATION = OneLayerFlow()
