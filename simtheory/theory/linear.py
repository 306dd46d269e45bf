"""The one-layer model f(x) = W x: gradient flow and exact discrete GD in closed form
(``derivations/one_layer_flow``, ``one_layer_gd``, ``one_layer_weight_decay``), and its OOD loss curves."""

from __future__ import annotations

import numpy as np

from .. import _checks, _threads
from .._compile import compiled
from ..task import SIMTask
from ._base import eig_clipped, modal_sum, prepare
from .losses import ood_points


def linear_flow(task_or_A, W0, t, *, weight_decay: float = 0.0) -> np.ndarray:
    """Gradient flow of the one-layer model f(x) = W x: ``W(t) = I - (I - W0) expm(-A t)``.

    Exact for any symmetric PSD A (paper Theorem 4.1 in A's eigenbasis). ``t``: gradient-flow
    time (lr x steps), scalar or 1-d. ``weight_decay`` lambda > 0 adds ``lambda/2 ||W||_F^2`` to the loss
    (``derivations.one_layer_weight_decay``, in A's eigenbasis: direction i is learned to the fraction
    ``a_i / (a_i + lambda)`` at the rate ``a_i + lambda``). Returns ``(*batch, len(t), d, d)``.
    """
    A, W0, batch = prepare(task_or_A, W0)
    t = _checks.times(t)
    wd = _checks.real_number(weight_decay, "weight_decay", low=0.0)
    _checks.allocation(W0.size * t.size, "the result (batch x len(t) x d x d)")
    lam, Q = eig_clipped(A)
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
    W = modal_sum(W0, G, (np.eye(d) - W0) @ Q, Q)
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
    A, W0, batch = prepare(task if A is None else A, W0)
    x = ood_points(task, v)
    t = _checks.times(t)
    B, d = W0.shape[0], W0.shape[-1]
    xs = x.reshape(-1, d)  # (m, d)
    _checks.allocation(B * t.size * (d + xs.shape[0]), "the result and its modes (batch x len(t) x d)")
    lam, Q = eig_clipped(A)
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
    A, W0, batch = prepare(task_or_A, W0)
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
    lam, Q = eig_clipped(A)
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
    W = modal_sum(W0, np.asarray(G, dtype=np.float64), (np.eye(d) - W0) @ Q, Q)
    return W.reshape(batch + W.shape[1:])
