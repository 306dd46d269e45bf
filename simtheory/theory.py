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
APPROX_METHODS = ("riccati", "first-order")


def _log_denominator(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``log(1 - w + w e^x)`` for x >= 0, w >= 0 without overflow (``derivations.symmetric_approx``'s D_p)."""
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        small = np.log1p(w * np.expm1(np.minimum(x, 1.0)))
        large = x + np.log(w + (1.0 - w) * np.exp(-x))
    return np.where(w > 0, np.where(x <= 1.0, small, large), 0.0)


def _first_order(lam: np.ndarray, M0: np.ndarray, t: np.ndarray, kappa: float, cols=None) -> np.ndarray:
    """The first-order form in A's eigenbasis: lam (B, d) rates, M0 (B, d, d) -> (B, T, d, d), or only the
    columns ``cols`` of W: (B, T, d, len(cols))."""
    cols = np.arange(M0.shape[-1]) if cols is None else np.asarray(cols)
    w = np.clip(np.diagonal(M0, axis1=-2, axis2=-1), 0.0, None)[:, None, :]  # (B, 1, d)
    a = lam[:, None, :]
    x = 2.0 * kappa * a * t[None, :, None]  # (B, T, d)
    logD = _log_denominator(x, w)
    with np.errstate(divide="ignore", invalid="ignore"):
        integral = np.where(a > 0, logD / np.where(a > 0, 2.0 * kappa * a, 1.0), w * t[None, :, None])
    ai, aj = a[..., :, None], a[..., None, cols]
    Ii, Ij = integral[..., :, None], integral[..., None, cols]
    exponent = kappa * ((ai + aj) * t[None, :, None, None] - 0.5 * ((3 * ai + aj) * Ii + (3 * aj + ai) * Ij))
    with np.errstate(over="ignore", under="ignore", invalid="ignore"):  # w = 0: 0/0 where exp(-x) underflows
        W = M0[:, None][..., cols] * np.exp(np.minimum(exponent, 700.0))
        diag = np.where(w > 0, w / (w + (1.0 - w) * np.exp(-x)), 0.0)  # the logistics, (B, T, d)
        W[..., cols, np.arange(cols.size)] = diag[..., cols]
    return W


def _riccati_split(M0: np.ndarray):
    """Eigen-decomposition of M0 (B, d, d) and which settings are positive definite enough (smallest
    eigenvalue above 1e-13 of the largest) for the Riccati form's ``M0^{-1}``."""
    ev, V = np.linalg.eigh(M0)
    return ev, V, ev[:, 0] > 1e-13 * ev[:, -1]


def _riccati_P(lam: np.ndarray, ev: np.ndarray, V: np.ndarray, t: np.ndarray, kappa: float) -> np.ndarray:
    """``P(t) = I - F^2 + F M0^{-1} F`` (b, T, d, d) for positive definite M0 = V diag(ev) V^T, F = e^{-kappa
    lam t} in (0, 1] (no overflow): W(t) = P(t)^{-1} is the Riccati form."""
    d = ev.shape[-1]
    P0 = (V / ev[:, None, :]) @ np.swapaxes(V, -1, -2)
    with np.errstate(under="ignore"):
        F = np.exp(-kappa * lam[:, None, :] * t[None, :, None])  # (b, T, d)
    P = F[..., :, None] * F[..., None, :]
    P *= P0[:, None]
    P.reshape(-1, d * d)[:, :: d + 1] += 1.0 - (F * F).reshape(-1, d)  # the diagonal, through a strided view
    return P


def _riccati(lam: np.ndarray, M0: np.ndarray, t: np.ndarray, kappa: float) -> np.ndarray:
    """The Riccati form in A's eigenbasis: lam (B, d) rates, M0 (B, d, d) -> (B, T, d, d).

    Positive definite M0: ``P(t)^{-1}`` (:func:`_riccati_P`).
    Ill-conditioned or singular M0 (an eigenvalue below 1e-13 of the largest; rare, looped):
    ``G (I - L^T L + G^T G)^{-1} G^T`` with M0 = L L^T over its positive eigenvalues and G = E L, which keeps
    W(t) in E's image of that range (an exact null space stays null, as the flow's); there E's exponent is
    capped at 300, past which an entry has long saturated.
    """
    B, d = M0.shape[0], M0.shape[-1]
    ev, V, full = _riccati_split(M0)
    out = np.empty((B, t.size, d, d))
    if full.any():
        out[full] = np.linalg.inv(_riccati_P(lam[full], ev[full], V[full], t, kappa))
    for k in np.flatnonzero(~full):
        keep = ev[k] > 0.0  # exact zeros (and round-off below them) are the null space
        L = V[k][:, keep] * np.sqrt(ev[k][keep])  # (d, r)
        E = np.exp(np.minimum(kappa * lam[k][None, :] * t[:, None], 300.0))  # (T, d)
        G = E[:, :, None] * L[None]  # (T, d, r)
        inner = np.eye(L.shape[1]) - L.T @ L + np.swapaxes(G, -1, -2) @ G
        out[k] = G @ np.linalg.solve(inner, np.swapaxes(G, -1, -2)) if L.shape[1] else 0.0
    return out


def _spd_solve(P: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Solve ``P y = b`` for many small symmetric positive definite P (N, d, d), b (N, d): Gaussian
    elimination without pivoting (stable for SPD), vectorised over N with d Python-level steps (LAPACK's
    per-matrix calls cost more than the arithmetic at d <= 10). P and b are overwritten."""
    d = P.shape[-1]
    for k in range(d - 1):
        f = P[:, k + 1 :, k] / P[:, k, k, None]
        P[:, k + 1 :, k + 1 :] -= f[:, :, None] * P[:, None, k, k + 1 :]
        b[:, k + 1 :] -= f * b[:, k, None]
    y = np.empty_like(b)
    for k in range(d - 1, -1, -1):
        y[:, k] = (b[:, k] - np.einsum("nj,nj->n", P[:, k, k + 1 :], y[:, k + 1 :])) / P[:, k, k]
    return y


def _approx_outputs(lam, M0, xq, t, kappa, method):
    """``W(t) x`` of an approximation in A's eigenbasis (B, T, d), without forming every W(t) where it can:
    the Riccati form solves ``P(t) y = x`` (P = I - F^2 + F M0^{-1} F) for positive definite M0, the
    first-order form builds only the columns of W that x needs."""
    B, d = M0.shape[0], M0.shape[-1]
    if method == "riccati":
        ev, V, full = _riccati_split(M0)
        y = np.empty((B, t.size, d))
        if full.any():
            n = int(full.sum())
            P = _riccati_P(lam[full], ev[full], V[full], t, kappa).reshape(-1, d, d)
            rhs = np.broadcast_to(xq[full][:, None, :], (n, t.size, d)).reshape(-1, d).copy()
            y[full] = _spd_solve(P, rhs).reshape(n, t.size, d)
        if (~full).any():
            y[~full] = np.einsum("btij,bj->bti", _riccati(lam[~full], M0[~full], t, kappa), xq[~full])
        return y
    cols = np.flatnonzero(np.any(xq != 0.0, axis=0))  # the columns of W that W x uses
    W = _first_order(lam, M0, t, kappa, cols=cols)  # (B, T, d, len(cols))
    return np.einsum("btij,bj->bti", W, xq[:, cols])


def _eigenbasis(A: np.ndarray, W0: np.ndarray):
    """A's eigen-rates lam (B, d), its eigenvectors Q and W0 in that basis, symmetrised: where the closed
    forms are evaluated (the flow is rotation covariant)."""
    lam, Q = _eig(A)
    M0 = np.swapaxes(Q, -1, -2) @ W0 @ Q
    return lam, Q, 0.5 * (M0 + np.swapaxes(M0, -1, -2))


def _approx_loss_chunks(lam, M0, xq, t, kappa, method):
    """The OOD loss curves of an approximation in A's eigenbasis (x given there as xq (B, d)), in chunks of
    settings whose temporaries stay ~4 MiB: yields ``(slice, loss (b, len(t)))``."""
    B, d = M0.shape[0], M0.shape[-1]
    step = max(1, (1 << 19) // max(1, t.size * d * d))
    for lo in range(0, B, step):
        sl = slice(lo, min(B, lo + step))
        y = _approx_outputs(lam[sl], M0[sl], xq[sl], t, kappa, method)
        yield sl, identity_loss(y, xq[sl, None, :])


def symmetric_approx_ood_loss(
    task: SIMTask, W0, t, convention: str = "gradient-flow", *, method: str = "riccati", A=None, x=None
) -> np.ndarray:
    """The OOD loss curves ``1/2 ||W(t) x - x||^2`` of :func:`symmetric_approx`, without forming every W(t)
    (the Riccati form solves one small positive definite system per time, the first-order form builds the s
    columns of W that x needs), in chunks of settings. ``A`` replaces the task's second moment (e.g. scaled
    per setting, or a training set's) and ``x`` its OOD point (d,) or one per setting (B, d); ``A`` broadcasts
    with the batch axes of ``W0``. Returns ``(*batch, len(t))``.
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
    task_or_A, W0, t, convention: str = "gradient-flow", *, method: str = "riccati"
) -> np.ndarray:
    """A closed-form approximation of :func:`symmetric_flow` for any ``W0`` (derivations.symmetric_approx).

    Same contract as :func:`symmetric_flow` (batches broadcast, the three conventions, gradient-flow time;
    returns ``(*batch, len(t), d, d)``), in closed form: no ODE solver, cost linear in the number of times.

    * ``method="riccati"`` (default): ``W(t) = (I - F^2 + F W0^{-1} F)^{-1}``, ``F = e^{-kappa A t}``: the
      flow without the double commutator ``-1/2 [[A, W], W]`` of V. Exact when W0 commutes with A; keeps the
      whole linear phase; positive semi-definite, tends to I (on the range of W0: a singular W0's null
      space stays null, as the flow's does).
    * ``method="first-order"``: the diagonal logistics and every minor entry from its linearised equation
      (the cross-talk between minor entries neglected); exact on diagonal W0.

    Validity (measured by ``simtheory reproduce``, section 5): both are exact for commuting W0 and in the
    linear phase. On random small inits (s = 2-4, d = 3-8, scale < 0.1) the shape of the OOD loss (monotone or
    not) agrees with the numerical flow's in 85-97% (Riccati) and 78-100% (first order) of an init family's
    settings; bump heights are underestimated by a median ~40%. As the init scale shrinks the Riccati error
    vanishes where the rates are separated (order 1.00 for a = (0.095, 1.25)) and plateaus where they are
    close; the first-order error does not vanish. Use them for the shape and for speed, not for the height
    of a bump; :func:`simtheory.swingby.predict_swingby` with ``method="approx"`` combines them with a
    fallback to the ODE (98-100% agreement).
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
    M = (_riccati if method == "riccati" else _first_order)(lam, M0, t, kappa)
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
