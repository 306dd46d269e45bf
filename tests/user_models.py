"""A user's model module outside the package (imported by tests/test_user_model.py, and by the command line
through --model-module): what a researcher writes to add a model, with no edit to simtheory/.

* ``cli-linear-wd``: the one-layer model with weight decay 0.3 (d = 3), from the packaged derivation's field.
* ``symmetric-wd``: the factorised model W = U U^T with weight decay lambda = LAM on U, defined here once:
  its own derivation (the W-space field derived from the loss on U, verified), the field integrated by the
  package's solvers for any W0, the diagonal closed form, a PyTorch network with the same penalty, and its
  LaTeX in the curves.
"""

import sympy as sp

import derivations.one_layer_weight_decay as wd_derivation
import simtheory as sim
from derivations.symmetric import V_matrix
from simtheory import models
from simtheory.symbolic import (
    Derivation,
    Formula,
    check_zero,
    descent,
    diag_symbols,
    identity_loss,
    matrix_symbols,
    numeric_field,
)

FIELD = numeric_field(wd_derivation.flow, 3, params={"lambda": 0.3})


def flow(task, W0, t, *, convention="gradient-flow", **solver):
    return sim.field_flow(FIELD, task, W0, t, **solver)


models.register(
    models.ModelSpec("cli-linear-wd", "one layer with weight decay 0.3 (d = 3)", flow, lambda f: f[0])
)

# --- symmetric model with weight decay on U ---------------------------------------------------------------

LAM = 0.2  # the weight decay of the registered model
lam = sp.Symbol("lambda", positive=True)
t, a, w0 = sp.Symbol("t", nonnegative=True), sp.Symbol("a", positive=True), sp.Symbol("w0", positive=True)


def u_field(U, A):
    """dU/dt = -dL/dU of L(U) = 1/2 tr((U U^T - I) A (U U^T - I)^T) + lambda/2 ||U||^2, by differentiation."""
    return descent(lambda Z: identity_loss(Z * Z.T, A) + lam / 2 * sum(z**2 for z in Z), U)[0]


def w_field(W, A):
    """The claimed W-space field of W = U U^T (verified against u_field by the derivation's checks)."""
    return 2 * V_matrix(W, A) - 2 * lam * W


class SymmetricWeightDecay(Derivation):
    name = "symmetric_weight_decay"
    title = "Symmetric U U^T model with weight decay on U, gradient flow"
    reference = "a user's extension of Yang et al. (ICLR 2025), Section 4.2"
    assumptions = ("f(x) = U U^T x, loss 1/2 tr((W - I) A (W - I)^T) + lambda/2 ||U||^2; t = lr x steps",)

    def build(self):
        star = 1 - lam / (2 * a)
        rate = 2 * (2 * a - lam)
        return {
            "diagonal": Formula(
                sp.Function("w_ii")(t),
                star * w0 / (w0 + (star - w0) * sp.exp(-rate * t)),
                args=(a, lam, t, w0),
                description="diagonal entry from a diagonal W0 (A diagonal, a = a_i > lambda/2)",
            ),
            "fixed_point": Formula(sp.Symbol("w_ii^*"), star, args=(a, lam)),
        }

    def checks(self, f):
        A2 = sp.diag(*diag_symbols("a", 2, positive=True))
        U = matrix_symbols("u", 2, 2)
        dU = u_field(U, A2)
        chain = dU * U.T + U * dU.T  # dW/dt of W = U U^T
        wt = f["diagonal"].rhs
        c = sp.Symbol("c", positive=True)  # a = lambda/2 + c: a concept strong enough to be learned
        return [
            check_zero(
                "dW/dt of W = U U^T is w_field(U U^T) (d = 2, symbolic U)", chain - w_field(U * U.T, A2)
            ),
            check_zero(
                "the diagonal closed form solves the field's diagonal entry",
                wt.diff(t) - w_field(sp.Matrix([[wt]]), sp.Matrix([[a]]))[0, 0],
            ),
            check_zero("it starts at w0", wt.subs(t, 0) - w0),
            check_zero(
                "for a > lambda/2 it tends to the fixed point 1 - lambda/(2a)",
                (sp.limit(wt.subs(a, lam / 2 + c), t, sp.oo) - f["fixed_point"].rhs.subs(a, lam / 2 + c)),
            ),
        ]


DERIVATION = SymmetricWeightDecay()
SYM_FIELD = {}  # d -> the compiled field at lambda = LAM


def symmetric_wd_flow(task, W0, t, *, convention="gradient-flow", **solver):
    d = task.d if isinstance(task, sim.SIMTask) else task.shape[-1]
    if d not in SYM_FIELD:
        SYM_FIELD[d] = numeric_field(w_field, d, params={"lambda": LAM})
    return sim.field_flow(SYM_FIELD[d], task, W0, t, **solver)


def u_penalty(weights):
    """The same penalty in PyTorch: lambda/2 ||U||_F^2 per ensemble member."""
    (U,) = weights
    return 0.5 * LAM * (U * U).sum(dim=(-2, -1))


models.register(
    models.ModelSpec(
        "symmetric-wd",
        f"U U^T with weight decay {LAM} on U (a user's model)",
        symmetric_wd_flow,
        lambda factors: sim.symmetric_init(factors[0]),  # the simulator's U -> the flow's W0 = U U^T
        formulas=((DERIVATION, "diagonal"), (DERIVATION, "fixed_point")),
        network=models.linear_network(
            lambda d, widths: [(d, widths[0] if widths else d)],
            lambda weights: weights[0] @ weights[0].mT,
            penalty=u_penalty,
            n_widths=(0, 1),
        ),
        penalty_of_W=lambda W: 0.5 * LAM * W.trace(axis1=-2, axis2=-1),  # ||U||^2 = tr(U U^T)
    )
)
