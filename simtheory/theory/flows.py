"""Flows without a closed form in general: a user's matrix field, the untied two-layer model W2 W1 and deep
linear networks, integrated by the built-in solvers (closed forms where a start allows one)."""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _checks, _solvers
from .._compile import compiled
from ..task import second_moment
from ._base import closed_form_stats, flat_batch, prepare


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
    A, W0, batch = prepare(task_or_A, W0)
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
    (A, W1, W2), batch = flat_batch(task_or_A=A, W1_0=W1_0, W2_0=W2_0)
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
        closed_form_stats(int(closed.sum()), 2 * d * d, t, "balanced diagonal start: the mode-wise sigmoid")
    if (~closed).any():
        s1, s2 = _solvers.solve_deep(
            A[~closed], [W1[~closed], W2[~closed]], t, method=method, rtol=rtol, atol=atol
        )
        r1[~closed], r2[~closed] = s1, s2
    W = r2 @ r1
    shape = lambda x: x.reshape(batch + x.shape[1:])
    return UntiedSolution(shape(r1), shape(r2), shape(W))


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
    flat, batch = flat_batch(task_or_A=A, **{f"factors_{k}": W for k, W in enumerate(Ws)})
    per_member = d * d + sum(W.shape[-2] * W.shape[-1] for W in Ws)
    _checks.allocation(flat[0].shape[0] * t.size * per_member, "the result (batch x len(t) x layers)")
    res = _solvers.solve_deep(flat[0], flat[1:], t, method=method, rtol=rtol, atol=atol)
    W = res[0]
    for F in res[1:]:
        W = F @ W
    shape = lambda x: x.reshape(batch + x.shape[1:])
    return DeepSolution(tuple(shape(F) for F in res), shape(W))
