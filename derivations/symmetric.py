"""Symmetric two-layer linear model f(x) = U U^T x (paper Section 4.2).

Gradient flow on U of ``L = 1/2 tr((U U^T - I) A (U U^T - I)^T)`` moves ``W = U U^T`` by

    dW/dt = 2 V(W),   V(W) = W A + A W - 1/2 (A W^2 + W^2 A + 2 W A W),

derived here by differentiating the loss with respect to U for symbolic d = 2 and 3. The paper
writes ``dW/dt = V`` ("paper" time, half the speed). Below ``kappa`` is the speed: ``kappa = 2``
for gradient flow on U (t = lr x steps), ``kappa = 1`` in the paper's time.

With diagonal ``A`` the entries obey ``V_ij = G_ij - S_ij - N_ij`` (growth, self-suppression,
cross-talk). Diagonal W stays diagonal and each diagonal entry is logistic; small W grows
exponentially at rate ``kappa (a_i + a_j)``; a minor entry ``w_ij`` with ``w_ii`` near 1 and
``w_jj`` near 0 decays iff ``a_i > a_j`` and is suppressed once ``w_ii > 2 (a_i + a_j)/(3 a_i + a_j)``.
"""

from __future__ import annotations

import sympy as sp

from simtheory.symbolic import (
    Derivation,
    Formula,
    check_true,
    check_zero,
    descent,
    diag_symbols,
    identity_loss,
    matrix_symbols,
)

t = sp.Symbol("t", nonnegative=True)
a = sp.Symbol("a", positive=True)
kappa = sp.Symbol("kappa", positive=True)
w0 = sp.Symbol("w0", positive=True)
omega = sp.Symbol("omega", positive=True)
level = sp.Symbol("ell", positive=True)  # a level in (0, 1) that a diagonal entry reaches
a_i, a_j = sp.Symbol("a_i", positive=True), sp.Symbol("a_j", positive=True)
w_ii, w_jj = sp.Symbol("w_ii", nonnegative=True), sp.Symbol("w_jj", nonnegative=True)


def V_matrix(W: sp.Matrix, A: sp.Matrix) -> sp.Matrix:
    """The paper's vector field V(W) (matrix form)."""
    return W * A + A * W - sp.Rational(1, 2) * (A * W * W + W * W * A + 2 * W * A * W)


def V_gsn(W: sp.Matrix, avec) -> sp.Matrix:
    """Entry-wise G - S - N decomposition of V for diagonal A = diag(avec)."""
    d = W.shape[0]

    def entry(i, j):
        G = W[i, j] * (avec[i] + avec[j])
        S = (
            sp.Rational(1, 2)
            * W[i, j]
            * (W[i, i] * (3 * avec[i] + avec[j]) + (W[j, j] * (3 * avec[j] + avec[i]) if i != j else 0))
        )
        N = sp.Rational(1, 2) * sum(
            (W[k, i] * W[k, j] * (avec[i] + avec[j] + 2 * avec[k]) for k in range(d) if k not in (i, j)),
            sp.Integer(0),
        )
        return G - S - N

    return sp.Matrix(d, d, entry)


def flow_from_loss(U: sp.Matrix, A: sp.Matrix) -> sp.Matrix:
    """dW/dt for W = U U^T under gradient flow dU/dt = -dL/dU, derived by differentiation."""
    dU = descent(lambda Z: identity_loss(Z * Z.T, A), U)[0]
    return dU * U.T + U * dU.T


def logistic(a_, t_, w0_, kappa_):
    """Diagonal entry of the decoupled flow; overflow-free form (e^{-rt} only underflows)."""
    return w0_ / (w0_ + (1 - w0_) * sp.exp(-2 * kappa_ * a_ * t_))


def minor_rate(ai, aj, wii, wjj):
    """d log w_ij / dt (paper time) when every other minor entry is zero."""
    return (ai + aj) - sp.Rational(1, 2) * wii * (3 * ai + aj) - sp.Rational(1, 2) * wjj * (3 * aj + ai)


class _SumOffPair(sp.Sum):
    """The sum over k = 1..d with k not in {i, j} (the cross-talk term N), rendered as such in LaTeX."""

    def _latex(self, printer):
        return r"\sum_{k \notin \{i, j\}} \left(" + printer._print(self.function) + r"\right)"


class Symmetric(Derivation):
    name = "symmetric"
    title = "Symmetric two-layer linear model W = U U^T"
    reference = "Yang et al. (ICLR 2025), Section 4.2, Eq. (4)-(6) and Appendix"
    assumptions = (
        "f(x) = U U^T x, U square, loss L = 1/2 tr((W - I) A (W - I)^T), W = U U^T positive semi-definite",
        "gradient flow on U: dW/dt = 2 V(W) (kappa = 2); the paper's time: dW/dt = V(W) (kappa = 1)",
        "G/S/N decomposition, logistic solution, stage times and minor-entry rates: A = diag(a)",
        "logistic solution: W(0) diagonal (or commuting with A); early phase: ||W|| << 1",
        "minor-entry rate: every other off-diagonal entry negligible (d = 2 exactly)",
    )

    def build(self):
        Wm, Am = sp.MatrixSymbol("W", 3, 3), sp.MatrixSymbol("A", 3, 3)
        wij, wii_, wjj_ = sp.symbols("w_ij w_ii w_jj")
        ak = sp.Symbol("a_k")
        wki, wkj = sp.symbols("w_ki w_kj")
        kk = sp.Symbol("k")
        G = wij * (a_i + a_j)
        S = sp.Rational(1, 2) * wij * (wii_ * (3 * a_i + a_j) + wjj_ * (3 * a_j + a_i))
        N = sp.Rational(1, 2) * _SumOffPair(wki * wkj * (a_i + a_j + 2 * ak), (kk, 1, sp.Symbol("d")))
        t_level = sp.log(level * (1 - omega) / ((1 - level) * omega)) / (2 * kappa * a)
        t_stage = t_level.subs(level, sp.Rational(1, 2))
        return {
            "V": Formula(
                sp.Symbol("V(W)"),
                Wm * Am + Am * Wm - sp.Rational(1, 2) * (Am * Wm**2 + Wm**2 * Am + 2 * Wm * Am * Wm),
                description="dW/dt = kappa V(W); kappa = 2 for gradient flow on U",
            ),
            "entrywise": Formula(
                sp.Symbol("V_{ij}"),
                G - S - N,
                description="i != j; the sum runs over k not in {i, j}; for i = j, S = 2 a_i w_ii^2",
            ),
            "logistic": Formula(
                sp.Function("w_ii")(t),
                logistic(a, t, w0, kappa),
                args=(a, t, w0, kappa),
                description="decoupled diagonal entry, a = a_i",
            ),
            "early": Formula(
                sp.Function("w_ij")(t),
                sp.Symbol("w_ij0") * sp.exp(kappa * (a_i + a_j) * t),
                args=(a_i, a_j, t, sp.Symbol("w_ij0"), kappa),
                description="early phase, small init",
            ),
            "stage_time": Formula(
                sp.Symbol("t_p"),
                t_stage,
                args=(a, omega, kappa),
                description="w_pp reaches 1/2 from w_pp(0) = omega; ~ log(1/omega)/(2 kappa a_p)",
            ),
            "level_time": Formula(
                sp.Symbol(r"t_p(\ell)"),
                t_level,
                args=(a, omega, kappa, level),
                description="w_pp reaches the level ell in (0, 1) from w_pp(0) = omega",
            ),
            "minor_rate": Formula(
                sp.Symbol(r"\frac{d \log w_{ij}}{dt}"),
                minor_rate(a_i, a_j, w_ii, w_jj),
                args=(a_i, a_j, w_ii, w_jj),
                description="paper time; N = 0",
            ),
            "suppression_threshold": Formula(
                sp.Symbol(r"w_{ii}^{*}"),
                2 * (a_i + a_j) / (3 * a_i + a_j),
                args=(a_i, a_j),
                description="w_ij decays once w_ii exceeds this (w_jj = 0)",
            ),
        }

    def checks(self, f):
        out = []
        # 1. dW/dt derived from gradient flow on U equals 2 V(W) = 2 (G - S - N), d = 2 and 3.
        for d in (2, 3):
            U = matrix_symbols("u", d, d)
            avec = diag_symbols("a", d, positive=True)
            dW = flow_from_loss(U, sp.diag(*avec))
            out.append(
                check_zero(
                    f"dW/dt from dU/dt = -dL/dU equals 2 (G - S - N) at W = U U^T (d = {d})",
                    dW - 2 * V_gsn(U * U.T, avec),
                    simplify=False,
                )
            )
            Asym = matrix_symbols("A", d, d, symmetric=True)
            out.append(
                check_zero(
                    f"dW/dt from dU/dt = -dL/dU equals 2 V(W), symmetric A (d = {d})",
                    flow_from_loss(U, Asym) - 2 * V_matrix(U * U.T, Asym),
                    simplify=False,
                )
            )
            Wsym = matrix_symbols("w", d, d, symmetric=True)
            out.append(
                check_zero(
                    f"matrix V(W) equals G - S - N for every symmetric W (d = {d})",
                    V_matrix(Wsym, sp.diag(*avec)) - V_gsn(Wsym, avec),
                    simplify=False,
                )
            )
        # 2. Diagonal W stays diagonal; each diagonal entry is logistic.
        d = 3
        avec = diag_symbols("a", d, positive=True)
        wd = diag_symbols("w", d, positive=True)
        Vd = V_matrix(sp.diag(*wd), sp.diag(*avec))
        out.append(
            check_zero("V(diagonal W) is diagonal (decoupling)", Vd - sp.diag(*[Vd[i, i] for i in range(d)]))
        )
        wt = [f["logistic"].rhs.subs({a: avec[i], w0: wd[i]}, simultaneous=True) for i in range(d)]
        Vt = V_matrix(sp.diag(*wt), sp.diag(*avec))
        out.append(
            check_zero(
                "logistic solution satisfies dw_ii/dt = kappa V_ii(W(t))",
                sp.Matrix([sp.diff(wt[i], t) - kappa * Vt[i, i] for i in range(d)]),
            )
        )
        out.append(check_zero("logistic solution has w_ii(0) = w0", f["logistic"].rhs.subs(t, 0) - w0))
        # 3. Early phase: the linearisation of V at W = 0 is (a_i + a_j) w_ij; its solution.
        eps = sp.Symbol("epsilon")
        H = matrix_symbols("h", d, d, symmetric=True)
        lin = sp.diff(V_matrix(eps * H, sp.diag(*avec)), eps).subs(eps, 0)
        out.append(
            check_zero(
                "dV at W = 0 is H -> (a_i + a_j) h_ij",
                lin - sp.Matrix(d, d, lambda i, j: (avec[i] + avec[j]) * H[i, j]),
            )
        )
        early = f["early"].rhs
        out.append(
            check_zero(
                "early solution satisfies dw_ij/dt = kappa (a_i + a_j) w_ij",
                sp.diff(early, t) - kappa * (a_i + a_j) * early,
            )
        )
        # 4. Stage time: w_pp = 1/2 at t_p, and t_p ~ log(1/omega)/(2 kappa a_p) as omega -> 0.
        tp = f["stage_time"].rhs
        out.append(
            check_zero(
                "logistic reaches 1/2 at the stage time",
                f["logistic"].rhs.subs({t: tp, w0: omega}, simultaneous=True) - sp.Rational(1, 2),
            )
        )
        tl = f["level_time"].rhs
        out.append(
            check_zero(
                "logistic reaches the level ell at the level time",
                f["logistic"].rhs.subs({t: tl, w0: omega}, simultaneous=True) - level,
            )
        )
        ratio = sp.limit(tp / (sp.log(1 / omega) / (2 * kappa * a)), omega, 0, "+")
        out.append(check_zero("stage time ~ log(1/omega)/(2 kappa a_p) as omega -> 0", ratio - 1))
        # 5. Minor entry rate: with d = 2 (no cross-talk), V_12 = w_12 * rate(w_11, w_22).
        W2 = matrix_symbols("w", 2, 2, symmetric=True)
        a1, a2 = diag_symbols("a", 2, positive=True)
        V2 = V_matrix(W2, sp.diag(a1, a2))
        out.append(
            check_zero(
                "V_12 = w_12 * rate(w_11, w_22) (d = 2)",
                V2[0, 1] - W2[0, 1] * minor_rate(a1, a2, W2[0, 0], W2[1, 1]),
            )
        )
        rate = f["minor_rate"].rhs
        out.append(
            check_zero(
                "rate at w_ii = 1, w_jj = 0 is (a_j - a_i)/2", rate.subs({w_ii: 1, w_jj: 0}) - (a_j - a_i) / 2
            )
        )
        out.append(
            check_zero(
                "rate at w_ii = 0.8, w_jj = 0 is -0.2 (a_i - 3 a_j)",
                rate.subs({w_ii: sp.Rational(4, 5), w_jj: 0}) + sp.Rational(1, 5) * (a_i - 3 * a_j),
            )
        )
        Dl = sp.Symbol("Delta", positive=True)
        out.append(
            check_true(
                "a_i > a_j implies the minor entry decays once w_ii = 1 (swing-by condition)",
                sp.simplify(rate.subs({w_ii: 1, w_jj: 0, a_i: a_j + Dl})).is_negative,
            )
        )
        out.append(
            check_true(
                "a_i < a_j implies the minor entry keeps growing at w_ii = 1",
                sp.simplify(rate.subs({w_ii: 1, w_jj: 0, a_j: a_i + Dl})).is_positive,
            )
        )
        out.append(
            check_zero(
                "rate vanishes at the suppression threshold",
                rate.subs({w_jj: 0, w_ii: f["suppression_threshold"].rhs}),
            )
        )
        return out


DERIVATION = Symmetric()
