"""Swing-by analysis: turning points of the OOD loss, classification, and a condition-based prediction.

The OOD loss of the symmetric model can fall, rise and fall again (swing-by): a minor entry
``w_ij`` grows with the strong concept j, moves the weak coordinate i of the OOD output toward
its target ("illusion of generalisation"), and is suppressed once ``w_jj`` approaches 1 (the loss
rises), before ``w_ii`` grows and the loss falls again. With more concepts there can be several
bumps (multiple descent), or a weak concept is never learned (failure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _checks, theory
from .task import SIMTask

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
    trend = 0
    i_min = i_max = 0
    for k in range(1, loss.size):
        if trend == 0:
            if loss[k] < loss[i_min]:
                i_min = k
            if loss[k] > loss[i_max]:
                i_max = k
            if loss[k] > loss[i_min] + h and i_min > 0:
                out.append(TurningPoint("min", i_min, float(t[i_min]), float(loss[i_min])))
                trend, i_max = 1, k
            elif loss[k] > loss[i_min] + h:
                trend, i_max = 1, k
            elif loss[k] < loss[i_max] - h and i_max > 0:
                out.append(TurningPoint("max", i_max, float(t[i_max]), float(loss[i_max])))
                trend, i_min = -1, k
            elif loss[k] < loss[i_max] - h:
                trend, i_min = -1, k
        elif trend < 0:
            if loss[k] < loss[i_min]:
                i_min = k
            elif loss[k] > loss[i_min] + h:
                out.append(TurningPoint("min", i_min, float(t[i_min]), float(loss[i_min])))
                trend, i_max = 1, k
        else:
            if loss[k] > loss[i_max]:
                i_max = k
            elif loss[k] < loss[i_max] - h:
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


@dataclass(frozen=True)
class Prediction:
    """Condition-based prediction of a non-monotone OOD loss (see :func:`predict_swingby`)."""

    nonmonotone: bool
    pairs: tuple[tuple[int, int], ...]  # (weak i, strong j) pairs that meet every condition
    reasons: tuple[str, ...]


def predict_swingby(
    task: SIMTask, W0, convention: str = "gradient-flow", *, ratio: float = 3.0, init_scale: float = 0.1
) -> Prediction:
    """Predict a swing-by from the conditions of the theory (design reference, Section 4.2).

    For a weak concept i and a strong concept j (``a_j > a_i`` under the convention's rates) the
    OOD loss is predicted non-monotone when all of these hold:

    1. the minor entry helps: ``w_ij(0) > 0`` (it keeps its sign while it grows as
       ``e^{kappa (a_i + a_j) t}`` and adds ``w_ij mu_j`` to OOD coordinate i);
    2. the rates are well separated: ``a_j > ratio * a_i`` (at ``ratio = 3`` the minor entry is
       already suppressed while ``w_jj`` is at 0.8: rate ``-0.2 (a_j - 3 a_i)``);
    3. the initialisation is small: largest eigenvalue of W0 below ``init_scale``.

    These are the paper's qualitative conditions turned into a rule; how often the rule agrees
    with the numerical solution is measured by :func:`agreement_study`, not assumed.
    """
    if not isinstance(task, SIMTask):
        raise ValueError(f"task must be a SIMTask, got {type(task).__name__}")
    ratio = _checks.real_number(ratio, "ratio", low=1.0)
    init_scale = _checks.real_number(init_scale, "init_scale", low=0.0, low_open=True)
    A_eff, _ = theory.effective_A(task, convention)
    W0 = _checks.psd(_checks.square_batch(W0, "W0", task.d), "W0")
    if W0.ndim != 2:
        raise ValueError(f"W0 must be a single d x d matrix, got shape {W0.shape}")
    a = np.diag(A_eff)[: task.s]
    small = float(np.linalg.eigvalsh(W0).max()) < init_scale
    pairs, reasons = [], []
    for i in range(task.s):
        for j in range(task.s):
            if a[j] <= a[i]:
                continue
            ok_sign, ok_ratio = W0[i, j] > 0, a[j] > ratio * a[i]
            if ok_sign and ok_ratio and small:
                pairs.append((i, j))
            reasons.append(
                f"pair (weak {i + 1}, strong {j + 1}): w_ij(0) > 0: {bool(ok_sign)}; "
                f"a_j/a_i = {a[j] / a[i]:.3g} > {ratio}: {bool(ok_ratio)}; small init: {small}"
            )
    return Prediction(bool(pairs), tuple(pairs), tuple(reasons))


def horizon(task: SIMTask, W0, convention: str = "gradient-flow", factor: float = 6.0) -> float:
    """A time by which the symmetric flow has learned every concept it will (``factor`` x the
    logistic stage time of the slowest concept from the smallest positive diagonal entry of W0)."""
    A_eff, kappa = theory.effective_A(task, convention)
    a_min = float(np.diag(A_eff)[: task.s].min())
    w = np.diag(np.asarray(W0, dtype=np.float64))[: task.s]
    omega = float(np.clip(w[w > 0].min() if np.any(w > 0) else 1e-6, 1e-300, 0.5))
    from ._compile import compiled

    stage = compiled("symmetric", "stage_time")(a=a_min, omega=omega, kappa=kappa)
    return factor * (stage + 1.0 / (2 * kappa * a_min))


def time_grid(t_end: float, n: int = 1500) -> np.ndarray:
    """0 followed by log-spaced times up to ``t_end`` (dynamics here are multi-scale)."""
    return np.concatenate([[0.0], np.geomspace(t_end * 1e-4, t_end, n - 1)])


def agreement_study(
    n: int = 200,
    seed: int = 0,
    convention: str = "gradient-flow",
    *,
    ratio: float = 3.0,
    init_scale: float = 0.1,
    rel_tol: float = 1e-3,
) -> dict:
    """Compare :func:`predict_swingby` with the numerical solution over ``n`` random settings.

    Settings: s = 2 concepts in d = 3, mu ~ U[0.5, 3]^2, sigma ~ U[0, 0.3], W0 = U0 U0^T with
    U0 = scale * uniform[0, 1)^(3x3) (all-positive, as the paper's Figure 5) for half the settings
    and scale * standard normal for the other half, scale log-uniform in [1e-3, 0.3].
    Returns the agreement rate, the confusion counts and the settings' records.
    """
    n = _checks.positive_int(n, "n")
    rng = np.random.default_rng(_checks.seed_value(seed))
    d = 3
    tasks, W0s = [], []
    for k in range(n):
        task = SIMTask(rng.uniform(0.5, 3.0, 2), rng.uniform(0.0, 0.3), d=d)
        scale = 10 ** rng.uniform(-3, np.log10(0.3))
        U0 = scale * (rng.random((d, d)) if k % 2 == 0 else rng.standard_normal((d, d)))
        tasks.append(task)
        W0s.append(U0 @ U0.T)
    # rescale time per setting: W_A(t) = W_{cA}(t / c), so one grid [0, 1] serves the whole batch
    T = np.array([horizon(tk, W0, convention) for tk, W0 in zip(tasks, W0s)])
    A_eff = np.stack([theory.effective_A(tk, convention)[0] * Tk for tk, Tk in zip(tasks, T)])
    grid = time_grid(1.0)
    kappa, _ = theory.CONVENTIONS[convention]
    Ws = theory.symmetric_flow(
        A_eff, np.stack(W0s), grid, convention="gradient-flow" if kappa == 2.0 else "paper"
    )
    records, confusion = [], {"tp": 0, "tn": 0, "fp": 0, "fn": 0}
    for k, (task, W0) in enumerate(zip(tasks, W0s)):
        res = classify(grid * T[k], theory.ood_loss(task, Ws[k]), rel_tol=rel_tol)
        pred = predict_swingby(task, W0, convention, ratio=ratio, init_scale=init_scale)
        actual = res.non_monotone
        key = ("t" if pred.nonmonotone == actual else "f") + ("p" if pred.nonmonotone else "n")
        confusion[key] += 1
        records.append(
            {
                "mu": task.mu.tolist(),
                "sigma": float(task.sigma[0]),
                "predicted": pred.nonmonotone,
                "actual": res.kind,
                "bump": res.bump,
            }
        )
    agree = (confusion["tp"] + confusion["tn"]) / n
    return {
        "n": n,
        "seed": seed,
        "convention": convention,
        "agreement": agree,
        "confusion": confusion,
        "records": records,
    }
