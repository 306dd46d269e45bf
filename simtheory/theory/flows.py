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
    field,
    task_or_A,
    W0,
    t,
    *,
    product=None,
    method: str = "auto",
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> np.ndarray:
    """Integrate a user's matrix flow ``dW/dt = field(W, A)`` for a batch of settings.

    ``field(W, A)`` maps arrays (B, d, d) to (B, d, d) (e.g. :func:`simtheory.symbolic.numeric_field` of a
    derivation's field); it is integrated by the solvers of the built-in models (``method="auto"``: LSODA
    with a finite-difference Jacobian per setting, passed as a band; DOP853 past 400 states), any W0, and
    its cost is recorded in :func:`~simtheory.solver_log`. Returns ``(*batch, len(t), d, d)``.

    With ``product`` the field is a flow of the model's *parameters* (:func:`parameter_flow`): ``W0`` is the
    list of parameter arrays and ``product(params)`` the end-to-end matrix; W(t) is returned. Use it where W
    does not determine the parameters (a diagonal network's ``u != v``).
    """
    if product is not None:
        return parameter_flow(field, product, task_or_A, W0, t, method=method, rtol=rtol, atol=atol).W
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
    method, reason = _method_for(method, A, t, state=d * d)

    def fun(_, y):
        return np.asarray(field(y.reshape(B, d, d), A), dtype=np.float64).reshape(-1)

    ys = _solvers.integrate(
        fun, W0.reshape(-1), t, method=method, rtol=rtol, atol=atol, n_systems=B, reason=reason
    )
    W = ys.reshape(t.size, B, d, d).transpose(1, 0, 2, 3)
    return W.reshape(batch + W.shape[1:])


class ParameterSolution(NamedTuple):
    """A parameter-space flow: every parameter ``(*batch, T, *shape)`` and ``W = product(params)``
    ``(*batch, T, d, d)``."""

    params: list
    W: np.ndarray


def _method_for(method: str, A: np.ndarray, t: np.ndarray, *, state: int) -> tuple[str, str]:
    """:func:`_solvers.choose_method` for a user's flow over second moments ``A`` (B, d, d) with ``state``
    numbers per setting; 4 x A's largest eigenvalue is the scale of its fastest mode (the explicit-method
    guard)."""
    rate = float(np.max(np.abs(np.linalg.eigvalsh(A)))) if A.shape[0] else 0.0
    return _solvers.choose_method(
        method, 4.0 * rate, float(t.max()), implicit_ok=state <= _solvers.MAX_IMPLICIT_STATE
    )


def _parameter_batch(params0, shapes, A: np.ndarray):
    """``(A (B, d, d), the parameters flattened (B, P), the batch shape, the parameter shapes)``."""
    if isinstance(params0, np.ndarray) or not isinstance(params0, (list, tuple)) or not params0:
        raise ValueError("params must be a list of parameter arrays (one per parameter, first layer first)")
    arrays = [
        _checks.bounded(_checks.as_float_array(p, f"params[{k}]"), f"params[{k}]")
        for k, p in enumerate(params0)
    ]
    shapes = [a.shape for a in arrays] if shapes is None else [tuple(int(n) for n in s) for s in shapes]
    if len(shapes) != len(arrays):
        raise ValueError(f"shapes must give one shape per parameter ({len(arrays)}), got {len(shapes)}")
    batch = arrays[0].shape[: arrays[0].ndim - len(shapes[0])]
    for k, (a, sh) in enumerate(zip(arrays, shapes)):
        if a.shape != batch + sh:
            raise ValueError(f"params[{k}] must have shape (*batch, *{sh}) = {batch + sh}, got {a.shape}")
    batch = np.broadcast_shapes(batch, A.shape[:-2])
    B, d = int(np.prod(batch, dtype=np.int64)), A.shape[-1]
    flat = [np.broadcast_to(a, batch + sh).reshape(B, -1) for a, sh in zip(arrays, shapes)]
    return np.broadcast_to(A, batch + (d, d)).reshape(B, d, d), np.concatenate(flat, axis=1), batch, shapes


def parameter_flow(
    field,
    product,
    task_or_A,
    params0,
    t,
    *,
    shapes=None,
    method: str = "auto",
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> ParameterSolution:
    """Integrate a flow of a model's parameters, ``dp/dt = field(p, A)``, and map it to ``W = product(p)``.

    ``params0``: one array per parameter, ``(*batch, *shape)`` (``shapes`` gives the parameter shapes, so
    that a batch axis is told apart; default: the field's ``shapes`` attribute, else the arrays' own
    shapes). ``field(params, A)`` maps the list of arrays (B, *shape) and A (B, d, d) to the list of their
    time derivatives
    (:func:`simtheory.symbolic.numeric_parameter_field` compiles one from SymPy); ``product(params)`` maps
    the list (B, *shape) to W (B, d, d). Integrated by the built-in solvers (as :func:`field_flow`); any
    start, so the starts where W does not determine the parameters are predicted too."""
    if not callable(field) or not callable(product):
        raise ValueError("field and product must be functions of the list of parameter arrays")
    shapes = getattr(field, "shapes", None) if shapes is None else shapes
    A, y0, batch, shapes = _parameter_batch(params0, shapes, second_moment(task_or_A))
    method, rtol, atol = _checks.solver_options(method, rtol, atol)
    t = _checks.times(t)
    B, d = A.shape[0], A.shape[-1]
    split = np.cumsum([int(np.prod(sh)) for sh in shapes])[:-1]

    def unpack(y):  # (n, P) -> list of (n, *shape)
        return [part.reshape(len(y), *sh) for part, sh in zip(np.split(y, split, axis=1), shapes)]

    _check_parameter_field(field, product, unpack(y0[:1].copy()), A[:1].copy(), shapes, d)
    method, reason = _method_for(method, A, t, state=y0.shape[1])

    def fun(_, y):
        dp = field(unpack(y.reshape(B, -1)), A)
        return np.concatenate([np.asarray(x, dtype=np.float64).reshape(B, -1) for x in dp], axis=1).ravel()

    ys = _solvers.integrate(
        fun, y0.reshape(-1), t, method=method, rtol=rtol, atol=atol, n_systems=B, reason=reason
    )
    P = ys.reshape(t.size, B, -1).transpose(1, 0, 2)  # (B, T, P)
    params = unpack(np.ascontiguousarray(P).reshape(B * t.size, -1))
    W = np.asarray(product(params), dtype=np.float64).reshape(B, t.size, d, d)
    out = [p.reshape(batch + (t.size,) + sh) for p, sh in zip(params, shapes)]
    return ParameterSolution(out, W.reshape(batch + W.shape[1:]))


def _check_parameter_field(field, product, p1, A1, shapes, d) -> None:
    """The contract of a parameter flow, on one setting: the field keeps every parameter's shape and the
    product is (B, d, d); a wrong shape names the function and the shapes."""
    dp = field(p1, A1)
    got = [np.shape(x) for x in dp]
    want = [(1, *sh) for sh in shapes]
    if got != want:
        raise ValueError(f"field(params, A) must return the parameters' shapes {want}; got {got}")
    W = np.shape(product(p1))
    if W != (1, d, d):
        raise ValueError(f"product(params) must return (B, d, d) = (1, {d}, {d}); got {W}")


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
