"""The symmetric two-layer model f(x) = U U^T x: the flow of W = U U^T (closed-form logistic where W0
commutes with A, integrated otherwise; ``derivations/symmetric``), the time by which it has learned
(:func:`horizon`) and the log-spaced grid its multi-scale dynamics are read on (:func:`time_grid`)."""

from __future__ import annotations

import numpy as np

from .. import _checks, _solvers
from .._compile import compiled
from ..task import SIMTask
from ._base import closed_form_stats, convention_rates, effective_A, modal_sum, prepare

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
    kappa, square = convention_rates(convention)
    A, W0, batch = prepare(task_or_A, W0)
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
        out[ok] = modal_sum(np.zeros_like(W0[ok]), U, Pk, Pk)
        closed_form_stats(int(ok.sum()), d * d, t, "W0 commutes with A: the logistic solution")
    if (~ok).any():
        out[~ok] = _solvers.solve_symmetric(A[~ok], W0[~ok], t, kappa, method=method, rtol=rtol, atol=atol)
    return out.reshape(batch + out.shape[1:])


def symmetric_init(U0) -> np.ndarray:
    """``W0 = U0 U0^T`` for a (batch of) square or rectangular first-layer matrices U0 (..., d, h)."""
    U0 = _checks.as_float_array(U0, "U0")
    if U0.ndim < 2:
        raise ValueError(f"U0 must have shape (..., d, h), got {U0.shape}")
    return U0 @ np.swapaxes(U0, -1, -2)


def horizon(task: SIMTask, W0, convention: str = "gradient-flow", factor: float = 6.0) -> float:
    """A time by which the symmetric flow has learned every concept it will (``factor`` x the
    logistic stage time of the slowest concept from the smallest positive diagonal entry of W0)."""
    A_eff, kappa = effective_A(task, convention)
    a_min = float(np.diag(A_eff)[: task.s].min())
    w = np.diag(np.asarray(W0, dtype=np.float64))[: task.s]
    omega = float(np.clip(w[w > 0].min() if np.any(w > 0) else 1e-6, 1e-300, 0.5))
    stage = compiled("symmetric", "stage_time")(a=a_min, omega=omega, kappa=kappa)
    return factor * (stage + 1.0 / (2 * kappa * a_min))


def time_grid(t_end: float, n: int = 1500) -> np.ndarray:
    """0 followed by log-spaced times up to ``t_end`` (dynamics here are multi-scale)."""
    return np.concatenate([[0.0], np.geomspace(t_end * 1e-4, t_end, n - 1)])
