"""Closed-form approximations of the whole symmetric flow dW/dt = kappa V(W), for any W0 (beyond the paper).

The exact solution is known only when W0 commutes with A (each diagonal entry a logistic). Two closed forms
approximate it for every W0, with A diagonal (any symmetric A in its eigenbasis: the flow is
rotation-covariant, see ``derivations.symmetric``):

* **first order** ("minor"): the diagonal entries are their decoupled logistics, and each minor entry solves
  its linearised equation ``d log w_ij/dt = kappa rate(w_ii(t), w_jj(t))`` with the cross-talk N of the other
  minor entries neglected. The rate is derived here from V (``dV_ij/dw_ij`` at ``w_ij = 0``), the integral of
  the logistic by SymPy, so

      w_ij(t) = w_ij(0) e^{kappa (a_i + a_j) t} D_i^{-(3 a_i + a_j)/(4 a_i)} D_j^{-(3 a_j + a_i)/(4 a_j)},
      D_p(t) = 1 - w_pp(0) + w_pp(0) e^{2 kappa a_p t}.

* **Riccati**: V(W) = WA + AW - 2 WAW - 1/2 [[A, W], W]; without the double commutator the flow is a matrix
  Riccati equation, linear in P = W^{-1}, whence

      W(t) = (I - F^2 + F W0^{-1} F)^{-1} = E W0 (I + (E^2 - I) W0)^{-1} E,   E = e^{kappa A t}, F = E^{-1}.

  It keeps the whole linear phase (W = E W0 E, every correlation), stays positive semi-definite, tends to I,
  and is exact when W0 commutes with A (the neglected term vanishes there).

* **composite** (the default of :func:`simtheory.symmetric_approx`): the Riccati form with each minor entry
  multiplied by the ratio of the two linearised minor-entry growths along the logistic diagonals -- the
  flow's (first order) over the Riccati form's own --

      W_ij(t) = W^R_ij(t) exp(1/2 (a_i - a_j)(K_i - K_j)),   K_p = kappa int_0^t w_pp = log(D_p) / (2 a_p).

  The exponent is derived here (not typed in) as kappa int (rate - rate_R); its rate is the double
  commutator's linearisation 1/2 kappa (a_i - a_j)(w_ii - w_jj). So the composite keeps what the Riccati form
  gets right (every correlation of the linear phase, the cross-talk between minor entries, the late rate)
  and equals the first-order form wherever the minor entries are small: a composite expansion in the
  sense of matched asymptotics (Riccati + first order - their common linear part, multiplicatively).

All three reduce to the logistic on the diagonal of a diagonal W0 and grow at the early rate
kappa (a_i + a_j). The first order neglects the cross-talk N between minor entries and their feedback on
the diagonals; Riccati suppresses a minor entry twice as fast once its strong concept is learned (rate
kappa (a_i - a_j) instead of kappa (a_i - a_j)/2), so both underestimate a swing-by's bump; the composite
corrects exactly that rate.
The composite need not stay positive semi-definite (its factor is >= 1 off the diagonal).
"""

from __future__ import annotations

import sympy as sp

from simtheory.symbolic import (
    Derivation,
    Formula,
    check_zero,
    diag_symbols,
    matrix_symbols,
)

from .symmetric import V_matrix, logistic

t = sp.Symbol("t", nonnegative=True)
s_ = sp.Symbol("s", nonnegative=True)
kappa = sp.Symbol("kappa", positive=True)
a = sp.Symbol("a", positive=True)
w0 = sp.Symbol("w0", positive=True)
a_i, a_j = sp.Symbol("a_i", positive=True), sp.Symbol("a_j", positive=True)
wii0, wjj0 = sp.Symbol("w_ii0", positive=True), sp.Symbol("w_jj0", positive=True)
wij0 = sp.Symbol("w_ij0", real=True)


def D(a_, w_, t_):
    """``1 - w + w e^{2 kappa a t}``: the logistic's denominator; its log is 2 kappa a x the integral."""
    return 1 - w_ + w_ * sp.exp(2 * kappa * a_ * t_)


def logistic_integral() -> sp.Expr:
    """``int_0^t w(s) ds`` of the diagonal logistic, by SymPy's ``integrate``."""
    return sp.integrate(logistic(a, s_, w0, kappa), (s_, 0, t))


def V_riccati(W: sp.Matrix, A: sp.Matrix) -> sp.Matrix:
    """V without its double commutator: WA + AW - 2 WAW (a matrix Riccati field)."""
    return W * A + A * W - 2 * W * A * W


def minor_rate(field) -> tuple:
    """``d field_12 / dw_12`` at ``w_12 = 0`` for d = 2 (no other minor entry), in terms of ``a_i, a_j`` and
    the diagonal entries ``w_ii, w_jj``: the linearised minor-entry rate of a field (V or V_R)."""
    wii, wjj, wij = sp.symbols("w_ii w_jj w_ij", real=True)
    V = field(sp.Matrix([[wii, wij], [wij, wjj]]), sp.diag(a_i, a_j))
    return sp.expand(sp.diff(V[0, 1], wij).subs(wij, 0)), (wii, wjj)


def integrated_rate(rate, wii, wjj) -> sp.Expr:
    """``kappa int_0^t rate(w_ii(s), w_jj(s)) ds`` along the logistic diagonals: the rate is linear in the
    diagonal entries, so it is rate(0, 0) t + (d rate / d w_ii) int w_ii + (d rate / d w_jj) int w_jj, with
    ``int w_pp = log(D_p) / (2 kappa a_p)``."""
    integral = sp.log(D(a, w0, t)) / (2 * kappa * a)
    return kappa * (
        rate.subs({wii: 0, wjj: 0}) * t
        + sp.diff(rate, wii) * integral.subs({a: a_i, w0: wii0}, simultaneous=True)
        + sp.diff(rate, wjj) * integral.subs({a: a_j, w0: wjj0}, simultaneous=True)
    )


class SymmetricApprox(Derivation):
    name = "symmetric_approx"
    title = "Closed-form approximations of the symmetric flow for any W0 (first order, Riccati, composite)"
    reference = "beyond Yang et al. (ICLR 2025), Section 4.2: simtheory issue 14"
    assumptions = (
        "dW/dt = kappa V(W) (derivations.symmetric); A = diag(a) (any symmetric A in its eigenbasis)",
        "first order: diagonals decoupled logistics; each minor entry linearised, the cross-talk N neglected",
        "Riccati: the double commutator -1/2 [[A, W], W] of V neglected (exact when W0 commutes with A)",
        "composite: the Riccati form with the flow's linearised minor-entry rate along the logistic diagonal",
        "small initialisation: all keep the linear phase; none is exact once minor entries are O(1)",
    )

    def build(self):
        rate, (wii, wjj) = minor_rate(V_matrix)
        integral = sp.log(D(a, w0, t)) / (2 * kappa * a)
        minor = wij0 * sp.exp(sp.expand(integrated_rate(rate, wii, wjj)))
        # the composite's factor: the flow's integrated minor rate minus the Riccati form's own
        rate_R, (wii_R, wjj_R) = minor_rate(V_riccati)
        factor = sp.exp(
            sp.factor(sp.expand(integrated_rate(rate, wii, wjj) - integrated_rate(rate_R, wii_R, wjj_R)))
        )
        Am, W0m = sp.MatrixSymbol("A", 3, 3), sp.MatrixSymbol("W_0", 3, 3)
        Fm = sp.MatrixSymbol("F", 3, 3)
        return {
            "minor": Formula(
                sp.Function("w_ij")(t),
                sp.powsimp(minor),
                args=(a_i, a_j, t, wii0, wjj0, wij0, kappa),
                description="first-order minor entry (i != j); the diagonal entries are the logistic",
            ),
            "logistic_integral": Formula(
                sp.Symbol(r"\int_0^t w_{pp}"),
                integral,
                args=(a, t, w0, kappa),
                description="integral of the diagonal logistic from w0 (by SymPy's integrate)",
            ),
            "riccati": Formula(
                sp.Function("W")(t),
                (sp.Identity(3) - Fm**2 + Fm * W0m.I * Fm).I,
                description="F = exp(-kappa A t); W0 invertible (else E W0 (I + (E^2 - I) W0)^{-1} E)",
            ),
            "composite_factor": Formula(
                sp.Symbol(r"W_{ij} / W^R_{ij}"),
                factor,
                args=(a_i, a_j, t, wii0, wjj0, kappa),
                description="the composite form's factor on the Riccati form's minor entry (i != j)",
            ),
            "neglected": Formula(
                sp.Symbol(r"V - V_R"),
                -sp.Rational(1, 2) * ((Am * W0m - W0m * Am) * W0m - W0m * (Am * W0m - W0m * Am)),
                description="what the Riccati form neglects, at W (written W_0 here): -1/2 [[A, W], W]",
            ),
        }

    def checks(self, f):
        out = []
        rate, (wii, wjj) = minor_rate(V_matrix)
        # the integral: SymPy's antiderivative equals log(D)/(2 kappa a), and solves d/dt = logistic
        I_sym = f["logistic_integral"].rhs
        out.append(
            check_zero(
                "int_0^t logistic = log(1 - w0 + w0 e^{2 kappa a t}) / (2 kappa a) (SymPy's integrate)",
                sp.diff(logistic_integral() - I_sym, t),
            )
        )
        out.append(check_zero("the integral vanishes at t = 0", I_sym.subs(t, 0)))
        # the first-order minor entry solves its linearised equation exactly, along the logistic diagonals
        m = f["minor"].rhs
        li = logistic(a_i, t, wii0, kappa)
        lj = logistic(a_j, t, wjj0, kappa)
        out.append(
            check_zero(
                "d w_ij/dt = kappa rate(w_ii(t), w_jj(t)) w_ij, with rate = dV_ij/dw_ij at w_ij = 0 (d = 2)",
                sp.diff(m, t) - kappa * rate.subs({wii: li, wjj: lj}, simultaneous=True) * m,
            )
        )
        out.append(check_zero("w_ij(0) = w_ij0", m.subs(t, 0) - wij0))
        dlog = sp.diff(m, t) / m
        out.append(
            check_zero(
                "early phase: d log w_ij/dt -> kappa (a_i + a_j) as the diagonal start -> 0",
                dlog.subs({wii0: 0, wjj0: 0}) - kappa * (a_i + a_j),
            )
        )
        out.append(
            check_zero(
                "late phase: d log w_ij/dt -> -kappa (a_i + a_j) as t -> oo",
                sp.limit(dlog, t, sp.oo) + kappa * (a_i + a_j),
            )
        )
        # the diagonal: at i = j with the logistic's own self-suppression the form is the logistic itself
        out.append(
            check_zero(
                "on the diagonal (V_ii = 2 a w - 2 a w^2 without minor entries) the solution is the logistic",
                sp.diff(logistic(a, t, w0, kappa), t)
                - kappa * V_matrix(sp.Matrix([[logistic(a, t, w0, kappa)]]), sp.Matrix([[a]]))[0, 0],
            )
        )
        # Riccati: V = V_R - 1/2 [[A, W], W] for every symmetric W (d = 3)
        d = 3
        avec = diag_symbols("a", d, positive=True)
        A = sp.diag(*avec)
        W = matrix_symbols("w", d, d, symmetric=True)
        C = A * W - W * A
        out.append(
            check_zero(
                "V(W) = WA + AW - 2 WAW - 1/2 [[A, W], W] (d = 3, symmetric W)",
                V_matrix(W, A) - V_riccati(W, A) + sp.Rational(1, 2) * (C * W - W * C),
                simplify=False,
            )
        )
        # its closed form: P = W^{-1} obeys the linear dP/dt = -kappa (PA + AP) + 2 kappa A, solved by
        # P(t) = I - F^2 + F P0 F; and W = P^{-1} then solves dW/dt = kappa V_R(W) (d = 2, symbolic P0)
        a1, a2 = diag_symbols("a", 2, positive=True)
        A2 = sp.diag(a1, a2)
        P0 = matrix_symbols("p", 2, 2, symmetric=True)
        F = sp.diag(sp.exp(-kappa * a1 * t), sp.exp(-kappa * a2 * t))
        P = sp.eye(2) - F**2 + F * P0 * F
        out.append(
            check_zero(
                "P(t) = I - F^2 + F P0 F solves dP/dt = -kappa (P A + A P) + 2 kappa A, P(0) = P0",
                (P.diff(t) + kappa * (P * A2 + A2 * P) - 2 * kappa * A2).col_join(P.subs(t, 0) - P0),
            )
        )
        # W = P^{-1} then solves dW/dt = -W (dP/dt) W = kappa V_R(W): the derivative of an inverse (for any
        # matrix function P(t)) and the algebra with P W = I (symbolic symmetric W)
        Pf = sp.Matrix(2, 2, lambda i, j: sp.Function(f"p{min(i, j)}{max(i, j)}")(t))
        out.append(
            check_zero(
                "d(P^{-1})/dt = -P^{-1} (dP/dt) P^{-1} (d = 2)",
                Pf.inv().diff(t) + Pf.inv() * Pf.diff(t) * Pf.inv(),
            )
        )
        Ws = matrix_symbols("w", 2, 2, symmetric=True)
        Ps = Ws.inv()
        out.append(
            check_zero(
                "-W (dP/dt) W = kappa (WA + AW - 2 WAW) if dP/dt = -kappa (PA + AP) + 2 kappa A, P = W^-1",
                -Ws * (-kappa * (Ps * A2 + A2 * Ps) + 2 * kappa * A2) * Ws - kappa * V_riccati(Ws, A2),
            )
        )
        # commuting start: the Riccati form is the logistic on the diagonal, exactly
        Wd = sp.diag(w0, wii0)
        Rd = (sp.eye(2) - F**2 + F * Wd.inv() * F).inv()
        out.append(
            check_zero(
                "diagonal W0: the Riccati form is the exact logistic on each diagonal entry, zero elsewhere",
                Rd - sp.diag(logistic(a1, t, w0, kappa), logistic(a2, t, wii0, kappa)),
            )
        )
        # linear phase: V_R and V have the same linearisation at W = 0, so the Riccati form keeps E W0 E
        eps = sp.Symbol("epsilon", positive=True)
        out.append(
            check_zero(
                "V_R and V agree to first order at W = 0 (the linear phase is exact)",
                sp.diff(V_riccati(eps * W, A) - V_matrix(eps * W, A), eps).subs(eps, 0),
                simplify=False,
            )
        )
        out.extend(self._composite_checks(f, rate, wii, wjj))
        return out

    def _composite_checks(self, f, rate, wii, wjj):
        out = []
        g = f["composite_factor"].rhs
        log_g = g.exp  # the factor is exp(exponent)
        li = logistic(a_i, t, wii0, kappa)
        lj = logistic(a_j, t, wjj0, kappa)
        K_i = sp.log(D(a_i, wii0, t)) / (2 * a_i)
        K_j = sp.log(D(a_j, wjj0, t)) / (2 * a_j)
        out.append(
            check_zero(
                "composite factor = exp(1/2 (a_i - a_j)(K_i - K_j)), K_p = log(D_p)/(2 a_p) (theory's form)",
                log_g - sp.Rational(1, 2) * (a_i - a_j) * (K_i - K_j),
            )
        )
        # its rate is the double commutator's linearisation: d/dw_12 of (V - V_R)_12 at w_12 = 0
        rate_R, (wii_R, wjj_R) = minor_rate(V_riccati)
        out.append(
            check_zero(
                "rate - rate_R = 1/2 (a_i - a_j)(w_ii - w_jj): -1/2 [[A, W], W] linearised in w_ij",
                (rate - rate_R.subs({wii_R: wii, wjj_R: wjj}))
                - sp.Rational(1, 2) * (a_i - a_j) * (wii - wjj),
            )
        )
        out.append(
            check_zero(
                "d log(factor)/dt = kappa/2 (a_i - a_j)(w_ii(t) - w_jj(t)) along the logistic diagonals",
                sp.diff(log_g, t) - kappa * sp.Rational(1, 2) * (a_i - a_j) * (li - lj),
            )
        )
        # small minor entries: Riccati's own linearised minor entry times the factor is the first-order form
        out.append(
            check_zero(
                "linear regime: (Riccati's linearised minor entry) x factor = the first-order minor entry",
                integrated_rate(rate_R, wii_R, wjj_R)
                + log_g
                - sp.expand_log(sp.log(f["minor"].rhs / wij0), force=True),
            )
        )
        out.append(check_zero("factor = 1 at t = 0 (the composite starts at W0)", g.subs(t, 0) - 1))
        out.append(
            check_zero(
                "factor = 1 for equal rates (a_i = a_j): the diagonal is untouched, diagonal W0 stays exact",
                g.subs(a_j, a_i) - 1,
            )
        )
        out.append(
            check_zero(
                "late phase: d log(factor)/dt (= the rate above) -> 0: the composite keeps the late rate",
                sp.limit(kappa * sp.Rational(1, 2) * (a_i - a_j) * (li - lj), t, sp.oo),
            )
        )
        return out


DERIVATION = SymmetricApprox()
