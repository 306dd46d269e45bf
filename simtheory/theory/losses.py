"""Losses of input-linear models on the SIM task: the training loss from A, the loss at compositions of the
concepts (the OOD point by default), and the loss of recorded outputs."""

from __future__ import annotations

import numpy as np

from .. import _checks
from ..task import SIMTask, second_moment


def train_loss(task_or_A, W) -> np.ndarray:
    """``1/2 tr((W - I) A (W - I)^T)``, broadcast over the leading axes of W (and of A)."""
    A = second_moment(task_or_A)
    W = _checks.square_batch(W, "W", A.shape[-1])
    E = W - np.eye(W.shape[-1])
    # sum_ik (E A)_ik E_ik: one batched matmul (a three-operand einsum loops in C without BLAS, 3x slower)
    return 0.5 * np.sum(np.matmul(E, A) * E, axis=(-2, -1))


def ood_points(task: SIMTask, v) -> np.ndarray:
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
    x = ood_points(task, v)
    W = _checks.square_batch(W, "W", task.d)
    if x.ndim == 2:
        return np.matmul(x, np.swapaxes(W, -1, -2))  # (..., m, d): row k is W x_k, by BLAS
    return W @ x


def ood_loss(task: SIMTask, W, v=None) -> np.ndarray:
    """``1/2 ||W x(v) - x(v)||^2`` at composition ``v`` (default: the OOD point, all ones).

    Broadcast over the leading axes of W; with ``v`` of shape (m, s) the result gains a last
    axis of length m (use ``task.compositions()`` for all 2^s points).
    """
    return identity_loss(ood_output(task, W, v), ood_points(task, v))


def identity_loss(outputs, inputs) -> np.ndarray:
    """``1/2 ||f(x) - x||^2`` of outputs ``f(x)`` at inputs ``x`` (last axis: coordinates): the loss of the
    SIM task at given points, for any model whose outputs were recorded."""
    return 0.5 * np.sum((np.asarray(outputs) - np.asarray(inputs)) ** 2, axis=-1)


def ood_losses(W: np.ndarray, x: np.ndarray) -> np.ndarray:
    """OOD loss curves (B, T) of trajectories W (B, T, d, d) at points x (B, d)."""
    return identity_loss(np.einsum("btij,bj->bti", W, x), x[:, None, :])
