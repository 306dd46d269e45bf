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
* the shape of a loss curve: :func:`turning_points`, :func:`classify` (monotone, swing-by, multiple
  descent or failure, with its bump), vectorised :func:`shape` and :func:`non_monotone` (one definition of
  "non-monotone": the loss rises again after falling, by more than ``rel_tol`` of its start), and
  :func:`turning_point_gap`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _checks


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


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """The Wilson score interval of a binomial proportion ``k / n`` (``(0, 1)`` for ``n = 0``)."""
    if n == 0:
        return (0.0, 1.0)
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * float(np.sqrt(p * (1 - p) / n + z * z / (4 * n * n))) / (1 + z * z / n)
    return (max(0.0, centre - half), min(1.0, centre + half))


# -- the shape of a loss curve -------------------------------------------------------------------

KINDS = ("monotone", "swing-by", "multiple descent", "failure")
#: the kinds whose loss rises again after falling
NON_MONOTONE = ("swing-by", "multiple descent")


@dataclass(frozen=True)
class TurningPoint:
    kind: str  # "min" or "max"
    index: int
    time: float
    value: float


@dataclass(frozen=True)
class Analysis:
    """Result of :func:`classify`."""

    kind: str
    turning_points: tuple[TurningPoint, ...]
    initial_loss: float
    final_loss: float
    converged: bool
    bump: float  # largest rise of the loss after a local minimum (0 if monotone)

    @property
    def non_monotone(self) -> bool:
        """Swing-by or multiple descent: the loss rises again after falling."""
        return self.kind in NON_MONOTONE

    def summary(self) -> str:
        tp = ", ".join(f"{p.kind} {p.value:.4g} at t={p.time:.4g}" for p in self.turning_points) or "none"
        return (
            f"{self.kind}; turning points: {tp}; bump {self.bump:.4g}; final loss {self.final_loss:.4g}"
            + ("" if self.converged else " (not converged: extend the horizon)")
        )


def _curve(t, loss):
    t = _checks.times(t, "t")
    loss = _checks.as_float_array(loss, "loss", ndim=1)
    if loss.size != t.size:
        raise ValueError(f"loss must have the same length as t ({t.size}), got {loss.size}")
    if np.any(np.diff(t) <= 0):
        raise ValueError("t must be strictly increasing")
    return t, loss


def turning_points(t, loss, rel_tol: float = 1e-3) -> tuple[TurningPoint, ...]:
    """Interior local minima and maxima of a sampled curve, ignoring wiggles below a threshold.

    A reversal counts only when the curve moves back by more than ``rel_tol`` times its range
    (a zig-zag filter), so solver noise does not create spurious turning points.
    """
    t, loss = _curve(t, loss)
    rel_tol = _checks.real_number(rel_tol, "rel_tol", low=0.0, high=1.0, low_open=True, high_open=True)
    span = float(loss.max() - loss.min())
    if span == 0.0:
        return ()
    h = rel_tol * span
    out = []
    trend, i_min, i_max = 0, 0, 0  # trend: 0 before the first move by more than h, then -1 falling, 1 rising
    for k in range(1, loss.size):
        if trend <= 0 and loss[k] < loss[i_min]:
            i_min = k
        if trend >= 0 and loss[k] > loss[i_max]:
            i_max = k
        if trend <= 0 and loss[k] > loss[i_min] + h:  # turned up: a minimum (not the start itself)
            if i_min > 0 or trend < 0:
                out.append(TurningPoint("min", i_min, float(t[i_min]), float(loss[i_min])))
            trend, i_max = 1, k
        elif trend >= 0 and loss[k] < loss[i_max] - h:  # turned down: a maximum
            if i_max > 0 or trend > 0:
                out.append(TurningPoint("max", i_max, float(t[i_max]), float(loss[i_max])))
            trend, i_min = -1, k
    return tuple(out)


def classify(t, loss, rel_tol: float = 1e-3, failure_frac: float = 0.05) -> Analysis:
    """Classify an OOD-loss curve as monotone, swing-by, multiple descent or failure.

    * failure: the curve has flattened (last 10% of the grid moves by less than ``rel_tol`` of
      its range) at a loss above ``failure_frac`` times the initial loss;
    * otherwise by the number of interior maxima (:func:`turning_points`): 0 monotone,
      1 swing-by (fall, rise, fall), 2 or more multiple descent.
    """
    t, loss = _curve(t, loss)
    failure_frac = _checks.real_number(failure_frac, "failure_frac", low=0.0, high=1.0, high_open=True)
    tps = turning_points(t, loss, rel_tol)
    span = float(loss.max() - loss.min())
    tail = loss[int(0.9 * (loss.size - 1)) :]
    converged = bool(span == 0.0 or (tail.max() - tail.min()) <= rel_tol * span)
    bump = 0.0
    for p, q in zip(tps, tps[1:]):
        if p.kind == "min" and q.kind == "max":
            bump = max(bump, q.value - p.value)
    n_max = sum(p.kind == "max" for p in tps)
    if converged and loss[-1] > failure_frac * loss[0]:
        kind = "failure"
    else:
        kind = "monotone" if n_max == 0 else ("swing-by" if n_max == 1 else "multiple descent")
    return Analysis(kind, tps, float(loss[0]), float(loss[-1]), converged, bump)


def shape(t, losses, rel_tol: float = 1e-3, failure_frac: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """:func:`classify`'s verdict for many curves at once, vectorised: ``(non_monotone, bump)`` for each curve
    ``losses[..., :]`` on the grid ``t``.

    A curve is non-monotone when some point rises more than ``rel_tol`` x its range above an earlier point and
    falls as much below it later (which is when :func:`classify`'s zig-zag filter records an interior maximum)
    and it is not a failure (flat at the end above ``failure_frac`` x its start). ``bump``: the largest such
    rise above the lowest earlier point (0 when monotone); for one bump it is :func:`classify`'s ``bump``;
    with several it can be larger (the rise is from the lowest earlier point, not the last local minimum).
    """
    t = _checks.times(t, "t")
    losses = np.asarray(losses, dtype=np.float64)
    if losses.shape[-1:] != t.shape:
        raise ValueError(f"losses must have last axis len(t) = {t.size}, got shape {losses.shape}")
    span = losses.max(axis=-1) - losses.min(axis=-1)
    h = rel_tol * span[..., None]
    rise = losses - np.minimum.accumulate(losses, axis=-1)
    fall = losses - np.flip(np.minimum.accumulate(np.flip(losses, -1), axis=-1), -1)
    peak = (rise > h) & (fall > h)
    tail = losses[..., int(0.9 * (t.size - 1)) :]
    flat = (span == 0) | (tail.max(axis=-1) - tail.min(axis=-1) <= rel_tol * span)
    failure = flat & (losses[..., -1] > failure_frac * losses[..., 0])
    nm = peak.any(axis=-1) & ~failure
    bump = np.where(nm, np.where(peak, rise, 0.0).max(axis=-1), 0.0)
    return nm, bump


def non_monotone(t, losses, rel_tol: float = 1e-3) -> np.ndarray:
    """For each curve ``losses[..., :]`` on the grid ``t``, whether :func:`classify` calls it non-monotone."""
    losses = np.asarray(losses, dtype=float)
    flat = losses.reshape(-1, losses.shape[-1])
    return np.array([classify(t, y, rel_tol).non_monotone for y in flat], dtype=bool).reshape(
        losses.shape[:-1]
    )


def ood_non_monotone(curves, losses=None) -> np.ndarray:
    """``(E,)`` whether each member's OOD loss (or the given ``(E, T)`` ``losses`` on ``curves.times``) is
    non-monotone after ``t = 0`` (:func:`non_monotone` on the curves without their first record)."""
    losses = curves.ood_loss if losses is None else losses
    return non_monotone(curves.times[1:], losses[:, 1:])


def turning_point_gap(actual: Analysis, reference: Analysis) -> tuple[bool, float, float]:
    """Compare the turning points of two analyses (e.g. a GD run against the prediction).

    Returns (same kinds in the same order, max relative time difference, max relative value
    difference); the differences are ``nan`` when the sequences of kinds differ.
    """
    a, b = actual.turning_points, reference.turning_points
    if [p.kind for p in a] != [q.kind for q in b]:
        return False, float("nan"), float("nan")
    if not b:
        return True, 0.0, 0.0
    dt = max(abs(p.time - q.time) / q.time for p, q in zip(a, b))
    dv = max(abs(p.value - q.value) / q.value for p, q in zip(a, b))
    return True, float(dt), float(dv)
