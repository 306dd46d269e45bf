"""Helpers for property tests against simtheory: hypothesis strategies and curve comparison.

Example::

    from hypothesis import given
    from simtheory.testing import tasks, psd_inits, assert_curves_close

    @given(tasks(), psd_inits(d=3))
    def test_something(task, W0): ...

The strategies are bounded (moderate mu, sigma and init scales) so that every drawn setting is
well-conditioned; extreme values belong in explicit tests.
"""

from __future__ import annotations

import numpy as np

from .task import SIMTask

#: default (rtol, atol) by dtype for :func:`assert_curves_close` (relative Frobenius error per time)
TOLERANCES = {
    np.dtype(np.float64): (1e-7, 1e-10),
    np.dtype(np.float32): (1e-4, 1e-6),
    np.dtype(np.float16): (1e-2, 1e-3),
}


def _st():
    from hypothesis import strategies as st

    return st


def tasks(
    min_s: int = 1, max_s: int = 3, max_extra_d: int = 1, *, mu=(0.3, 3.0), sigma=(0.0, 0.5), origin=None
):
    """Strategy for :class:`SIMTask` with s in [min_s, max_s], d - s in [0, max_extra_d]."""
    st = _st()
    floats = lambda lo, hi: st.floats(lo, hi, allow_nan=False, allow_infinity=False)

    @st.composite
    def build(draw):
        s = draw(st.integers(min_s, max_s))
        d = s + draw(st.integers(0, max_extra_d))
        mus = draw(st.lists(floats(*mu), min_size=s, max_size=s))
        sig = draw(st.lists(floats(*sigma), min_size=d, max_size=d))
        org = draw(st.booleans()) if origin is None else origin
        return SIMTask(mus, sig, d=d, origin=org)

    return build()


def arrays(shape, lo: float = -1.0, hi: float = 1.0):
    """Strategy for float64 arrays of a fixed shape with entries in [lo, hi]."""
    st = _st()
    n = int(np.prod(shape))
    return st.lists(st.floats(lo, hi, allow_nan=False, allow_infinity=False), min_size=n, max_size=n).map(
        lambda v: np.asarray(v, dtype=np.float64).reshape(shape)
    )


def factor_inits(d: int, scale=(1e-3, 0.3)):
    """Strategy for first-layer factors U0 = scale * (entries in [-1, 1]), shape (d, d)."""
    st = _st()
    return st.tuples(arrays((d, d)), st.floats(*scale)).map(lambda p: p[1] * p[0])


def psd_inits(d: int, scale=(1e-3, 0.3)):
    """Strategy for symmetric PSD ``W0 = U0 U0^T`` with U0 from :func:`factor_inits`."""
    return factor_inits(d, scale).map(lambda U: U @ U.T)


def linear_inits(d: int, scale: float = 1.0):
    """Strategy for arbitrary (non-symmetric) one-layer initialisations W0 with entries in [-scale, scale]."""
    return arrays((d, d), -scale, scale)


def _unpack(x):
    from .curves import Curves

    if isinstance(x, Curves):
        return x.W, x.times
    return np.asarray(x), None


def _broadcast_desired(a: np.ndarray, d: np.ndarray, err_msg: str) -> np.ndarray:
    """``desired`` over the leading (ensemble) axes of ``actual``, or an error saying how to compare."""
    if a.shape == d.shape:
        return d
    try:
        shape = np.broadcast_shapes(a.shape, d.shape)
    except ValueError:
        shape = None
    if shape is None or shape != a.shape:
        raise AssertionError(
            f"shapes differ: actual {a.shape} vs desired {d.shape}; a desired curve broadcasts over the "
            f"leading (ensemble) axes of actual, else select one member (curves.select(k)). {err_msg}"
        )
    return np.broadcast_to(d, shape)


def assert_curves_close(
    actual, desired, rtol: float | None = None, atol: float | None = None, err_msg: str = ""
):
    """Assert that two trajectories agree at every time: ``||a_t - d_t||_F <= atol + rtol ||d_t||_F``.

    ``actual``/``desired`` are :class:`~simtheory.Curves` (their ``W`` is compared) or arrays of
    shape (..., T, d, d) / (..., T); ``desired`` broadcasts over the leading axes of ``actual`` (one
    prediction against every member of an ensemble: ``(T, d, d)`` against ``(E, T, d, d)``). Default
    tolerances come from :data:`TOLERANCES` for the less precise of the two dtypes. On failure the message
    names the worst time (index and value), the worst entry, both values, the error and the tolerance.
    """
    a, ta = _unpack(actual)
    d, td = _unpack(desired)
    d = _broadcast_desired(a, d, err_msg)
    floats = [x for x in (a.dtype, d.dtype) if x.kind == "f"] or [np.dtype(np.float64)]
    least_precise = max(floats, key=lambda x: np.finfo(x).eps)
    default = TOLERANCES.get(least_precise, TOLERANCES[np.dtype(np.float64)])
    rtol = default[0] if rtol is None else rtol
    atol = default[1] if atol is None else atol
    a64, d64 = a.astype(np.float64), d.astype(np.float64)
    if not np.all(np.isfinite(a64)):
        raise AssertionError(
            f"actual contains non-finite values at {np.argwhere(~np.isfinite(a64))[0].tolist()}. {err_msg}"
        )
    matrix = a.ndim >= 3
    axes = (-2, -1) if matrix else ()
    err = np.sqrt(np.sum((a64 - d64) ** 2, axis=axes)) if matrix else np.abs(a64 - d64)
    ref = np.sqrt(np.sum(d64**2, axis=axes)) if matrix else np.abs(d64)
    tol = atol + rtol * ref
    bad = err > tol
    if not bad.any():
        return
    worst = np.unravel_index(np.argmax(err - tol), err.shape)
    times = ta if ta is not None else td
    t_idx = worst[-1]
    when = f"time index {t_idx}" + (f" (t = {times[t_idx]:.6g})" if times is not None else "")
    msg = [
        f"curves differ at {int(bad.sum())} of {bad.size} time points; worst at {when}"
        + (f", batch index {tuple(int(i) for i in worst[:-1])}" if len(worst) > 1 else "")
    ]
    if matrix:
        diff = np.abs(a64[worst] - d64[worst])
        i, j = np.unravel_index(np.argmax(diff), diff.shape)
        msg.append(
            f"  worst entry W[{i},{j}]: actual {a64[worst][i, j]:.10g}, desired {d64[worst][i, j]:.10g}"
        )
    else:
        msg.append(f"  actual {a64[worst]:.10g}, desired {d64[worst]:.10g}")
    msg.append(f"  error {err[worst]:.3g} > tolerance {tol[worst]:.3g} (rtol {rtol:g}, atol {atol:g})")
    if err_msg:
        msg.append(err_msg)
    raise AssertionError("\n".join(msg))
