"""Measurements on sampled curves, shared by the validations, the report and the diffusion analysis.

Every function takes plain arrays (times along the last axis unless said otherwise) and returns
numbers; none knows where the curve came from. Times are returned in the units of the ``t`` given.

* :func:`first_crossing`: the first sample at or above a level (``inf`` if never).
* :func:`sustained_crossing`: the first sample from which a Gaussian-smoothed curve stays above a
  level for ``run`` consecutive samples; censored at the last sample if never (Park et al.'s
  learning time of a concept, with sigma 1.5 checkpoints and 3 in a row).
* :func:`gaussian_smooth`: Gaussian smoothing over samples (edges: nearest value).
* :func:`log_linear_fit`: least-squares line through ``(x, log y)`` or ``(log x, log y)``, with R^2.
* :func:`spearman`: rank correlation, NaN when either side is constant.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def first_crossing(t, y, level) -> np.ndarray:
    """First ``t`` at which ``y >= level`` along the last axis; ``inf`` where it never is.

    ``y`` is ``(..., len(t))``; ``level`` broadcasts against ``y[..., 0]``."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if t.ndim != 1 or y.shape[-1:] != t.shape:
        raise ValueError(
            f"y must end with the time axis of length len(t) = {t.size}; got y of shape {y.shape}"
        )
    reached = y >= np.asarray(level, dtype=np.float64)[..., None]
    return np.where(reached.any(axis=-1), t[np.argmax(reached, axis=-1)], np.inf)


def never_rises(y, *, rel_step: float | None = None, rel_initial: float | None = None) -> np.ndarray:
    """Whether each curve ``(..., T)`` never rises: by more than ``rel_step`` times its previous value from
    one sample to the next, or (``rel_initial``) by more than that fraction of its first value (for noisy
    curves)."""
    y = np.asarray(y, dtype=np.float64)
    if (rel_step is None) == (rel_initial is None):
        raise ValueError("give exactly one of rel_step and rel_initial")
    tol = rel_step * y[..., :-1] if rel_step is not None else rel_initial * y[..., :1]
    return np.all(np.diff(y, axis=-1) <= tol, axis=-1)


def gaussian_smooth(y, sigma: float, axis: int = -1) -> np.ndarray:
    """Gaussian-smoothed ``y`` along ``axis`` (``sigma`` in samples; ``sigma = 0`` returns a copy)."""
    from scipy.ndimage import gaussian_filter1d

    if not (np.isfinite(sigma) and sigma >= 0):
        raise ValueError(f"sigma (samples) must be a finite number >= 0, got {sigma!r}")
    y = np.asarray(y, dtype=np.float64)
    if sigma == 0:
        return y.copy()
    return gaussian_filter1d(y, sigma, axis=axis, mode="nearest", truncate=4.0)


@dataclass(frozen=True)
class Crossing:
    """When a curve settled above a level: ``time`` (the sample's ``t``), ``index``, and whether it never
    did within the record (``censored``: then ``time`` is the last ``t`` and ``index`` is ``len(t)``)."""

    time: float
    index: int
    censored: bool


def sustained_crossing(t, y, level: float, *, sigma: float = 1.5, run: int = 3) -> Crossing:
    """The first sample from which ``gaussian_smooth(y, sigma)`` is ``> level`` at ``run`` consecutive
    samples (the sample itself and the next ``run - 1``); censored at ``t[-1]`` if there is none.

    A curve whose smoothed value only touches the level (fewer than ``run`` samples in a row) has not
    crossed: a noisy plateau below the level with single spikes above it is not "learned"."""
    t = np.asarray(t, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if t.ndim != 1 or y.shape != t.shape:
        raise ValueError(f"t and y must be 1-d of the same length; got {t.shape} and {y.shape}")
    if not isinstance(run, (int, np.integer)) or run < 1:
        raise ValueError(f"run must be a positive integer, got {run!r}")
    above = gaussian_smooth(y, sigma) > level
    streak = np.convolve(
        above.astype(int), np.ones(run, dtype=int), mode="valid"
    )  # streak[i]: above[i:i+run]
    hits = np.flatnonzero(streak == run)
    if hits.size:
        return Crossing(float(t[hits[0]]), int(hits[0]), False)
    return Crossing(float(t[-1]), int(t.size), True)


@dataclass(frozen=True)
class LineFit:
    """``log y = intercept + slope * x`` (or ``* log x`` for a power law) with its R^2 over ``n`` points."""

    slope: float
    intercept: float
    r2: float
    n: int


def log_linear_fit(x, y, *, log_x: bool = False) -> LineFit:
    """Least-squares line through ``(x, log y)`` (exponential law) or ``(log x, log y)`` (power law).

    Points with ``y <= 0`` (or ``x <= 0`` with ``log_x``) are dropped; fewer than 3 points give NaNs."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y) & (y > 0) & ((x > 0) if log_x else True)
    n = int(keep.sum())
    if n < 3:
        return LineFit(np.nan, np.nan, np.nan, n)
    xs = np.log(x[keep]) if log_x else x[keep]
    ys = np.log(y[keep])
    slope, intercept = np.polyfit(xs, ys, 1)
    ss = float(np.sum((ys - ys.mean()) ** 2))
    r2 = 1 - float(np.sum((ys - (slope * xs + intercept)) ** 2)) / ss if ss > 0 else np.nan
    return LineFit(float(slope), float(intercept), float(r2), n)


def spearman(x, y) -> float:
    """Spearman rank correlation of two equal-length samples (NaN if either is constant or shorter than 2)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if x.shape != y.shape or x.ndim != 1:
        raise ValueError(f"x and y must be 1-d of the same length; got {x.shape} and {y.shape}")
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    from scipy.stats import spearmanr

    return float(spearmanr(x, y).statistic)
