"""Input validation shared by the public API.

Every public function validates its inputs here so that a bad argument stops with a
``ValueError`` that names the parameter and the constraint it broke, instead of a NaN
curve or a traceback from deep inside NumPy.
"""

from __future__ import annotations

import numpy as np

#: largest dimension d a task or predictor accepts: a d x d float64 matrix of 2**13 = 8192 is 512 MiB
MAX_D = 8192
#: largest number of float64 values one predictor call may allocate (2**28: 2 GiB)
MAX_VALUES = 2**28
#: solve_ivp methods the ODE-based predictors accept ("auto" chooses)
METHODS = ("auto", "DOP853", "RK45", "RK23", "Radau", "BDF", "LSODA")


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def as_float_array(value, name: str, *, ndim: int | tuple[int, ...] | None = None) -> np.ndarray:
    """Convert ``value`` to a float64 array, rejecting non-numeric, complex, NaN and infinite entries."""
    if value is None or isinstance(value, (str, bytes, dict)):
        raise ValueError(f"{name} must be numeric, got {_short(value)}")
    try:
        raw = np.asarray(value)
        if np.iscomplexobj(raw):
            raise ValueError(f"{name} must be real, got a complex value {_short(value)}")
        if raw.dtype.kind in "USVM" or (
            raw.dtype == object and any(isinstance(x, (str, bytes, dict)) or x is None for x in raw.flat)
        ):
            raise TypeError  # text is never parsed as a number
        arr = raw.astype(np.float64)
    except (TypeError, ValueError, OverflowError) as exc:
        if "must be real" in str(exc):
            raise
        raise ValueError(f"{name} must be numeric, got {_short(value)}") from exc
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if arr.ndim not in allowed:
            want = " or ".join(str(n) for n in allowed)
            raise ValueError(f"{name} must have {want} dimension(s), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite (no NaN or inf), got {_short(value)}")
    return arr


def real_number(
    value,
    name: str,
    *,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real scalar in ``[low, high]`` (``(low, ...`` / ``..., high)`` with ``*_open``)."""
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "fiu":
        value = value.item()
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise ValueError(
            f"{name} must be a real number{_range(low, high, low_open, high_open)}, got {_short(value)}"
        )
    x = float(value)
    bad = not np.isfinite(x)
    if low is not None:
        bad |= x <= low if low_open else x < low
    if high is not None:
        bad |= x >= high if high_open else x > high
    if bad:
        raise ValueError(
            f"{name} must be a finite number{_range(low, high, low_open, high_open)}, got {_short(value)}"
        )
    return x


def _range(low, high, low_open, high_open) -> str:
    if low is None and high is None:
        return ""
    if high is None:
        return f" {'>' if low_open else '>='} {low:g}"
    if low is None:
        return f" {'<' if high_open else '<='} {high:g}"
    return f" in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def choice(value, name: str, options) -> str:
    """One of the strings ``options``."""
    if not isinstance(value, str) or value not in options:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, options))}; got {_short(value)}")
    return value


def solver_options(method, rtol, atol) -> tuple[str, float, float]:
    """The ODE options of every integrating predictor: a solve_ivp method or "auto", and tolerances that
    are finite, > 0 and < 1 (scipy would loop forever on NaN and silently clamp a negative rtol)."""
    method = choice(method, "method", METHODS)
    rtol = real_number(rtol, "rtol", low=0.0, high=1.0, low_open=True, high_open=True)
    atol = real_number(atol, "atol", low=0.0, high=1.0, low_open=True, high_open=True)
    return method, rtol, atol


def bounded(arr: np.ndarray, name: str, limit: float = 1e8) -> np.ndarray:
    """Entries at most ``limit`` in magnitude: far beyond it the closed forms lose every digit (and the
    model is far outside the regime the theory describes)."""
    if arr.size and float(np.max(np.abs(arr))) > limit:
        raise ValueError(
            f"{name} must have entries of magnitude <= {limit:g}, got max |{name}| = "
            f"{np.max(np.abs(arr)):.3g}"
        )
    return arr


def allocation(n_values: int, what: str) -> None:
    """Refuse, before allocating, a result of more than :data:`MAX_VALUES` float64 values."""
    if n_values > MAX_VALUES:
        raise ValueError(
            f"{what} would hold {n_values:,} values ({n_values * 8 / 2**30:.1f} GiB), more than the "
            f"{MAX_VALUES * 8 / 2**30:.0f} GiB one call may allocate: use fewer times or a smaller batch"
        )


def positive_int(value, name: str, *, minimum: int = 1, maximum: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {_short(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        upper = "" if maximum is None else f" and <= {maximum:,}"
        raise ValueError(f"{name} must be an integer >= {minimum}{upper}, got {_short(value)}")
    return int(value)


#: seeds are below 2**32: NumPy and PyTorch generators take them without overflow in any mixing
MAX_SEED = 2**32 - 1


def seed_value(seed, name: str = "seed") -> int:
    """Seeds are explicit non-negative integers below 2**32 (no global RNG state)."""
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise ValueError(f"{name} must be an integer in [0, 2**32 - 1], got {_short(seed)}")
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


def torch_device(device, *, here: bool = True) -> str:
    """A torch device: "cpu", "cuda", "cuda:N" or "mps"; with ``here`` (default) one that exists on this
    machine (a configuration for another machine is checked with ``here=False``)."""
    import torch

    if isinstance(device, torch.device):
        device = str(device)
    if not isinstance(device, str):
        raise ValueError(f"device must be a string such as 'cpu' or 'cuda', got {_short(device)}")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}") from None
    if dev.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"device must be 'cpu', 'cuda', 'cuda:N' or 'mps', got {device!r}")
    if not here:
        return device
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {device!r} requested but CUDA is not available here (use 'cpu')")
    if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
        raise ValueError(f"device {device!r}: only {torch.cuda.device_count()} CUDA device(s) here")
    if dev.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {device!r} requested but MPS is not available here (use 'cpu')")
    return device
