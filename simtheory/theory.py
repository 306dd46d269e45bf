"""Predictors compiled from the derivations, vectorised over time grids and batches of settings.

Conventions (they decide whether numbers match a simulation):

* Time ``t`` is **gradient-flow time**, ``t = learning rate x steps`` of full-batch GD on the
  loss ``L = 1/2 mean ||f(x) - x||^2`` (sum over coordinates), unless a ``convention`` says
  otherwise (:data:`CONVENTIONS`).
* Every predictor takes a :class:`~simtheory.SIMTask` (population ``A = diag(a)``) or an explicit
  second-moment matrix ``A`` of shape ``(d, d)`` or ``(..., d, d)`` (symmetric PSD, possibly
  non-diagonal: use :func:`~simtheory.empirical_second_moment` for exact finite-sample predictions).
* Shapes: batch axes of ``A`` and of the initial weights broadcast together to ``batch``; a
  predictor returns ``(*batch, len(t), d, d)``. With no batch axes that is ``(len(t), d, d)``.

The closed forms are the ones in ``derivations/`` (compiled with :mod:`simtheory._compile`):
``linear_flow`` and ``linear_gd`` apply the one-layer solutions in the eigenbasis of A (exact for
any symmetric A); ``symmetric_flow`` uses the decoupled logistic solution whenever W0 commutes
with A and integrates ``dW/dt = kappa V(W)`` numerically otherwise; ``untied_flow`` uses the
mode-wise sigmoid for balanced diagonal starts and integrates otherwise; ``deep_flow`` integrates any
deep linear network (no closed form exists).
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from . import _checks, _solvers, _threads
from ._compile import compiled
from .task import SIMTask, second_moment

#: time conventions of :func:`symmetric_flow`: name -> (speed kappa, square A elementwise)
CONVENTIONS = {
    "gradient-flow": (2.0, False),  # dW/dt = 2 V(W): gradient flow on U, t = lr x steps
    "paper": (1.0, False),  # dW/dt = V(W): the paper's text (half speed)
    "paper-code": (1.0, True),  # dW/dt = V(W) with A replaced by A∘A: the published scripts
}


def _convention(convention: str) -> tuple[float, bool]:
    return CONVENTIONS[_checks.choice(convention, "convention", tuple(CONVENTIONS))]


def effective_A(task_or_A, convention: str = "gradient-flow") -> tuple[np.ndarray, float]:
    """The matrix and speed a convention integrates: ``dW/dt = kappa V_{A_eff}(W)``."""
    kappa, square = _convention(convention)
    A = second_moment(task_or_A)
    return (A * A if square else A), kappa


def _flat_batch(**named: np.ndarray):
    """Broadcast the leading (batch) axes of matrices together and flatten them to one axis B.

    Returns the flattened arrays (B, rows, cols), in the order given, and the batch shape."""
    try:
        batch = np.broadcast_shapes(*(a.shape[:-2] for a in named.values()))
    except ValueError:
        shapes = ", ".join(f"{k} {a.shape[:-2]}" for k, a in named.items())
        raise ValueError(f"batch shapes of {shapes} do not broadcast") from None
    B = int(np.prod(batch, dtype=np.int64))
    flat = [np.broadcast_to(a, batch + a.shape[-2:]).reshape((B,) + a.shape[-2:]) for a in named.values()]
    return flat, batch


def _prepare(task_or_A, W0, name: str = "W0"):
    """Validated A and W0 broadcast to a flat batch (B, d, d), plus the batch shape."""
    A = second_moment(task_or_A)
    W0 = _checks.bounded(_checks.square_batch(W0, name, A.shape[-1]), name)
    (A, W0), batch = _flat_batch(task_or_A=A, **{name: W0})
    return A, W0, batch


def _modal_sum(C: np.ndarray, G: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
    """``C + sum_i G_i(t) left_i right_i^T`` for a batch: C (B,d,d), G (B,T,d) -> (B,T,d,d).

    ``left_i``/``right_i`` are the columns of ``left``/``right`` (B, d, d). Done as one batched
    GEMM over rank-one modes, which is what makes the closed forms fast on long time grids.
    """
    B, T, d = G.shape
    R = np.einsum("bki,bli->bikl", left, right).reshape(B, d, d * d)
    with _threads.for_size(2.0 * T * d**3):  # one GEMM per setting: threads only where one is large
        out = np.matmul(G, R).reshape(B, T, d, d)
    out += C[:, None]  # in place: the result can be hundreds of MiB
    return out


def _eig(A: np.ndarray):
    lam, Q = np.linalg.eigh(A)
    return np.clip(lam, 0.0, None), Q


# -- one layer --------------------------------------------------------------------------------


def linear_flow(task_or_A, W0, t, *, weight_decay: float = 0.0) -> np.ndarray:
    """Gradient flow of the one-layer model f(x) = W x: ``W(t) = I - (I - W0) expm(-A t)``.

    Exact for any symmetric PSD A (paper Theorem 4.1 in A's eigenbasis). ``t``: gradient-flow
    time (lr x steps), scalar or 1-d. ``weight_decay`` lambda > 0 adds ``lambda/2 ||W||_F^2`` to the loss
    (``derivations.one_layer_weight_decay``, in A's eigenbasis: direction i is learned to the fraction
    ``a_i / (a_i + lambda)`` at the rate ``a_i + lambda``). Returns ``(*batch, len(t), d, d)``.
    """
    A, W0, batch = _prepare(task_or_A, W0)
    t = _checks.times(t)
    wd = _checks.real_number(weight_decay, "weight_decay", low=0.0)
    _checks.allocation(W0.size * t.size, "the result (batch x len(t) x d x d)")
    lam, Q = _eig(A)
    if wd > 0:
        # W Q evolves entry by entry: entry (k, i) towards Q_ki a_i / (a_i + lambda) at rate a_i + lambda
        entry = compiled("one_layer_weight_decay", "entry")
        args = dict(a=lam[:, None, None, :], t=t[None, :, None, None], w0=(W0 @ Q)[:, None], delta=Q[:, None])
        Wq = entry(**args, **{"lambda": wd})  # the derivation's symbol is named lambda
        W = np.matmul(Wq, np.swapaxes(Q, -1, -2)[:, None])
        return W.reshape(batch + W.shape[1:])
    learned = compiled("one_layer_flow", "entry")  # fraction of each eigen-direction learned
    G = learned(a=lam[:, None, :], t=t[None, :, None], w0=0.0, delta=1.0)
    d = A.shape[-1]
    W = _modal_sum(W0, G, (np.eye(d) - W0) @ Q, Q)
    return W.reshape(batch + W.shape[1:])


def linear_ood_loss(task: SIMTask, W0, t, *, A=None, v=None) -> np.ndarray:
    """The OOD loss curve of the one-layer gradient flow, ``1/2 ||(W(t) - I) x||^2``, without forming W(t).

    With ``A = Q diag(lam) Q^T``: ``(W(t) - I) x = -C e(t)``, ``C = (I - W0) Q diag(Q^T x)`` and
    ``e_i(t) = exp(-lam_i t)`` (``derivations.one_layer_flow``'s entry from w0 = 1 towards 0), so a curve
    costs ``len(t) x d^2`` flops instead of the ``len(t) x d^3`` of :func:`linear_flow` and its memory.
    ``x`` is the task's test point at composition ``v`` (default all ones); ``A`` replaces the task's
    population second moment (e.g. a training set's ``A_n``; broadcasts with the batch axes of ``W0``).
    Returns ``(*batch, len(t))``, with a last axis of length m for m rows of ``v``.
    """
    if not isinstance(task, SIMTask):
        raise ValueError(f"task must be a SIMTask (the OOD point needs mu), got {type(task).__name__}")
    A, W0, batch = _prepare(task if A is None else A, W0)
    x = _points(task, v)
    t = _checks.times(t)
    B, d = W0.shape[0], W0.shape[-1]
    xs = x.reshape(-1, d)  # (m, d)
    _checks.allocation(B * t.size * (d + xs.shape[0]), "the result and its modes (batch x len(t) x d)")
    lam, Q = _eig(A)
    entry = compiled("one_layer_flow", "entry")
    IQ = (np.eye(d) - W0) @ Q  # (B, d, d)
    proj = np.einsum("bji,mj->bmi", Q, xs)  # Q^T x for every point: (B, m, d)
    Ct = np.swapaxes(IQ[:, None, :, :] * proj[:, :, None, :], -1, -2)  # C^T per setting and point
    loss = np.empty((B, t.size, xs.shape[0]))
    # in chunks of settings, so that the temporaries (settings x times x d, several of them) stay ~1 MiB
    # whatever the batch; the time goes to exp (about 2/3 of it at d = 8: benchmarks/predict.py item 1)
    step = max(1, (1 << 17) // max(1, t.size * d))
    with _threads.for_size(2.0 * t.size * d * d):
        for lo in range(0, B, step):
            hi = min(B, lo + step)
            decay = entry(a=lam[lo:hi, None, :], t=t[None, :, None], w0=1.0, delta=0.0)  # exp(-lam t)
            err = np.matmul(np.broadcast_to(decay, (hi - lo, t.size, d))[:, None], Ct[lo:hi])  # (b, m, T, d)
            loss[lo:hi] = 0.5 * np.einsum("bmti,bmti->btm", err, err)
    out = loss if x.ndim == 2 else loss[..., 0]
    return out.reshape(batch + out.shape[1:])


def linear_gd(task_or_A, W0, lr, steps) -> np.ndarray:
    """Exact full-batch GD of the one-layer model: ``W_k = I - (I - W0)(I - lr A)^k``.

    ``lr`` (scalar or broadcastable to the batch) must satisfy ``0 < lr < 2 / max eig(A)``;
    ``steps``: non-negative integers (scalar or 1-d). Returns ``(*batch, len(steps), d, d)``.
    """
    A, W0, batch = _prepare(task_or_A, W0)
    steps_arr = np.atleast_1d(np.asarray(steps))
    if steps_arr.ndim != 1 or steps_arr.size == 0 or not np.issubdtype(steps_arr.dtype, np.integer):
        raise ValueError(f"steps must be a non-negative integer or 1-d array of them, got {steps!r}")
    if np.any(steps_arr < 0):
        raise ValueError(f"steps must be >= 0, got min {steps_arr.min()}")
    _checks.allocation(W0.size * steps_arr.size, "the result (batch x len(steps) x d x d)")
    lr_arr = _checks.as_float_array(lr, "lr")
    try:
        lr_b = np.broadcast_to(lr_arr, batch).reshape(-1)
    except ValueError:
        raise ValueError(
            f"lr must be a scalar or broadcast to the batch shape {batch}, got {lr_arr.shape}"
        ) from None
    lam, Q = _eig(A)
    if np.any(lr_b <= 0):
        raise ValueError(f"lr must be > 0, got {lr_arr.tolist()}")
    bound = 2.0 / np.maximum(lam.max(axis=-1), 1e-300)
    if np.any(lr_b >= bound):
        b = int(np.argmax(lr_b / bound))
        raise ValueError(
            f"lr must be < 2 / max eigenvalue of A = {bound[b]:.6g} for GD to be stable, got {lr_b[b]:.6g}"
        )
    learned = compiled("one_layer_gd", "entry")
    G = learned(a=lam[:, None, :], lr=lr_b[:, None, None], k=steps_arr[None, :, None], w0=0.0, delta=1.0)
    d = A.shape[-1]
    W = _modal_sum(W0, np.asarray(G, dtype=np.float64), (np.eye(d) - W0) @ Q, Q)
    return W.reshape(batch + W.shape[1:])


# -- symmetric U U^T -------------------------------------------------------------------------------

_GOLDEN = 0.6180339887498949


def _joint_basis(A: np.ndarray, W0: np.ndarray, tol: float = 1e-10):
    """For each batch item: an orthonormal basis diagonalising both A and W0 when they commute.

    Returns (P, ok): P (B, d, d) and a boolean mask of the items where P diagonalises both
    to within ``tol`` (relative). Uses the eigenvectors of ``A + c W0`` for an irrational c.
    """
    nA = np.linalg.norm(A, axis=(-2, -1))
    nW = np.linalg.norm(W0, axis=(-2, -1))
    c = _GOLDEN * (nA + 1e-300) / (nW + 1e-300)
    _, P = np.linalg.eigh(A + c[:, None, None] * W0)

    def offdiag(M):
        R = np.swapaxes(P, -1, -2) @ M @ P
        return np.linalg.norm(R - np.einsum("bii->bi", R)[..., None] * np.eye(M.shape[-1]), axis=(-2, -1))

    ok = (offdiag(A) <= tol * np.maximum(nA, 1e-300)) & (offdiag(W0) <= tol * np.maximum(nW, 1e-300))
    return P, ok


def _closed_form_stats(systems: int, state: int, t: np.ndarray, reason: str) -> None:
    """Record, for :func:`~simtheory.solver_log`, that ``systems`` settings were evaluated in closed form."""
    _solvers.record(
        _solvers.SolverStats(
            "closed-form", reason, systems, state, float(t.max()) if t.size else 0.0, None, None
        )
    )


def symmetric_flow(
    task_or_A,
    W0,
    t,
    convention: str = "gradient-flow",
    *,
    method: str = "auto",
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> np.ndarray:
    """Flow of W = U U^T for the symmetric two-layer model f(x) = U U^T x.

    ``dW/dt = kappa V(W)`` with ``V(W) = WA + AW - 1/2 (A W^2 + W^2 A + 2 W A W)``; the
    ``convention`` fixes time and rates:

    * ``"gradient-flow"`` (default): kappa = 2, gradient flow on U; t = lr x steps of GD on U.
    * ``"paper"``: kappa = 1, the paper's dW/dt = V (its time runs at half speed).
    * ``"paper-code"``: kappa = 1 and A replaced by A∘A (rates a_i^2), as the paper's
      published scripts integrate it.

    ``W0`` must be symmetric positive semi-definite (it is U0 U0^T). Where W0 commutes with A
    the closed-form logistic solution is used (exact); otherwise the flow is integrated at tolerances
    ``rtol``/``atol`` (``method="auto"``: LSODA with the analytic Jacobian, switching between Adams and BDF
    steps by itself; DOP853 for d > 20; or any ``solve_ivp`` method by name). What it cost (method, steps,
    evaluations, seconds) is recorded in :func:`~simtheory.solver_log`. Returns ``(*batch, len(t), d, d)``.
    """
    kappa, square = _convention(convention)
    A, W0, batch = _prepare(task_or_A, W0)
    W0 = _checks.psd(W0, "W0")
    method, rtol, atol = _checks.solver_options(method, rtol, atol)
    t = _checks.times(t)
    _checks.allocation(W0.size * t.size, "the result (batch x len(t) x d x d)")
    if square:
        A = A * A
    B, d = W0.shape[0], W0.shape[-1]
    out = np.empty((B, t.size, d, d))
    P, ok = _joint_basis(A, W0)
    if ok.any():
        Pk = P[ok]
        lam = np.clip(np.einsum("bji,bjk,bki->bi", Pk, A[ok], Pk), 0.0, None)
        w = np.clip(np.einsum("bji,bjk,bki->bi", Pk, W0[ok], Pk), 0.0, None)
        logistic = compiled("symmetric", "logistic")
        with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
            U = logistic(a=lam[:, None, :], t=t[None, :, None], w0=w[:, None, :], kappa=kappa)
        U = np.where(w[:, None, :] > 0, U, 0.0)  # w0 = 0 is a fixed point (avoids 0/0 at huge t)
        out[ok] = _modal_sum(np.zeros_like(W0[ok]), U, Pk, Pk)
        _closed_form_stats(int(ok.sum()), d * d, t, "W0 commutes with A: the logistic solution")
    if (~ok).any():
        out[~ok] = _solvers.solve_symmetric(A[~ok], W0[~ok], t, kappa, method=method, rtol=rtol, atol=atol)
    return out.reshape(batch + out.shape[1:])


#: methods of :func:`symmetric_approx`
APPROX_METHODS = ("composite", "riccati", "first-order")


def _log_denominator(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``log(1 - w + w e^x)`` for x >= 0, w >= 0 (``derivations.symmetric_approx``'s D_p):
    ``log1p(w expm1(x))``, accurate for small x, continued past x = 700 (where expm1 would overflow) by
    its slope 1 -- exact to ``e^-700 / w``, i.e. for any w > 1e-290 -- and 0 at w = 0 (a fixed point)."""
    with np.errstate(over="ignore", under="ignore"):
        out = np.log1p(w * np.expm1(np.minimum(x, 700.0)))
        if np.any(x > 700.0):
            out += np.maximum(x - 700.0, 0.0) * (w > 0)
    return out


def _minor_exponent(ai, aj, Ki, Kj, kt):
    """The first-order form's log minor-entry growth
    ``kappa (a_i + a_j) t - 1/2 ((3 a_i + a_j) K_i + (3 a_j + a_i) K_j)``, K_p = kappa x the integral of the
    logistic w_pp (:func:`_logistic_parts`); broadcasts."""
    return (ai + aj) * kt - 0.5 * ((3 * ai + aj) * Ki + (3 * aj + ai) * Kj)


def _logistic_parts(a: np.ndarray, w: np.ndarray, t: np.ndarray, kappa: float):
    """For rates a and diagonal starts w >= 0 broadcast against times t: the logistic exponent ``x = 2 kappa a
    t`` and ``K = kappa x int_0^t w_pp`` (``log D_p / (2 a)``, or ``kappa w t`` at a = 0)."""
    x = 2.0 * kappa * a * t
    logD = _log_denominator(x, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        K = np.where(a > 0, logD / np.where(a > 0, 2.0 * a, 1.0), kappa * w * t)
    return x, K


def _logistic_value(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The logistic diagonal ``w / (w + (1 - w) e^{-x})`` (0 where w = 0, a fixed point)."""
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        return np.where(w > 0, w / (w + (1.0 - w) * np.exp(-x)), 0.0)


def _first_order(lam: np.ndarray, M0: np.ndarray, t: np.ndarray, kappa: float, cols=None) -> np.ndarray:
    """The first-order form in A's eigenbasis: lam (B, d) rates, M0 (B, d, d) -> (B, T, d, d), or only the
    columns ``cols`` of W: (B, T, d, len(cols))."""
    cols = np.arange(M0.shape[-1]) if cols is None else np.asarray(cols)
    w = np.clip(np.diagonal(M0, axis1=-2, axis2=-1), 0.0, None)[:, None, :]  # (B, 1, d)
    a = lam[:, None, :]
    x, K = _logistic_parts(a, w, t[None, :, None], kappa)  # (B, T, d)
    exponent = _minor_exponent(
        a[..., :, None],
        a[..., None, cols],
        K[..., :, None],
        K[..., None, cols],
        kappa * t[None, :, None, None],
    )
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # w = 0: 0/0 where exp(-x) underflows
        W = M0[:, None][..., cols] * np.exp(np.minimum(exponent, 700.0))
    W[..., cols, np.arange(cols.size)] = _logistic_value(x, w)[..., cols]
    return W


def _first_order_loss(
    lam: np.ndarray, M0: np.ndarray, xq: np.ndarray, t: np.ndarray, kappa: float
) -> np.ndarray:
    """The first-order form's OOD loss ``1/2 ||W(t) x - x||^2`` (b, T) for a chunk (lam (b, d), M0 (b, d, d),
    x in A's eigenbasis (b, d)): entry by entry on contiguous (b, T) arrays, only the columns of W that x
    uses (the same formulas as :func:`_first_order`, without its (b, T, d, s) temporaries)."""
    d = lam.shape[1]
    cols = np.flatnonzero(np.any(xq != 0.0, axis=0))
    w = np.clip(np.diagonal(M0, axis1=-2, axis2=-1), 0.0, None)
    parts = [_logistic_parts(lam[:, i, None], w[:, i, None], t, kappa) for i in range(d)]  # (x, K) per p
    kt = kappa * t
    loss = np.zeros((lam.shape[0], t.size))
    for i in range(d):
        y = np.repeat(-xq[:, i, None], t.size, axis=1)  # W x - x, accumulated
        for j in cols:
            if i == j:
                y += _logistic_value(parts[i][0], w[:, i, None]) * xq[:, j, None]
                continue
            e = _minor_exponent(lam[:, i, None], lam[:, j, None], parts[i][1], parts[j][1], kt)
            with np.errstate(over="ignore", under="ignore", invalid="ignore"):
                y += (M0[:, i, j] * xq[:, j])[:, None] * np.exp(np.minimum(e, 700.0))
        loss += y * y
    return 0.5 * loss


def _riccati_split(M0: np.ndarray):
    """Eigen-decomposition of M0 (B, d, d) and which settings are positive definite enough (smallest
    eigenvalue above 1e-8 of the largest -- the error of P = M0^{-1} grows with the condition number -- and
    above 1e-290 so that its inverse stays finite) for the Riccati form's ``M0^{-1}``."""
    ev, V = np.linalg.eigh(M0)
    return ev, V, (ev[:, 0] > 1e-8 * ev[:, -1]) & (ev[:, 0] > 1e-290)


def _inverse(ev: np.ndarray, V: np.ndarray) -> np.ndarray:
    """``M0^{-1} = V diag(1/ev) V^T`` from M0's eigen-decomposition (b, d), (b, d, d)."""
    return (V / ev[:, None, :]) @ np.swapaxes(V, -1, -2)


def _riccati_P(lam: np.ndarray, ev: np.ndarray, V: np.ndarray, t: np.ndarray, kappa: float) -> np.ndarray:
    """``P(t) = I - F^2 + F M0^{-1} F`` (b, T, d, d) for positive definite M0 = V diag(ev) V^T, F = e^{-kappa
    lam t} in (0, 1] (no overflow): W(t) = P(t)^{-1} is the Riccati form."""
    d = ev.shape[-1]
    P0 = _inverse(ev, V)
    with np.errstate(under="ignore"):
        F = np.exp(-kappa * lam[:, None, :] * t[None, :, None])  # (b, T, d)
    P = F[..., :, None] * F[..., None, :]
    P *= P0[:, None]
    P.reshape(-1, d * d)[:, :: d + 1] += 1.0 - (F * F).reshape(-1, d)  # the diagonal, through a strided view
    return P


def _riccati(lam: np.ndarray, M0: np.ndarray, t: np.ndarray, kappa: float) -> np.ndarray:
    """The Riccati form in A's eigenbasis: lam (B, d) rates, M0 (B, d, d) -> (B, T, d, d).

    Positive definite M0: ``P(t)^{-1}`` (:func:`_riccati_P`).
    Ill-conditioned or singular M0 (an eigenvalue below 1e-8 of the largest; rare, looped): the Riccati
    flow's exact propagator ``W -> E_h W (I + (E_h^2 - I) W)^{-1} E_h`` (``E_h = e^{kappa A h}``, the same
    closed form over a step h) applied to a factor ``W = U U^T`` (U: d x r over M0's positive eigenvalues;
    a positive round-off eigenvalue grows as a tiny init would, as in the flow):
    ``U <- E_h U C^{-T}``, ``C C^T = I + U^T (E_h^2 - I) U``, in steps of ``kappa max(a) h <= 2`` (so C is
    well conditioned; at most 2000 per output interval). No inverse of M0 is formed; a null space stays
    null, as the flow's; W stays symmetric positive semi-definite.
    """
    B, d = M0.shape[0], M0.shape[-1]
    ev, V, full = _riccati_split(M0)
    out = np.empty((B, t.size, d, d))
    if full.any():
        out[full] = np.linalg.inv(_riccati_P(lam[full], ev[full], V[full], t, kappa))
    for k in np.flatnonzero(~full):
        keep = ev[k] > 0.0  # exact zeros (and round-off below them) are the null space
        U = V[k][:, keep] * np.sqrt(ev[k][keep])  # (d, r)
        rate = kappa * max(float(lam[k].max()), 0.0)
        before = 0.0
        for i, ti in enumerate(t):
            n = int(min(2000, max(1, np.ceil(rate * (ti - before) / 2.0))))
            h = (ti - before) / n
            x = np.minimum(2.0 * kappa * lam[k] * h, 600.0)
            E, D = np.exp(0.5 * x), np.expm1(x)
            for _ in range(n if h > 0 else 0):
                C = np.linalg.cholesky(np.eye(U.shape[1]) + U.T @ (D[:, None] * U))
                U = E[:, None] * np.linalg.solve(C, U.T).T
            out[k, i] = U @ U.T
            before = ti
    return out


def _composite(lam: np.ndarray, M0: np.ndarray, t: np.ndarray, kappa: float) -> np.ndarray:
    """The composite form in A's eigenbasis: the Riccati form with every minor entry multiplied by
    :func:`_correction` -> (B, T, d, d)."""
    W = _riccati(lam, M0, t, kappa)
    w = np.clip(np.diagonal(M0, axis1=-2, axis2=-1), 0.0, None)[:, None, :]
    a = lam[:, None, :]
    _, K = _logistic_parts(a, w, t[None, :, None], kappa)  # (B, T, d)
    W *= _correction(a[..., :, None], a[..., None, :], K[..., :, None], K[..., None, :])
    return W


class _Workspace:
    """Work arrays reused across the chunks of one call, by name: fresh large temporaries per operation cost
    page faults (the allocator hands freed blocks back to the system), more than the arithmetic on them."""

    def __init__(self):
        self._arrays = {}

    def __call__(self, name: str, shape: tuple) -> np.ndarray:
        a = self._arrays.get(name)
        if a is None or a.shape != shape:
            a = self._arrays[name] = np.empty(shape)
        return a


def _decay(lam: np.ndarray, t: np.ndarray, kappa: float, ws: _Workspace) -> np.ndarray:
    """``F = e^{-kappa a t}`` (d, b, T) for rates lam (b, d), each F[p] contiguous, kept in [e^-300, 1]:
    below that its products would be subnormal numbers, whose arithmetic is ~100x slower, while every use
    (P = I - F^2 + F P0 F, whose diagonal is 1 there; :func:`_coupling`) is unchanged to double precision."""
    F = ws("F", lam.shape[::-1] + t.shape)
    np.multiply(lam.T[:, :, None], -kappa * t, out=F)
    return np.exp(np.maximum(F, -300.0, out=F), out=F)


def _riccati_solve(F: np.ndarray, P0: np.ndarray, rhs: list, ws: _Workspace) -> list:
    """Solve ``P(t) y = r`` for each right-hand side r in ``rhs`` (lists of d arrays (b, 1) or (b, T)), for a
    chunk: F from :func:`_decay` (d, b, T), P0 = M0^{-1} (b, d, d) positive definite. Returns a list (per r)
    of d arrays (b, T).

    ``P(t) = I - F^2 + F P0 F`` is built entry by entry as contiguous (b, T) arrays (its lower triangle) and
    eliminated once, symmetric Gaussian elimination without pivoting (stable for SPD), with d^3/3 whole-array
    operations (and d^2 per right-hand side): at d <= 10 several times faster than a (b, T, d, d) array of
    small systems, whose strided per-entry access and LAPACK's per-matrix calls cost more than the arithmetic.
    """
    d, shape = F.shape[0], F.shape[1:]
    tri = ws("triangle", (d * (d + 1) // 2,) + shape)
    L = [[tri[i * (i + 1) // 2 + j] if j <= i else None for j in range(d)] for i in range(d)]
    for i in range(d):  # the lower triangle of P, then of its elimination
        np.multiply(F[i], F[i], out=L[i][i])
        L[i][i] *= (P0[:, i, i] - 1.0)[:, None]
        L[i][i] += 1.0
        for j in range(i):
            np.multiply(F[i], F[j], out=L[i][j])
            L[i][j] *= P0[:, i, j][:, None]
    Y = ws("solutions", (len(rhs), d) + shape)
    for n, r in enumerate(rhs):
        for i, r_i in enumerate(r):
            Y[n, i] = r_i
    ys = [list(Y[n]) for n in range(len(rhs))]
    # the forward pass leaves a right-hand side's leading zeros zero: start it at its first nonzero entry
    # (x and the unit columns are nonzero only at the concepts, which A's ascending eigenbasis puts last)
    first = [next((i for i, r_i in enumerate(r) if np.any(r_i)), d) for r in rhs]
    f, tmp = ws("factor", shape), ws("product", shape)
    for k in range(d - 1):  # eliminate column k: a_ij -= (a_ik / a_kk) a_jk, lower triangle only
        for i in range(k + 1, d):
            np.divide(L[i][k], L[k][k], out=f)
            for j in range(k + 1, i + 1):
                L[i][j] -= np.multiply(f, L[j][k], out=tmp)
            for y, lo in zip(ys, first):
                if k >= lo:
                    y[i] -= np.multiply(f, y[k], out=tmp)
    for y in ys:
        for k in range(d - 1, -1, -1):  # back substitution, U = the eliminated lower triangle transposed
            for j in range(k + 1, d):
                y[k] -= np.multiply(L[j][k], y[j], out=tmp)
            y[k] /= L[k][k]
    return ys


def _coupling(lam: np.ndarray, w: np.ndarray, F: np.ndarray, t: np.ndarray, kappa: float, ws: _Workspace):
    """K_p = kappa x int_0^t w_pp for each p: d arrays (b, T) from rates lam (b, d), diagonal starts w > 0
    (b, d) and F = :func:`_decay`: ``log D_p = log(w + (1 - w) F_p^2) + 2 kappa a_p t`` (one logarithm, where
    :func:`_log_denominator` takes two transcendentals; its absolute error, ~1e-16 x kappa a t, is what the
    composite's exponent sees), ``K_p = log D_p / (2 a_p)``, or ``kappa w t`` at a_p = 0: (d, b, T)."""
    K, tmp = ws("coupling", F.shape), ws("product", F.shape[1:])
    for p in range(lam.shape[1]):
        a, w_p = lam[:, p, None], w[:, p, None]
        np.multiply(F[p], F[p], out=K[p])
        K[p] *= 1.0 - w_p
        K[p] += w_p
        np.log(K[p], out=K[p])
        K[p] += np.multiply(2.0 * kappa * a, t, out=tmp)
        K[p] /= np.where(a > 0, 2.0 * a, 1.0)
        if np.any(a <= 0):
            K[p] = np.where(a > 0, K[p], kappa * w_p * t)
    return K


#: cap on the composite form's log factor: 1/2 log(1/eps) ~ 18, i.e. the factor stays below eps^-1/2 ~ 6.7e7.
#: A larger factor multiplies a Riccati minor entry that has decayed to its round-off (absolute error ~eps x
#: the diagonal), which it would amplify into O(1) noise (or overflow, at the paper-code rates a^2); the
#: true product is far below anything the OOD loss resolves there. Measured on the report's 2400 studied
#: curves: the cap changes the OOD loss by < 3e-10 of its start and no verdict (the factor's log reaches
#: 30-400 in the median and the tail).
CORRECTION_CAP = 0.5 * float(np.log(1.0 / np.finfo(float).eps))


def _correction(ai, aj, Ki, Kj, out=None):
    """The composite form's factor on the Riccati form's minor entry (i, j):
    ``exp(1/2 (a_i - a_j)(K_i - K_j))`` -- the flow's linearised minor-entry growth along the logistic
    diagonals over the Riccati form's (``derivations.symmetric_approx``), its log capped at
    :data:`CORRECTION_CAP`; broadcasts, 1 on the diagonal. ``out``: an array of the result's shape to
    compute it in."""
    e = np.subtract(Ki, Kj, out=out)
    e *= 0.5 * (ai - aj)
    return np.exp(np.minimum(e, CORRECTION_CAP, out=e), out=e)


def _ood_loss_entries(y, xq: np.ndarray, ws: _Workspace) -> np.ndarray:
    """``1/2 sum_i (y_i - x_i)^2`` (a new array (b, T)) from outputs y (d arrays (b, T), overwritten) and
    points xq (b, d)."""
    loss, tmp = np.zeros(y[0].shape), ws("product", y[0].shape)
    for i, y_i in enumerate(y):
        y_i -= xq[:, i, None]
        loss += np.multiply(y_i, y_i, out=tmp)
    loss *= 0.5
    return loss


def _ood_losses(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """OOD loss curves (B, T) of trajectories W (B, T, d, d) at points x (B, d)."""
    return identity_loss(np.einsum("btij,bj->bti", W, x), x[:, None, :])


def _closed_form_loss(lam, M0, xq, t, kappa, method, ws: _Workspace | None = None) -> np.ndarray:
    """The OOD loss (b, T) of an approximation for a chunk in A's eigenbasis (lam (b, d), M0 (b, d, d),
    xq (b, d)), entry by entry on contiguous (b, T) arrays: the Riccati form solves ``P(t) y = x``; the
    composite form solves for the columns of the Riccati W that x uses and applies :func:`_correction`;
    settings whose M0 is singular or ill-conditioned (rare) go through the W forms. ``ws``: work arrays to
    reuse (from the previous chunk)."""
    ws = _Workspace() if ws is None else ws
    if method == "first-order":
        return _first_order_loss(lam, M0, xq, t, kappa)
    b, d = lam.shape
    ev, V, full = _riccati_split(M0)
    loss = np.empty((b, t.size))
    if (~full).any():
        part = ~full
        W = (_riccati if method == "riccati" else _composite)(lam[part], M0[part], t, kappa)
        loss[part] = _ood_losses(W, xq[part])
    if not full.any():
        return loss
    lam, xq, P0 = lam[full], xq[full], _inverse(ev[full], V[full])
    if method == "riccati":
        (y,) = _riccati_solve(_decay(lam, t, kappa, ws), P0, [[xq[:, i, None] for i in range(d)]], ws)
        loss[full] = _ood_loss_entries(y, xq, ws)
        return loss
    cols = np.flatnonzero(np.any(xq != 0.0, axis=0))  # the columns of W that W x uses
    zero = np.zeros((lam.shape[0], 1))
    scaled_units = [[xq[:, j, None] if i == j else zero for i in range(d)] for j in cols]  # x_j e_j
    F = _decay(lam, t, kappa, ws)
    columns = _riccati_solve(F, P0, scaled_units, ws)  # the columns W^R e_j x_j
    K = _coupling(lam, np.diagonal(M0[full], axis1=-2, axis2=-1), F, t, kappa, ws)  # M0 positive definite
    y = ws("outputs", (d, lam.shape[0], t.size))
    y[...] = 0.0
    factor = ws("correction", y.shape[1:])
    for col, j in zip(columns, cols):
        for i in range(d):
            if i == j:
                y[i] += col[i]
                continue
            _correction(lam[:, i, None], lam[:, j, None], K[i], K[j], out=factor)
            y[i] += np.multiply(factor, col[i], out=factor)
    loss[full] = _ood_loss_entries(y, xq, ws)
    return loss


def _eigenbasis(A: np.ndarray, W0: np.ndarray):
    """A's eigen-rates lam (B, d), its eigenvectors Q and W0 in that basis, symmetrised: where the closed
    forms are evaluated (the flow is rotation covariant)."""
    lam, Q = _eig(A)
    M0 = np.swapaxes(Q, -1, -2) @ W0 @ Q
    return lam, Q, 0.5 * (M0 + np.swapaxes(M0, -1, -2))


#: (setting, time) pairs per chunk of :func:`_approx_loss_chunks`: each working array 256 KiB
CHUNK_PAIRS = 1 << 15


def _approx_loss_chunks(lam, M0, xq, t, kappa, method):
    """The OOD loss curves of an approximation in A's eigenbasis (x given there as xq (B, d)), in chunks of
    settings of ~:data:`CHUNK_PAIRS` (setting, time) pairs (measured best at d = 3 and 8): yields
    ``(slice, loss (b, len(t)))`` in order. Chunks run on the threads the work warrants on free cores
    (:func:`simtheory.threads` overrides; NumPy's element-wise work releases the GIL), each thread with
    its own work arrays; the numbers do not depend on the thread count (each chunk is computed alone)."""
    B, d = M0.shape[0], M0.shape[-1]
    step = max(1, CHUNK_PAIRS // t.size)
    slices = [slice(lo, min(B, lo + step)) for lo in range(0, B, step)]
    local = threading.local()

    def run(sl):
        if not hasattr(local, "ws"):
            local.ws = _Workspace()
        return _closed_form_loss(lam[sl], M0[sl], xq[sl], t, kappa, method, local.ws)

    # threads only for many chunks (measured: 2 threads 1.3-1.4x faster than 1 at 2000 settings, alone;
    # below ~16 chunks the pool's start and the free-core probe cost more than they save)
    n = _threads.for_work(float(step * t.size * d**3)) if len(slices) >= 16 else 1
    if n == 1:
        for sl in slices:
            yield sl, run(sl)
        return
    with _threads.limited(1), ThreadPoolExecutor(min(n, len(slices))) as pool:  # one BLAS thread each
        yield from zip(slices, pool.map(run, slices))


def symmetric_approx_ood_loss(
    task: SIMTask, W0, t, convention: str = "gradient-flow", *, method: str = "composite", A=None, x=None
) -> np.ndarray:
    """The OOD loss curves ``1/2 ||W(t) x - x||^2`` of :func:`symmetric_approx`, without forming every W(t)
    (the Riccati form solves one small positive definite system per time, the composite one per column of W
    that x uses, the first-order form builds those s columns), entry by entry in chunks of settings. ``A``
    replaces the task's second moment (e.g. scaled per setting, or a training set's) and ``x`` its OOD point
    (d,) or one per setting (B, d); ``A`` broadcasts with the batch axes of ``W0``. Returns
    ``(*batch, len(t))``.
    """
    if not isinstance(task, SIMTask):
        raise ValueError(f"task must be a SIMTask (the OOD point needs mu), got {type(task).__name__}")
    kappa, square = _convention(convention)
    method = _checks.choice(method, "method", APPROX_METHODS)
    A, W0, batch = _prepare(task if A is None else A, W0)
    W0 = _checks.psd(W0, "W0")
    t = _checks.times(t)
    if square:
        A = A * A
    B, d = W0.shape[0], W0.shape[-1]
    x = task.test_point() if x is None else _checks.as_float_array(x, "x")
    if x.shape not in ((d,), (B, d)):
        raise ValueError(f"x must have shape ({d},) or (batch = {B}, {d}), got {x.shape}")
    lam, Q, M0 = _eigenbasis(A, W0)
    xq = np.einsum("bji,bj->bi", Q, np.broadcast_to(x, (B, d)))
    loss = np.empty((B, t.size))
    for sl, chunk in _approx_loss_chunks(lam, M0, xq, t, kappa, method):
        loss[sl] = chunk
    return loss.reshape(batch + (t.size,))


def symmetric_approx(
    task_or_A, W0, t, convention: str = "gradient-flow", *, method: str = "composite"
) -> np.ndarray:
    """A closed-form approximation of :func:`symmetric_flow` for any ``W0`` (derivations.symmetric_approx).

    Same contract as :func:`symmetric_flow` (batches broadcast, the three conventions, gradient-flow time;
    returns ``(*batch, len(t), d, d)``), in closed form: no ODE solver, cost linear in the number of times.

    * ``method="composite"`` (default): the Riccati form with every minor entry (i, j) multiplied by
      ``exp(1/2 (a_i - a_j)(K_i - K_j))``, ``K_p = kappa int_0^t w_pp`` along the logistic diagonals -- the
      flow's linearised minor-entry growth over the Riccati form's own. Keeps the Riccati form's linear
      phase, cross-talk and late rate, and equals the first-order form while minor entries are small.
      Symmetric, but not necessarily positive semi-definite.
    * ``method="riccati"``: ``W(t) = (I - F^2 + F W0^{-1} F)^{-1}``, ``F = e^{-kappa A t}``: the flow without
      the double commutator ``-1/2 [[A, W], W]`` of V. Positive semi-definite, tends to I (on the range of
      W0: a singular W0's null space stays null, as the flow's does); suppresses a minor entry twice as
      fast as the flow once its strong concept is learned.
    * ``method="first-order"``: the diagonal logistics and every minor entry from its linearised equation
      (the cross-talk between minor entries neglected).

    Validity (measured by ``simtheory reproduce``, section 5): all three are exact for commuting W0 and in
    the linear phase. On random small inits (s = 2-4, d = 3-8, init scale < 0.1) the shape of the OOD loss
    (monotone or not) agrees with the numerical flow's in 97.6-100% (composite), 85-97% (Riccati) and
    78-100% (first order) of an init family's settings; where both are non-monotone the composite's bump
    height is within 20% of the flow's in 79-100% of settings per family (median error 0-2%), the other
    two forms' in 9-89% (they underestimate it). As the init scale shrinks from 0.1 to 1e-4 the largest
    entry-wise error over the trajectory falls as scale^1.2 for the composite (5e-3 to 1e-6 for
    a = (0.095, 1.25)) and scale^1.0 for Riccati (2e-2 to 2e-5); where two rates are close (0.85, 0.98) both
    converge slowly (composite 5e-3 to 3e-4); the first-order error stays ~2.5e-2.
    :func:`simtheory.swingby.predict_swingby` with ``method="approx"`` classifies the composite form.
    """
    kappa, square = _convention(convention)
    method = _checks.choice(method, "method", APPROX_METHODS)
    A, W0, batch = _prepare(task_or_A, W0)
    W0 = _checks.psd(W0, "W0")
    t = _checks.times(t)
    _checks.allocation(W0.size * t.size, "the result (batch x len(t) x d x d)")
    if square:
        A = A * A
    lam, Q, M0 = _eigenbasis(A, W0)
    M = {"composite": _composite, "riccati": _riccati, "first-order": _first_order}[method](lam, M0, t, kappa)
    out = Q[:, None] @ M @ np.swapaxes(Q, -1, -2)[:, None]
    return out.reshape(batch + out.shape[1:])


def field_flow(
    field, task_or_A, W0, t, *, method: str = "auto", rtol: float = 1e-10, atol: float = 1e-12
) -> np.ndarray:
    """Integrate a user's matrix flow ``dW/dt = field(W, A)`` for a batch of settings.

    ``field(W, A)`` maps arrays (B, d, d) to (B, d, d) (e.g. :func:`simtheory.symbolic.numeric_field` of a
    derivation's field); it is integrated by the solvers of the built-in models (``method="auto"``: LSODA
    with a finite-difference Jacobian per setting, passed as a band; DOP853 past 400 states), any W0, and
    its cost is recorded in :func:`~simtheory.solver_log`. Returns ``(*batch, len(t), d, d)``.
    """
    if not callable(field):
        raise ValueError(f"field must be a function field(W, A) of batched (B, d, d) arrays, got {field!r}")
    A, W0, batch = _prepare(task_or_A, W0)
    method, rtol, atol = _checks.solver_options(method, rtol, atol)
    t = _checks.times(t)
    _checks.allocation(W0.size * t.size, "the result (batch x len(t) x d x d)")
    B, d = W0.shape[0], W0.shape[-1]
    probe = np.asarray(field(W0[:1].copy(), A[:1].copy()), dtype=np.float64)
    if probe.shape != (1, d, d):
        raise ValueError(
            f"field(W, A) must return an array of shape (B, {d}, {d}); got {probe.shape} for B = 1"
        )
    rate = float(np.max(np.abs(np.linalg.eigvalsh(A)))) if B else 0.0  # a scale for the explicit-method guard
    method, reason = _solvers.choose_method(
        method, 4.0 * rate, float(t.max()), implicit_ok=d * d <= _solvers.MAX_IMPLICIT_STATE
    )

    def fun(_, y):
        return np.asarray(field(y.reshape(B, d, d), A), dtype=np.float64).reshape(-1)

    ys = _solvers.integrate(
        fun, W0.reshape(-1), t, method=method, rtol=rtol, atol=atol, n_systems=B, reason=reason
    )
    W = ys.reshape(t.size, B, d, d).transpose(1, 0, 2, 3)
    return W.reshape(batch + W.shape[1:])


def symmetric_init(U0) -> np.ndarray:
    """``W0 = U0 U0^T`` for a (batch of) square or rectangular first-layer matrices U0 (..., d, h)."""
    U0 = _checks.as_float_array(U0, "U0")
    if U0.ndim < 2:
        raise ValueError(f"U0 must have shape (..., d, h), got {U0.shape}")
    return U0 @ np.swapaxes(U0, -1, -2)


# -- untied W2 W1 ----------------------------------------------------------------------------------


class UntiedSolution(NamedTuple):
    """Untied flow: layers W1 (*batch, T, h, d), W2 (*batch, T, d, h) and product W = W2 W1."""

    W1: np.ndarray
    W2: np.ndarray
    W: np.ndarray


def untied_flow(
    task_or_A, W1_0, W2_0, t, *, method: str = "auto", rtol: float = 1e-10, atol: float = 1e-12
) -> UntiedSolution:
    """Gradient flow of the untied two-layer model f(x) = W2 W1 x (t = lr x steps).

    ``W1_0``: (..., h, d), ``W2_0``: (..., d, h). Balanced diagonal starts with diagonal A
    (``h = d``, ``W1_0 = W2_0^T = diag(sqrt(u0))``, ``u0 > 0``) use the mode-wise sigmoid of
    ``derivations.untied``; everything else is integrated numerically.
    """
    A = second_moment(task_or_A)
    d = A.shape[-1]
    method, rtol, atol = _checks.solver_options(method, rtol, atol)
    W1_0 = _checks.bounded(_checks.as_float_array(W1_0, "W1_0"), "W1_0")
    W2_0 = _checks.bounded(_checks.as_float_array(W2_0, "W2_0"), "W2_0")
    if W1_0.ndim < 2 or W1_0.shape[-1] != d:
        raise ValueError(f"W1_0 must have shape (..., h, d) with d = {d}, got {W1_0.shape}")
    h = W1_0.shape[-2]
    if W2_0.ndim < 2 or W2_0.shape[-2:] != (d, h):
        raise ValueError(f"W2_0 must have shape (..., {d}, {h}) to match W1_0, got {W2_0.shape}")
    t = _checks.times(t)
    (A, W1, W2), batch = _flat_batch(task_or_A=A, W1_0=W1_0, W2_0=W2_0)
    _checks.allocation(A.shape[0] * t.size * (2 * h * d + d * d), "the result (batch x len(t) x layers)")
    B = A.shape[0]
    r1 = np.empty((B, t.size, h, d))
    r2 = np.empty((B, t.size, d, h))
    closed = np.zeros(B, dtype=bool)
    if h == d:
        eye = np.eye(d, dtype=bool)
        diagA = np.all(np.where(eye, True, A == 0), axis=(-2, -1))
        diag1 = np.all(np.where(eye, True, W1 == 0), axis=(-2, -1))
        balanced = np.all(np.isclose(W1, np.swapaxes(W2, -1, -2), rtol=0, atol=1e-14), axis=(-2, -1))
        positive = np.all(np.einsum("bii->bi", W1) > 0, axis=-1)
        closed = diagA & diag1 & balanced & positive
    if closed.any():
        a = np.einsum("bii->bi", A[closed])
        u0 = np.einsum("bii->bi", W1[closed]) ** 2
        mode = compiled("untied", "mode")
        u = mode(a=a[:, None, :], t=t[None, :, None], u0=u0[:, None, :])
        root = np.sqrt(u)[..., None] * np.eye(d)
        r1[closed] = root
        r2[closed] = root
        _closed_form_stats(int(closed.sum()), 2 * d * d, t, "balanced diagonal start: the mode-wise sigmoid")
    if (~closed).any():
        s1, s2 = _solvers.solve_deep(
            A[~closed], [W1[~closed], W2[~closed]], t, method=method, rtol=rtol, atol=atol
        )
        r1[~closed], r2[~closed] = s1, s2
    W = r2 @ r1
    shape = lambda x: x.reshape(batch + x.shape[1:])
    return UntiedSolution(shape(r1), shape(r2), shape(W))


# -- deep linear W_L ... W_1 -------------------------------------------------------------------------


class DeepSolution(NamedTuple):
    """Deep linear flow: the factors ``W_k`` (*batch, T, out_k, in_k), first layer first, and their
    product ``W = W_L ... W_1`` (*batch, T, d, d)."""

    factors: tuple
    W: np.ndarray


def deep_flow(
    task_or_A, factors, t, *, method: str = "auto", rtol: float = 1e-10, atol: float = 1e-12
) -> DeepSolution:
    """Gradient flow of a deep linear network ``f(x) = W_L ... W_1 x`` (t = lr x steps).

    ``factors``: the initial layers, first layer first, ``W_1`` (..., h_1, d), ``W_k``
    (..., h_k, h_{k-1}), ``W_L`` (..., d, h_{L-1}); batch axes broadcast with those of A. There is no
    closed form for a general start (design reference: Saxe-type sigmoids only for balanced small
    initialisation), so the flow ``dW_k/dt = -dL/dW_k`` is integrated numerically; it is the
    continuous-time limit of full-batch GD on :mod:`simtheory.simulate`'s ``Model("deep")`` (and,
    with L = 2, of ``untied_flow``).
    """
    A = second_moment(task_or_A)
    d = A.shape[-1]
    method, rtol, atol = _checks.solver_options(method, rtol, atol)
    if not isinstance(factors, (list, tuple)) or len(factors) < 1:
        raise ValueError(
            f"factors must be a list or tuple of L >= 1 layer matrices, first layer first; got "
            f"{type(factors).__name__}"
        )
    Ws = [
        _checks.bounded(_checks.as_float_array(W, f"factors[{k}]"), f"factors[{k}]")
        for k, W in enumerate(factors)
    ]
    rows = d
    for k, W in enumerate(Ws):
        if W.ndim < 2 or W.shape[-1] != rows:
            raise ValueError(
                f"factors[{k}] must have shape (..., h, {rows}) to follow the previous layer, got {W.shape}"
            )
        rows = W.shape[-2]
    if rows != d:
        raise ValueError(f"the last factor must map back to d = {d} rows, got {rows}")
    t = _checks.times(t)
    flat, batch = _flat_batch(task_or_A=A, **{f"factors_{k}": W for k, W in enumerate(Ws)})
    per_member = d * d + sum(W.shape[-2] * W.shape[-1] for W in Ws)
    _checks.allocation(flat[0].shape[0] * t.size * per_member, "the result (batch x len(t) x layers)")
    res = _solvers.solve_deep(flat[0], flat[1:], t, method=method, rtol=rtol, atol=atol)
    W = res[0]
    for F in res[1:]:
        W = F @ W
    shape = lambda x: x.reshape(batch + x.shape[1:])
    return DeepSolution(tuple(shape(F) for F in res), shape(W))


# -- losses ------------------------------------------------------------------------------------------


def train_loss(task_or_A, W) -> np.ndarray:
    """``1/2 tr((W - I) A (W - I)^T)``, broadcast over the leading axes of W (and of A)."""
    A = second_moment(task_or_A)
    W = _checks.square_batch(W, "W", A.shape[-1])
    E = W - np.eye(W.shape[-1])
    # sum_ik (E A)_ik E_ik: one batched matmul (a three-operand einsum loops in C without BLAS, 3x slower)
    return 0.5 * np.sum(np.matmul(E, A) * E, axis=(-2, -1))


def _points(task: SIMTask, v) -> np.ndarray:
    if not isinstance(task, SIMTask):
        raise ValueError(f"task must be a SIMTask (test points need mu), got {type(task).__name__}")
    if v is None:
        return task.test_point()
    v = np.asarray(v)
    if v.ndim == 2:
        return np.stack([task.test_point(row) for row in v])
    return task.test_point(v)


def ood_output(task: SIMTask, W, v=None) -> np.ndarray:
    """``W x(v)`` (default v = all ones): (..., d), or (..., m, d) for m rows of v."""
    x = _points(task, v)
    W = _checks.square_batch(W, "W", task.d)
    if x.ndim == 2:
        return np.matmul(x, np.swapaxes(W, -1, -2))  # (..., m, d): row k is W x_k, by BLAS
    return W @ x


def ood_loss(task: SIMTask, W, v=None) -> np.ndarray:
    """``1/2 ||W x(v) - x(v)||^2`` at composition ``v`` (default: the OOD point, all ones).

    Broadcast over the leading axes of W; with ``v`` of shape (m, s) the result gains a last
    axis of length m (use ``task.compositions()`` for all 2^s points).
    """
    return identity_loss(ood_output(task, W, v), _points(task, v))


def identity_loss(outputs, inputs) -> np.ndarray:
    """``1/2 ||f(x) - x||^2`` of outputs ``f(x)`` at inputs ``x`` (last axis: coordinates): the loss of the
    SIM task at given points, for any model whose outputs were recorded."""
    return 0.5 * np.sum((np.asarray(outputs) - np.asarray(inputs)) ** 2, axis=-1)
