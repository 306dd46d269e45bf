"""Conventions and shared plumbing of the predictors: time conventions, batching of (A, W0), the modal sum
of the closed forms, and the record of closed-form evaluations in :func:`~simtheory.solver_log`."""

from __future__ import annotations

import numpy as np

from .. import _checks, _solvers, _threads
from ..task import second_moment

#: time conventions of :func:`symmetric_flow`: name -> (speed kappa, square A elementwise)
CONVENTIONS = {
    "gradient-flow": (2.0, False),  # dW/dt = 2 V(W): gradient flow on U, t = lr x steps
    "paper": (1.0, False),  # dW/dt = V(W): the paper's text (half speed)
    "paper-code": (1.0, True),  # dW/dt = V(W) with A replaced by A∘A: the published scripts
}


def convention_rates(convention: str) -> tuple[float, bool]:
    """``(kappa, square)`` of a named convention: ``dW/dt = kappa V_{A'}(W)``, ``A' = A∘A`` if ``square``."""
    return CONVENTIONS[_checks.choice(convention, "convention", tuple(CONVENTIONS))]


def flow_convention(kappa: float) -> tuple[float, str]:
    """How :func:`~simtheory.symmetric_flow` integrates ``dW/dt = kappa V_A(W)`` for an effective ``A``
    (already squared where a convention squares it): ``(scale, convention)`` such that
    ``symmetric_flow(scale * A, W0, t, convention)`` is that flow. ``dW/dt = kappa V_A = V_{kappa A}``, so any
    kappa is the ``"paper"`` convention (speed 1) on ``kappa A``; the two named speeds keep their own
    convention (the same numbers without a rescaled A)."""
    kappa = float(kappa)
    if kappa == CONVENTIONS["gradient-flow"][0]:
        return 1.0, "gradient-flow"
    if kappa == CONVENTIONS["paper"][0]:
        return 1.0, "paper"
    return kappa, "paper"


def effective_A(task_or_A, convention: str = "gradient-flow") -> tuple[np.ndarray, float]:
    """The matrix and speed a convention integrates: ``dW/dt = kappa V_{A_eff}(W)``."""
    kappa, square = convention_rates(convention)
    A = second_moment(task_or_A)
    return (A * A if square else A), kappa


def flat_batch(**named: np.ndarray):
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


def prepare(task_or_A, W0, name: str = "W0"):
    """Validated A and W0 broadcast to a flat batch (B, d, d), plus the batch shape."""
    A = second_moment(task_or_A)
    W0 = _checks.bounded(_checks.square_batch(W0, name, A.shape[-1]), name)
    (A, W0), batch = flat_batch(task_or_A=A, **{name: W0})
    return A, W0, batch


def modal_sum(C: np.ndarray, G: np.ndarray, left: np.ndarray, right: np.ndarray) -> np.ndarray:
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


def eig_clipped(A: np.ndarray):
    lam, Q = np.linalg.eigh(A)
    return np.clip(lam, 0.0, None), Q


def closed_form_stats(systems: int, state: int, t: np.ndarray, reason: str) -> None:
    """Record, for :func:`~simtheory.solver_log`, that ``systems`` settings were evaluated in closed form."""
    _solvers.record(
        _solvers.SolverStats(
            "closed-form", reason, systems, state, float(t.max()) if t.size else 0.0, None, None
        )
    )
