"""Concept-space analysis of diffusion runs (the paper's Figure 6 and beyond), the SIM fit, and
the paper's claims decided with numbers.

All measures are computed from the stored per-sample probe outputs (``records.npz``); nothing is
re-generated. Single checkpoints of one seed swing widely (design notes), so the claims are read on
seed means, as Park et al. do:

* learning time of a concept (per member): the first checkpoint at which the Gaussian-smoothed
  (sigma 1.5 checkpoints) argmax accuracy stays above 0.9 for 3 consecutive checkpoints; censored at
  the run length if never. Read on the held-out prompt (Park's definition) and on the training
  prompts (:func:`training_accuracy`, worst training class).
* the competence gate: a member counts for the claims only if it learned both concepts on the training
  prompts (that reading) before ``GATE`` of its run; members that fail are reported, never dropped silently.
* trajectories, concept-space MSE and speed ``|dC/dt|`` per delta: the mean over the gated seeds of the
  Gaussian-smoothed (sigma 2 checkpoints) curves, with seed standard errors.

The statistics and thresholds (module constants) were fixed from their power on synthetic runs
(:mod:`simtheory.diffusion.power`) before the decisive sweep's records were analysed.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field

import numpy as np

from simtheory.measures import (
    Crossing,
    gaussian_smooth,
    log_linear_fit,
    sustained_crossing,
)

from .data import ImageSpec, classes, concept_signal, training_rows
from .records import Records, load, merge  # noqa: F401  (re-exported: analysis.load / merge)

#: learning time: smoothed argmax accuracy above LEARNED for RUN checkpoints (Park et al.)
LEARNED, SMOOTH_TIME, RUN = 0.9, 1.5, 3
#: trajectories, MSE and speed: seed means of curves smoothed over SMOOTH_TRAJ checkpoints
SMOOTH_TRAJ = 2.0
#: competence gate: both concepts learned on the training prompts before GATE x the run length
GATE = 0.8
#: signals within a factor 1 + TIE of each other predict no order ("tie": not scored)
TIE = 0.15
#: the theory predicts a swing-by where a_strong > 3 a_weak, i.e. a signal (mu) ratio above sqrt(3); it is
#: scored where the ratio is at least CLEAR (a_strong > 9 a_weak) and reported where it is marginal
SEPARATED, CLEAR = 3.0**0.5, 3.0
#: (ii) a swing-by: after the first CUT of the run, the seed-mean MSE rises by >= SWING_RISE above its
#: running minimum, by >= SWING_SE seed standard errors, nearest the stronger concept's training corner
CUT, SWING_RISE, SWING_SE = 0.05, 0.05, 1.5
#: (iii) slowdown: exponential and power-law fits of the seed-mean speed, over >= DECAY_POINTS checkpoints
#: from its last hump (the last concept's learning), until the speed falls to FLOOR_FACTOR x the noise
#: floor; "exponential" if its R^2 >= DECAY_R2 and beats the power law's by LAW_MARGIN (the reverse:
#: "power law"; else "indistinguishable"); the claim needs "exponential" at >= DECAY_DELTAS deltas
DECAY_R2, DECAY_POINTS, DECAY_DELTAS, FLOOR_FACTOR, LAW_MARGIN = 0.6, 6, 3, 2.0, 0.05
#: (i) order: on each side of the predicted crossing, the predicted concept first in >= ORDER_SEEDS of the
#: gated members (pooled over that side's deltas); the seed-mean colour learning time falls with delta in
#: order: Spearman <= ORDER_SPEARMAN (-1: a random order of 4 deltas meets it with probability 1/24)
ORDER_SEEDS, ORDER_SPEARMAN = 2 / 3, -1.0
#: SIM fit: the fitted a_colour / a_size rises with delta, Spearman >= SIM_SPEARMAN
SIM_SPEARMAN = 0.8
#: Spearman's rho of n ranks is a multiple of 6 / (n (n^2 - 1)) (0.2 for 4 deltas): compared with this
#: slack so that float rounding (0.7999999999999999) does not decide a threshold the statistic meets exactly
RANK_EPS = 1e-9
READINGS = ("heldout", "park", "training")

# --- measures on records ----------------------------------------------------------------------


def trajectories(rec: Records, probe: str = "cnn") -> np.ndarray:
    """Concept-space points of every class prompt: ``(K, classes, C, s)``."""
    p = rec.probs if probe == "cnn" else rec.analytic
    return np.moveaxis(p.mean(axis=3), 0, 2)


def ood_trajectory(rec: Records, probe: str = "cnn") -> np.ndarray:
    """Concept-space trajectory of the OOD (all-ones) prompt: ``(K, C, s)``."""
    return trajectories(rec, probe)[:, -1]


def mse_to_target(C: np.ndarray) -> np.ndarray:
    """Concept-space MSE to the composition ``(1, ..., 1)`` (mean over concepts)."""
    return np.mean((np.asarray(C) - 1.0) ** 2, axis=-1)


def multiplicative_accuracy(rec: Records) -> np.ndarray:
    """Mean over OOD generations of ``prod_p P_p`` (e.g. P(blue) P(small)): ``(K, C)``."""
    return np.moveaxis(rec.probs[:, :, -1].prod(axis=-1).mean(axis=-1), 0, 1)


def in_distribution_accuracy(rec: Records) -> np.ndarray:
    """Fraction of generations for the training prompts whose every concept is probed right: ``(K, C)``."""
    s = rec.probs.shape[-1]
    rows = training_rows(s)
    right = ((rec.probs[:, :, rows] > 0.5) == classes(s)[rows][None, None, :, None, :]).all(axis=-1)
    return np.moveaxis(right.mean(axis=(2, 3)), 0, 1)


def probe_agreement(rec: Records, last: int = 5) -> np.ndarray:
    """Fraction of generations (all prompts, last ``last`` checkpoints) on which the CNN and the
    analytic probe give the same hard label, per concept (colour, size): ``(K, 2)``."""
    a = rec.probs[-last:, ..., :2] > 0.5
    b = rec.analytic[-last:] > 0.5
    return (a == b).mean(axis=(0, 2, 3))


def speed(steps: np.ndarray, C: np.ndarray):
    """``|dC/dt|`` between checkpoints (per 1k steps) at the midpoints: ``(mid (C-1,), speed (..., C-1))``."""
    steps = np.asarray(steps, dtype=np.float64)
    dt = np.diff(steps) / 1000.0
    v = np.linalg.norm(np.diff(C, axis=-2), axis=-1) / dt
    return (steps[1:] + steps[:-1]) / 2, v


def heldout_accuracy(rec: Records) -> np.ndarray:
    """Per concept, the fraction of the held-out (OOD, all-ones) prompt's generations whose probe argmax
    is the prompted value (1): ``(K, C, s)``. Park et al.'s reading of concept learning."""
    return np.moveaxis((rec.probs[:, :, -1] > 0.5).mean(axis=2), 0, 1)


def training_accuracy(rec: Records, probs: np.ndarray | None = None) -> np.ndarray:
    """Per concept, the argmax accuracy on the training prompts: for each training class the fraction of its
    generations whose probe argmax is the prompted value, minimum over the training classes: ``(K, C, s)``.
    ``probs``: another reading of the same records (default ``rec.probs``; e.g. ``rec.probs_compare``).

    The minimum, not the mean: a model that ignores the colour word and draws every circle red is right on
    two of the three training classes (a mean of 2/3) and gets 0 here."""
    probs = rec.probs if probs is None else probs
    s = probs.shape[-1]
    rows = training_rows(s)
    target = classes(s)[rows][None, None, :, None, :] == 1
    right = ((probs[:, :, rows] > 0.5) == target).mean(axis=3)  # (C, K, classes, s)
    return np.moveaxis(right.min(axis=2), 0, 1)


def learning_times(steps, accuracy) -> list[list[Crossing]]:
    """Park et al.'s learning time of each concept for each member: the first checkpoint at which the
    Gaussian-smoothed (sigma = ``SMOOTH_TIME`` checkpoints) argmax accuracy is above ``LEARNED`` for ``RUN``
    consecutive checkpoints; censored at the last checkpoint if never. ``accuracy``: ``(K, C, s)``."""
    return [
        [
            sustained_crossing(steps, acc[:, p], LEARNED, sigma=SMOOTH_TIME, run=RUN)
            for p in range(acc.shape[-1])
        ]
        for acc in np.asarray(accuracy)
    ]


def first_learned(times) -> str:
    """``"colour"``, ``"size"``, ``"tie"`` (same checkpoint) or ``"none"`` (both censored) from the first two
    concepts' :class:`~simtheory.measures.Crossing`."""
    tc, ts = times[0], times[1]
    if tc.censored and ts.censored:
        return "none"
    if tc.censored != ts.censored:
        return "size" if tc.censored else "colour"
    return "colour" if tc.time < ts.time else "size" if ts.time < tc.time else "tie"


def predicted_first(signal: dict, tie: float | None = None) -> str:
    """The concept the pixel-space signal predicts to be learned first, or ``"tie"`` when the two signals
    are within a factor ``1 + tie`` of each other (default ``TIE``: no order is predicted there)."""
    tie = TIE if tie is None else tie
    c, z = signal["colour"], signal["size"]
    return "colour" if c > (1 + tie) * z else "size" if z > (1 + tie) * c else "tie"


def swing_scoring(signal: dict) -> str:
    """How the theory's swing-by prediction is scored at these signals: ``"clear"`` (ratio >= ``CLEAR``:
    scored), ``"marginal"`` (``SEPARATED`` < ratio < ``CLEAR``: reported) or ``"none"`` (no swing-by
    predicted)."""
    ratio = max(signal.values()) / min(signal.values())
    return "clear" if ratio >= CLEAR else "marginal" if ratio > SEPARATED else "none"


# --- typed results ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """One member (delta, seed): its learning times per reading (``READINGS``), the competence gate and the
    end-of-run measures. ``compare``: the raw-weight DDIM reading of the same checkpoints, where recorded."""

    delta: float
    seed: int
    signal: dict
    predicted_first: str
    times: dict  # reading -> [Crossing (colour), Crossing (size)]
    competent: bool
    competent_step: float  # both concepts learned on the training prompts (inf if never)
    final_mse: float
    final_mult_accuracy: float
    mult_accuracy_last5: float
    final_in_distribution_accuracy: float
    probe_agreement: tuple
    compare: dict | None = None

    def first(self, reading: str) -> str:
        return first_learned(self.times[reading])

    def to_dict(self) -> dict:
        out = {k: v for k, v in asdict(self).items() if k != "times"}
        for reading, tt in self.times.items():
            for name, c in zip(("colour", "size"), tt):
                out[f"time_{name}_{reading}"] = c.time
                out[f"censored_{name}_{reading}"] = c.censored
            out[f"first_{reading}"] = self.first(reading)
        return out


@dataclass(frozen=True)
class Swing:
    """The largest rise of the seed-mean MSE above its running minimum after the early cut."""

    rise: float
    se: float
    step: float
    from_step: float
    peak_point: tuple
    near_stronger_corner: bool

    @property
    def significant(self) -> bool:
        return self.rise >= SWING_RISE and self.rise >= SWING_SE * self.se


@dataclass(frozen=True)
class Decay:
    """Exponential and power-law fits of the speed's decline after the last turning point."""

    start_step: float
    end_step: float
    n_points: int
    rate_per_1k: float
    r2: float
    power_exponent: float
    power_r2: float
    floor: float
    law: str  # "exponential", "power law", "indistinguishable", "no decay", "too few points"


@dataclass(frozen=True)
class DeltaResult:
    """The seed means at one delta (over its gated members; over all when none is gated, ``gated=False``)."""

    delta: float
    n_seeds: int
    n_competent: int
    gated: bool
    signal: dict
    predicted_first: str
    swing_scoring: str
    stronger: str
    swing: Swing
    decay: Decay
    times: dict  # reading -> {"colour": mean, "colour_se": s.e., "colour_censored": n, ...}
    firsts: dict  # reading -> [first concept of each gated member]
    final_accuracy: dict
    final_mult_accuracy: float
    curves: dict
    sim: dict | None = None
    over_prompt: dict | None = None

    @property
    def predicted_swingby(self) -> bool:
        return self.swing_scoring != "none"

    def to_dict(self) -> dict:
        out = asdict(self)
        out["predicted_swingby"] = self.predicted_swingby
        out["swing"]["significant"] = self.swing.significant
        return out


@dataclass(frozen=True)
class Analysis:
    """:func:`analyse`'s result; :meth:`to_dict` is its JSON form."""

    members: list
    deltas: list
    signal_crossing_delta: float
    run_length: float
    claims: list = field(default_factory=list)

    def to_dict(self) -> dict:
        return {
            "members": [m.to_dict() for m in self.members],
            "deltas": [e.to_dict() for e in self.deltas],
            "signal_crossing_delta": self.signal_crossing_delta,
            "run_length": self.run_length,
            "competence_gate": gate_summary(self.members, self.run_length),
            "claims": [c.to_dict() for c in self.claims],
        }


def gate_summary(members, run_length: float) -> dict:
    """How many members passed the competence gate, and which did not."""
    failed = [(m.delta, m.seed) for m in members if not m.competent]
    return {
        "rule": f"both concepts learned on the training prompts before step {GATE * run_length:.0f} "
        f"({GATE:.0%} of the run)",
        "passed": len(members) - len(failed),
        "of": len(members),
        "failed": failed,
    }


# --- fits ---------------------------------------------------------------------------------------


def sim_fit(steps: np.ndarray, C: np.ndarray, *, n_starts: int = 3) -> dict:
    """Fit the SIM symmetric model to a concept-space trajectory.

    Model: ``C(t) = W(t) 1`` with ``W`` the gradient flow of ``U U^T`` on ``A = diag(a)``
    (:func:`simtheory.symmetric_flow`), ``W(0) = U0 U0^T`` (``U0`` lower triangular), time in
    1k steps. Returns the rates ``a`` (per 1k steps), ``W0``, the RMS residual and the fitted curve.
    """
    from scipy.optimize import least_squares

    from simtheory.theory import symmetric_flow

    t = np.asarray(steps, dtype=np.float64) / 1000.0
    C = np.asarray(C, dtype=np.float64)
    s = C.shape[-1]
    tri = np.tril_indices(s)

    def unpack(z):
        U = np.zeros((s, s))
        U[tri] = z[s:]
        return np.exp(z[:s]), U @ U.T

    def curve(z):
        a, W0 = unpack(z)
        return symmetric_flow(np.diag(a), W0 + 1e-9 * np.eye(s), t).sum(axis=-1)

    horizon = max(t[-1], 1e-9)
    best = None
    for k in range(n_starts):
        U0 = np.eye(s) * np.sqrt(0.1 * (k + 1))
        z0 = np.concatenate([np.full(s, np.log(10.0 / horizon)), U0[tri]])
        lo = np.r_[np.full(s, np.log(1e-3 / horizon)), np.full(len(z0) - s, -2.0)]
        hi = np.r_[np.full(s, np.log(1e4 / horizon)), np.full(len(z0) - s, 2.0)]
        try:
            sol = least_squares(lambda z: (curve(z) - C).ravel(), z0, bounds=(lo, hi), max_nfev=200)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            continue
        if best is None or sol.cost < best.cost:
            best = sol
    if best is None:
        raise RuntimeError("SIM fit failed from every start")
    a, W0 = unpack(best.x)
    fitted = curve(best.x)
    return {
        "a": a,
        "W0": W0,
        "init_scale": float(np.linalg.norm(W0)),
        "rms": float(np.sqrt(np.mean((fitted - C) ** 2))),
        "curve": fitted,
    }


def signal_crossing(
    resolution: int,
    concepts=("colour", "size"),
    lo: float = 0.05,
    hi: float = 0.8,
    *,
    size_gap: float = 0.1,
    blur: float | None = None,
) -> float:
    """The delta at which the pixel-space colour signal equals the size signal (bisection); NaN if
    the colour signal stays on one side in [lo, hi]. ``blur`` defaults to one pixel (``2 / resolution``)."""
    blur = 2 / resolution if blur is None else blur

    def f(d):
        sig = _signal(ImageSpec(resolution, d, tuple(concepts), size_gap=size_gap, blur=blur))
        return sig["colour"] - sig["size"]

    flo, fhi = f(lo), f(hi)
    if np.sign(flo) == np.sign(fhi):
        return float("nan")
    for _ in range(20):
        mid = (lo + hi) / 2
        fm = f(mid)
        if np.sign(fm) == np.sign(flo):
            lo, flo = mid, fm
        else:
            hi = mid
    return (lo + hi) / 2


@functools.lru_cache(maxsize=256)
def _signal(spec: ImageSpec) -> dict:
    """:func:`~simtheory.diffusion.data.concept_signal` of a spec (cached: it renders 1024 images)."""
    return concept_signal(spec, n=256)


def _mean_se(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean over the first axis and its standard error (0 for a single seed)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 2:
        return x.mean(axis=0), np.zeros(x.shape[1:])
    return x.mean(axis=0), x.std(axis=0, ddof=1) / np.sqrt(len(x))


def _rise(steps, mse: np.ndarray, se: np.ndarray, C: np.ndarray, stronger: str) -> Swing:
    """Largest rise of the seed-mean MSE above its running minimum, both taken from the first checkpoint at
    or after ``CUT`` of the run (earlier checkpoints are the model learning to draw a shape at all)."""
    start = int(np.searchsorted(steps, CUT * steps[-1]))
    m = mse[start:]
    low_idx = np.array([int(np.argmin(m[: i + 1])) for i in range(len(m))]) + start
    rise = mse[start:] - mse[low_idx]
    peak = start + int(np.argmax(rise))
    low = int(low_idx[peak - start])
    corner = np.array([1.0, 0.0]) if stronger == "colour" else np.array([0.0, 1.0])  # blue-large / red-small
    at_peak = C[peak, :2]
    return Swing(
        float(rise[peak - start]),
        float(np.hypot(se[peak], se[low])),
        float(steps[peak]),
        float(steps[low]),
        tuple(float(x) for x in at_peak),
        bool(np.linalg.norm(at_peak - corner) < np.linalg.norm(at_peak - (1 - corner))),
    )


def _law(n: int, exp_fit, pow_fit) -> str:
    if n < DECAY_POINTS:
        return "too few points"
    exp_ok = exp_fit.slope < 0 and exp_fit.r2 >= DECAY_R2
    pow_ok = pow_fit.slope < 0 and pow_fit.r2 >= DECAY_R2
    if not (exp_ok or pow_ok):
        return "no decay"
    if exp_ok and exp_fit.r2 >= pow_fit.r2 + LAW_MARGIN:
        return "exponential"
    if pow_ok and pow_fit.r2 >= exp_fit.r2 + LAW_MARGIN:
        return "power law"
    return "indistinguishable"


def _last_hump(v: np.ndarray, start: int) -> int:
    """Index of the speed's last hump from ``start`` on: the last local maximum (over +-2 checkpoints) that
    reaches half the largest speed there. A concept learned after another makes a second hump; the slowdown
    is read on the last one's decline."""
    w = v[start:]
    top = w.max()
    humps = [i for i in range(len(w)) if w[i] >= 0.5 * top and w[i] == w[max(0, i - 2) : i + 3].max()]
    return start + (humps[-1] if humps else int(np.argmax(w)))


def _decay(steps, mse, mid, v, floor) -> Decay:
    """Exponential and power-law fits of the speed ``v`` over the decline of its last hump after the early
    cut (:func:`_last_hump`), until the speed falls below ``FLOOR_FACTOR * floor``."""
    start = _last_hump(v, min(int(np.searchsorted(steps, CUT * steps[-1])), len(v) - 1))
    below = np.flatnonzero(v[start:] < FLOOR_FACTOR * floor)
    end = start + int(below[0]) if below.size else len(v)
    window = slice(start, end)
    exp_fit = log_linear_fit(mid[window] / 1000.0, v[window])
    pow_fit = log_linear_fit(mid[window], v[window], log_x=True)
    n = end - start
    return Decay(
        float(mid[start]),
        float(mid[end - 1]) if n else float("nan"),
        n,
        -exp_fit.slope,
        exp_fit.r2,
        -pow_fit.slope,
        pow_fit.r2,
        float(floor),
        _law(n, exp_fit, pow_fit),
    )


def _over_prompt(rec: Records) -> np.ndarray | None:
    """Best over the over-prompts of the multiplicative accuracy of the OOD class: ``(K, C)``."""
    if rec.over_probs is None:
        return None
    return np.moveaxis(rec.over_probs.prod(axis=-1).mean(axis=-1).max(axis=2), 0, 1)


# --- analysis -----------------------------------------------------------------------------------


def _times(rec: Records, steps) -> dict:
    """Learning times per reading: held-out (counted only where the training prompts express the
    concept), Park's (held-out alone) and training prompts."""
    acc_h, acc_t = heldout_accuracy(rec), training_accuracy(rec)
    shown = gaussian_smooth(acc_t, SMOOTH_TIME, axis=1) > 0.5
    return {
        "heldout": learning_times(steps, acc_h * shown),
        "park": learning_times(steps, acc_h),
        "training": learning_times(steps, acc_t),
    }


def _compare_reading(rec: Records, steps) -> list[dict | None]:
    """Per member, the raw-weight DDIM reading's competence step and its end-of-run worst training class
    and OOD point (None where the records hold no comparison reading)."""
    if rec.probs_compare is None:
        return [None] * len(rec.members)
    acc = training_accuracy(rec, rec.probs_compare)
    times = learning_times(steps, acc)
    ood = rec.probs_compare[:, :, -1].mean(axis=2)  # (C, K, s)
    return [
        {
            "competent_step": _competent_step(times[k]),
            "final_worst_training": [float(x) for x in acc[k, -1, :2]],
            "final_ood_point": [float(x) for x in ood[-1, k, :2]],
        }
        for k in range(len(rec.members))
    ]


def _competent_step(tt) -> float:
    return float("inf") if any(c.censored for c in tt[:2]) else float(max(c.time for c in tt[:2]))


def members_of(rec: Records, signals: dict) -> list[Member]:
    """The per-member measures (learning times, competence gate, end-of-run numbers)."""
    steps = np.asarray(rec.steps, dtype=np.float64)
    times = _times(rec, steps)
    mse = mse_to_target(gaussian_smooth(ood_trajectory(rec), SMOOTH_TRAJ, axis=1))
    mult, id_acc, agree = multiplicative_accuracy(rec), in_distribution_accuracy(rec), probe_agreement(rec)
    compare = _compare_reading(rec, steps)
    out = []
    for k, (d, seed) in enumerate(rec.members):
        step = _competent_step(times["training"][k])
        out.append(
            Member(
                d,
                seed,
                signals[d],
                predicted_first(signals[d]),
                {reading: tt[k] for reading, tt in times.items()},
                bool(step <= GATE * steps[-1]),
                step,
                float(mse[k, -1]),
                float(mult[k, -1]),
                float(mult[k, -5:].mean()),
                float(id_acc[k, -1]),
                (float(agree[k, 0]), float(agree[k, 1])),
                compare[k],
            )
        )
    return out


def _time_means(members: list[Member], reading: str) -> dict:
    out = {}
    for p, name in enumerate(("colour", "size")):
        tt = np.array([m.times[reading][p].time for m in members])
        out[name] = float(tt.mean())
        out[f"{name}_se"] = float(_mean_se(tt)[1])
        out[f"{name}_censored"] = int(sum(m.times[reading][p].censored for m in members))
    return out


def _curves(rec: Records, ks: list, steps) -> tuple[dict, np.ndarray, np.ndarray]:
    """Seed means (and s.e.) of the smoothed OOD trajectory, its MSE and speed, over members ``ks``; the
    speed's noise floor from the training prompts. Returns the curves, the mean trajectory and MSE s.e."""
    traj = gaussian_smooth(trajectories(rec)[ks], SMOOTH_TRAJ, axis=2)  # (k, classes, C, s)
    Cm, Cse = _mean_se(traj[:, -1])
    mm, mse_se = _mean_se(mse_to_target(traj[:, -1]))
    mid, v = speed(steps, Cm)
    _, vt = speed(steps, traj[:, training_rows(rec.probs.shape[-1])].mean(axis=0))
    mult = gaussian_smooth(multiplicative_accuracy(rec)[ks].mean(axis=0), SMOOTH_TRAJ)
    curves = {
        "steps": steps.tolist(),
        "C": Cm.tolist(),
        "C_se": Cse.tolist(),
        "mse": mm.tolist(),
        "mse_se": mse_se.tolist(),
        "speed_mid": mid.tolist(),
        "speed": v.tolist(),
        "speed_floor": float(np.median(vt.mean(axis=0)[-10:])),
        "mult": mult.tolist(),
    }
    over = _over_prompt(rec)
    if over is not None:
        curves["mult_over_prompt"] = gaussian_smooth(over[ks].mean(axis=0), SMOOTH_TRAJ).tolist()
    return curves, Cm, mse_se


def _over_prompt_times(rec: Records, ks, steps) -> dict | None:
    over = _over_prompt(rec)
    if over is None:
        return None
    plain = sustained_crossing(
        steps, multiplicative_accuracy(rec)[ks].mean(axis=0), 0.5, sigma=SMOOTH_TIME, run=RUN
    )
    best = sustained_crossing(steps, over[ks].mean(axis=0), 0.5, sigma=SMOOTH_TIME, run=RUN)
    return {
        "plain_time": plain.time,
        "plain_censored": plain.censored,
        "best_time": best.time,
        "best_censored": best.censored,
        "mean_gain": float((over[ks] - multiplicative_accuracy(rec)[ks]).mean()),
    }


def delta_result(rec: Records, members: list[Member], d: float, *, fit: bool) -> DeltaResult:
    """The seed means at delta ``d`` over its gated members (all members if none passed the gate)."""
    steps = np.asarray(rec.steps, dtype=np.float64)
    at = [k for k, m in enumerate(members) if m.delta == d]
    ks = [k for k in at if members[k].competent] or at
    gated = members[ks[0]].competent
    sig = members[at[0]].signal
    stronger = "colour" if sig["colour"] > sig["size"] else "size"
    curves, Cm, mse_se = _curves(rec, ks, steps)
    mse = np.array(curves["mse"])
    acc = {"heldout": heldout_accuracy(rec), "training": training_accuracy(rec)}
    sim = None
    if fit:
        f = sim_fit(steps, Cm[:, :2])
        sim = {
            "a_colour": float(f["a"][0]),
            "a_size": float(f["a"][1]),
            "ratio": float(f["a"][0] / f["a"][1]),
        }
        sim["rms"] = f["rms"]
    return DeltaResult(
        delta=d,
        n_seeds=len(at),
        n_competent=sum(members[k].competent for k in at),
        gated=gated,
        signal=sig,
        predicted_first=predicted_first(sig),
        swing_scoring=swing_scoring(sig),
        stronger=stronger,
        swing=_rise(steps, mse, mse_se, Cm, stronger),
        decay=_decay(
            steps, mse, np.array(curves["speed_mid"]), np.array(curves["speed"]), curves["speed_floor"]
        ),
        times={r: _time_means([members[k] for k in ks], r) for r in READINGS},
        firsts={r: [members[k].first(r) for k in ks] if gated else [] for r in READINGS},
        final_accuracy={
            r: {
                name: float(gaussian_smooth(a[ks][:, :, p], SMOOTH_TIME, axis=1)[:, -1].mean())
                for p, name in enumerate(("colour", "size"))
            }
            for r, a in acc.items()
        },
        final_mult_accuracy=float(multiplicative_accuracy(rec)[ks, -1].mean()),
        curves=curves,
        sim=sim,
        over_prompt=_over_prompt_times(rec, ks, steps),
    )


def analyse(rec: Records, *, fit: bool = True) -> Analysis:
    """Per-member measures and the competence gate, per-delta seed means over the gated members, and the
    claims (:class:`~simtheory.claims.Claim`). :meth:`Analysis.to_dict` is JSON-ready."""
    from . import claims as _claims

    cfg = rec.config
    signals = {d: _signal(cfg.spec(d)) for d in cfg.deltas}
    members = members_of(rec, signals)
    per_delta = [delta_result(rec, members, d, fit=fit) for d in sorted(set(cfg.deltas))]
    crossing = signal_crossing(cfg.resolution, cfg.concepts, size_gap=cfg.size_gap, blur=cfg.blur)
    run_length = float(rec.steps[-1])
    return Analysis(members, per_delta, crossing, run_length, _claims.claims(per_delta, crossing, run_length))
