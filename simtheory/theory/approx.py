"""Closed-form approximations of the symmetric flow for any W0 (``derivations/symmetric_approx``): W(t) and
the OOD loss curves of each form, and the closed-form swing-by verdicts of a batch (the criterion behind
:func:`simtheory.swingby.predict_swingby`)."""

from __future__ import annotations

import warnings

import numpy as np

from .. import _checks
from ..measures import shape
from ..task import SIMTask
from ._base import convention_rates, prepare
from ._kernels import composite, eigenbasis, first_order, loss_chunks, riccati
from .losses import ood_losses
from .symmetric import symmetric_flow

#: the closed forms of :func:`symmetric_approx` (its ``form``), default first
FORMS = ("composite", "riccati", "first-order")
APPROX_METHODS = FORMS  # the name before ``form`` replaced ``method``


def _form(form: str, method: str | None) -> str:
    """The closed form asked for (``method``: its old name, deprecated)."""
    if method is not None:
        warnings.warn(
            "the closed form is now chosen with form=, not method=", DeprecationWarning, stacklevel=3
        )
        form = method
    return _checks.choice(form, "form", FORMS)


def symmetric_approx_ood_loss(
    task: SIMTask,
    W0,
    t,
    convention: str = "gradient-flow",
    *,
    form: str = "composite",
    A=None,
    x=None,
    method: str | None = None,
) -> np.ndarray:
    """The OOD loss curves ``1/2 ||W(t) x - x||^2`` of :func:`symmetric_approx`, without forming every W(t)
    (the Riccati form solves one small positive definite system per time, the composite one per column of W
    that x uses, the first-order form builds those s columns), entry by entry in chunks of settings. ``A``
    replaces the task's second moment (e.g. scaled per setting, or a training set's) and ``x`` its OOD point
    (d,) or one per setting (B, d); ``A`` broadcasts with the batch axes of ``W0``. ``form``: as for
    :func:`symmetric_approx`. Returns ``(*batch, len(t))``.
    """
    if not isinstance(task, SIMTask):
        raise ValueError(f"task must be a SIMTask (the OOD point needs mu), got {type(task).__name__}")
    kappa, square = convention_rates(convention)
    form = _form(form, method)
    A, W0, batch = prepare(task if A is None else A, W0)
    W0 = _checks.psd(W0, "W0")
    t = _checks.times(t)
    if square:
        A = A * A
    B, d = W0.shape[0], W0.shape[-1]
    x = task.test_point() if x is None else _checks.as_float_array(x, "x")
    if x.shape not in ((d,), (B, d)):
        raise ValueError(f"x must have shape ({d},) or (batch = {B}, {d}), got {x.shape}")
    lam, Q, M0 = eigenbasis(A, W0)
    xq = np.einsum("bji,bj->bi", Q, np.broadcast_to(x, (B, d)))
    loss = np.empty((B, t.size))
    for sl, chunk in loss_chunks(lam, M0, xq, t, kappa, form):
        loss[sl] = chunk
    return loss.reshape(batch + (t.size,))


def symmetric_approx(
    task_or_A, W0, t, convention: str = "gradient-flow", *, form: str = "composite", method: str | None = None
) -> np.ndarray:
    """A closed-form approximation of :func:`symmetric_flow` for any ``W0`` (derivations.symmetric_approx).

    Same contract as :func:`symmetric_flow` (batches broadcast, the three conventions, gradient-flow time;
    returns ``(*batch, len(t), d, d)``), in closed form: no ODE solver, cost linear in the number of times.

    * ``form="composite"`` (default): the Riccati form with every minor entry (i, j) multiplied by
      ``exp(1/2 (a_i - a_j)(K_i - K_j))``, ``K_p = kappa int_0^t w_pp`` along the logistic diagonals -- the
      flow's linearised minor-entry growth over the Riccati form's own. Keeps the Riccati form's linear
      phase, cross-talk and late rate, and equals the first-order form while minor entries are small.
      Symmetric, but not necessarily positive semi-definite.
    * ``form="riccati"``: ``W(t) = (I - F^2 + F W0^{-1} F)^{-1}``, ``F = e^{-kappa A t}``: the flow without
      the double commutator ``-1/2 [[A, W], W]`` of V. Positive semi-definite, tends to I (on the range of
      W0: a singular W0's null space stays null, as the flow's does); suppresses a minor entry twice as
      fast as the flow once its strong concept is learned.
    * ``form="first-order"``: the diagonal logistics and every minor entry from its linearised equation
      (the cross-talk between minor entries neglected).

    Validity: all three are exact for commuting W0 and in the linear phase. How often each gets the shape of
    the OOD loss (monotone or not) and the bump height of the numerical flow on random small inits, and how
    its error shrinks with the init scale, is measured by ``simtheory reproduce`` (section 5; the numbers in
    ``docs/results.md``): the composite form is the one to use, the Riccati form underestimates bumps, the
    first-order form does not converge.
    :func:`simtheory.swingby.predict_swingby` with ``criterion="approx"`` classifies the composite form.
    ``method`` is the old name of ``form`` (deprecated).
    """
    kappa, square = convention_rates(convention)
    form = _form(form, method)
    A, W0, batch = prepare(task_or_A, W0)
    W0 = _checks.psd(W0, "W0")
    t = _checks.times(t)
    _checks.allocation(W0.size * t.size, "the result (batch x len(t) x d x d)")
    if square:
        A = A * A
    lam, Q, M0 = eigenbasis(A, W0)
    M = {"composite": composite, "riccati": riccati, "first-order": first_order}[form](lam, M0, t, kappa)
    out = Q[:, None] @ M @ np.swapaxes(Q, -1, -2)[:, None]
    return out.reshape(batch + out.shape[1:])


def approx_verdicts(
    A, W0, x, t, kappa: float = 2.0, *, rel_tol: float = 1e-3, fallback: bool = False, forms=("composite",)
) -> dict:
    """The closed-form swing-by criterion for a batch: A (B, d, d) effective second moments, W0 (B, d, d),
    OOD points x (B, d), one time grid t (rescale A per setting to share it), speed kappa.

    The verdict (monotone or not, and the bump) is the composite form's (:func:`simtheory.symmetric_approx`).
    ``fallback=True`` checks it against the first-order form: where the two disagree on monotone vs not the
    flow is integrated and its verdict used ("ODE"), elsewhere the composite's ("closed form"). ``forms``:
    the closed forms whose own verdicts to return as well (studies compare them). Returns arrays:
    ``nonmonotone`` (B,), ``bump`` (B,), ``decided`` (B,; True where no ODE was needed) and, per form
    evaluated, ``verdicts[form]`` and ``bumps[form]``.
    """
    A = np.asarray(A, dtype=np.float64)
    W0 = np.asarray(W0, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    t = _checks.times(t, "t")
    forms = tuple(_checks.choice(f, "forms", FORMS) for f in forms)
    needed = ("composite",) + (("first-order",) if fallback else ()) + forms
    B = W0.shape[0]
    lam, Q, M0 = eigenbasis(A, W0)
    xq = np.einsum("bji,bj->bi", Q, x)  # x in A's eigenbasis: the loss is rotation invariant
    verdicts, bumps = {}, {}
    for form in dict.fromkeys(needed):
        verdicts[form], bumps[form] = np.zeros(B, bool), np.zeros(B)
        for sl, loss in loss_chunks(lam, M0, xq, t, kappa, form):
            verdicts[form][sl], bumps[form][sl] = shape(t, loss, rel_tol)
    nonmono, bump = verdicts["composite"].copy(), bumps["composite"].copy()
    decided = np.ones(B, bool)
    if fallback:
        decided = verdicts["composite"] == verdicts["first-order"]
        if (~decided).any():
            und = ~decided
            # dW/dt = kappa V_A(W) = V_{kappa A}(W): the "paper" convention (speed 1) on kappa A, any kappa
            W = symmetric_flow(kappa * A[und], W0[und], t, "paper")
            nonmono[und], bump[und] = shape(t, ood_losses(W, x[und]), rel_tol)
    return {"nonmonotone": nonmono, "bump": bump, "decided": decided, "verdicts": verdicts, "bumps": bumps}
