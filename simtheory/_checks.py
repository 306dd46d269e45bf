"""Input validation shared by the public API.

Every public function validates its inputs here so that a bad argument stops with a
``ValueError`` that names the parameter and the constraint it broke, instead of a NaN
curve or a traceback from deep inside NumPy.
"""

from __future__ import annotations

import numpy as np


def as_float_array(value, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Convert ``value`` to a float64 array, rejecting non-numeric, NaN and infinite entries."""
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be numeric, got {value!r}") from exc
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must have {want} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf), got {value!r}")
    return arr


def positive_int(value, name: str, *, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def seed_value(seed, name: str = "seed") -> int:
    """Seeds are explicit non-negative integers (no global RNG state)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"{name} must be a non-negative integer, got {seed!r}")
    return int(seed)


def times(t, name: str = "t") -> np.ndarray:
    """A 1-d grid of non-negative, finite times (a scalar becomes a grid of one)."""
    arr = as_float_array(t, name, ndim=(0, 1))
    arr = np.atleast_1d(arr)
    if arr.size == 0:
        raise ValueError(f"{name} must contain at least one time")
    if np.any(arr < 0):
        raise ValueError(f"{name} must be >= 0 (times are learning rate x steps), got min {arr.min()!r}")
    return arr


def square_batch(value, name: str, d: int | None = None) -> np.ndarray:
    """An array of shape (..., d, d)."""
    arr = as_float_array(value, name)
    if arr.ndim < 2 or arr.shape[-1] != arr.shape[-2]:
        raise ValueError(f"{name} must have shape (..., d, d), got {arr.shape}")
    if d is not None and arr.shape[-1] != d:
        raise ValueError(f"{name} must be {d} x {d} to match the task, got {arr.shape[-2:]}")
    return arr


def symmetric(arr: np.ndarray, name: str, *, rtol: float = 1e-8) -> np.ndarray:
    scale = max(1.0, float(np.max(np.abs(arr)))) if arr.size else 1.0
    asym = np.max(np.abs(arr - np.swapaxes(arr, -1, -2))) if arr.size else 0.0
    if asym > rtol * scale:
        raise ValueError(f"{name} must be symmetric, max |{name} - {name}^T| = {asym:.3g}")
    return 0.5 * (arr + np.swapaxes(arr, -1, -2))


def psd(arr: np.ndarray, name: str, *, rtol: float = 1e-10) -> np.ndarray:
    """Symmetric positive semi-definite (up to round-off relative to the largest eigenvalue)."""
    arr = symmetric(arr, name)
    eig = np.linalg.eigvalsh(arr)
    scale = max(1.0, float(np.max(np.abs(eig)))) if eig.size else 1.0
    if eig.size and eig.min() < -rtol * scale:
        raise ValueError(f"{name} must be positive semi-definite, smallest eigenvalue {eig.min():.3g} < 0")
    return arr
