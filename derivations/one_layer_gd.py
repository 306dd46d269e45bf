"""One-layer linear model under exact full-batch gradient descent.

The GD step on ``L = 1/2 tr((W - I) A (W - I)^T)`` with learning rate ``lr`` is
``W_{k+1} = W_k - lr (W_k - I) A`` (the gradient is derived by differentiation), so

    W_k = I - (I - W_0) (I - lr A)^k,     entry-wise  w_k = delta + (1 - lr a)^k (w_0 - delta).

It is stable (converges to I on every direction with a > 0) iff ``0 < lr < 2 / a_max``, and with
``lr = t / k`` it tends to the gradient flow as ``k -> oo``; its first-order gap to the flow at
fixed time ``t`` is ``-(a^2 t / 2) e^{-a t} (w_0 - delta) lr``, i.e. the error is proportional to lr.
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

k = sp.Symbol("k", integer=True, nonnegative=True)
lr = sp.Symbol("lr", positive=True)
a = sp.Symbol("a", positive=True)
t = sp.Symbol("t", positive=True)
w0 = sp.Symbol("w0", real=True)
delta = sp.Symbol("delta", nonnegative=True)


def entry(a_, lr_, k_, w0_, delta_):
    return delta_ + (1 - lr_ * a_) ** k_ * (w0_ - delta_)


def gd_step(W: sp.Matrix, A: sp.Matrix, lr_) -> sp.Matrix:
    """One GD step ``W - lr dL/dW`` with the gradient obtained by differentiating the loss."""
    return W + lr_ * descent(lambda Z: identity_loss(Z, A), W)[0]


class OneLayerGD(Derivation):
    name = "one_layer_gd"
    title = "One-layer linear model, exact discrete gradient descent"
    reference = "Yang et al. (ICLR 2025), Section 4.1 (discrete-time counterpart of Theorem 4.1)"
    assumptions = (
        "f(x) = W x, loss L = 1/2 tr((W - I) A (W - I)^T), full-batch GD with constant lr > 0",
        "entry-wise form: A = diag(a) (a general A is handled in its eigenbasis)",
        "k = number of steps (integer >= 0); time t = lr k",
    )

    def build(self):
        x = sp.Symbol("x")
        bound = sp.solve_univariate_inequality(sp.Abs(1 - x * a) < 1, x, relational=False)
        self._stable_interval = bound
        gap = sp.series(
            entry(a, lr, t / lr, w0, delta) - (delta + sp.exp(-a * t) * (w0 - delta)), lr, 0, 2
        ).removeO()
        return {
            "entry": Formula(
                sp.Function("w")(k),
                entry(a, lr, k, w0, delta),
                args=(a, lr, k, w0, delta),
                description="entry (k, i) after k steps, a = a_i, delta = delta_ki",
            ),
            "stability": Formula(
                sp.Symbol(r"\mathrm{lr}_{\max}"),
                2 / a,
                args=(a,),
                description="GD is stable iff lr < 2 / a_max",
            ),
            "flow_gap": Formula(
                sp.Symbol(r"w_{\mathrm{GD}} - w_{\mathrm{flow}}"),
                sp.factor(gap),
                description="first-order gap between GD and gradient flow at time t = lr k",
            ),
        }

    def checks(self, f):
        out = []
        d = 3
        avec = diag_symbols("a", d, positive=True)
        A = sp.diag(*avec)
        W0 = matrix_symbols("v", d, d)
        sol = f["entry"].rhs
        Wk = sp.Matrix(
            d,
            d,
            lambda r, c: sol.subs({a: avec[c], w0: W0[r, c], delta: 1 if r == c else 0}, simultaneous=True),
        )
        Wk1 = Wk.subs(k, k + 1)
        out.append(
            check_zero(
                "W_{k+1} = W_k - lr dL/dW_k (derived gradient, diagonal A, d = 3)",
                (Wk1 - gd_step(Wk, A, lr)).applyfunc(sp.powsimp),
            )
        )
        out.append(check_zero("W_0 = W0", Wk.subs(k, 0) - W0))
        # General symmetric A: the step is covariant under rotations (so the eigenbasis form is exact).
        out.append(
            check_rotation_covariance(
                "GD step is covariant under orthogonal change of basis (d = 2)",
                lambda W, A: gd_step(W, A, lr),
            )
        )
        expected = sp.Interval.open(0, 2 / a)
        out.append(
            check_true(
                "|1 - lr a| < 1 iff 0 < lr < 2/a (over real lr)",
                self._stable_interval == expected,
                f"solution set {self._stable_interval}",
            )
        )
        n = sp.Symbol("n", positive=True, integer=True)
        limit = sp.limit(sol.subs({lr: t / n, k: n}, simultaneous=True), n, sp.oo)
        out.append(
            check_zero(
                "lr = t/n, n -> oo recovers the gradient-flow entry",
                limit - (delta + sp.exp(-a * t) * (w0 - delta)),
            )
        )
        out.append(
            check_zero(
                "first-order GD-flow gap = -(a^2 t/2) e^{-a t} (w0 - delta) lr",
                f["flow_gap"].rhs + a**2 * t / 2 * sp.exp(-a * t) * (w0 - delta) * lr,
            )
        )
        return out


DERIVATION = OneLayerGD()
