"""Concept-space analysis of diffusion runs (the paper's Figure 6 and beyond), the SIM fit, and
the three claims checked with numbers.

All measures are computed from the stored per-sample probe outputs (``records.npz``); nothing is
re-generated. Trajectories are the mean probe output over the generations of a prompt;
``smooth`` (a centred moving average over checkpoints) is applied before times are read off,
because single checkpoints swing widely (design notes).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .data import ImageSpec, concept_signal
from .train import RunConfig


@dataclass(frozen=True)
class Records:
    config: RunConfig
    steps: np.ndarray        # (C,)
    probs: np.ndarray        # (C, K, classes, n, s) CNN probe P(value 1) per sample
    analytic: np.ndarray     # (C, K, classes, n, 2)
    ood_images: np.ndarray   # (C, K, N_SHOW, 3, H, W) uint8
    train_loss: np.ndarray   # (C, K) mean loss since the previous checkpoint
    wall_s: np.ndarray       # (C,)

    @property
    def members(self):
        return self.config.members


def load(run_dir) -> Records:
    run_dir = Path(run_dir)
    cfg = RunConfig.from_dict(json.loads((run_dir / "config.json").read_text()))
    with np.load(run_dir / "records.npz") as f:
        return Records(cfg, f["step"], f["probs"], f["analytic"], f["ood_images"], f["train_loss"], f["wall_s"])


def merge(records) -> Records:
    """One :class:`Records` from runs that differ only in their seeds (e.g. a sweep split over
    processes or machines): the members are put in the order of the combined configuration."""
    from dataclasses import replace

    records = list(records)
    if not records:
        raise ValueError("merge needs at least one Records")
    first = records[0]
    seeds = tuple(sorted({s for r in records for s in r.config.seeds}))
    for r in records[1:]:
        if replace(r.config, seeds=first.config.seeds) != first.config:
            raise ValueError("merged runs must have the same configuration apart from seeds")
        if not np.array_equal(r.steps, first.steps):
            raise ValueError("merged runs must have the same checkpoint steps (finish or resume them first)")
    where = {}
    for i, r in enumerate(records):
        for k, m in enumerate(r.members):
            if m in where:
                raise ValueError(f"member (delta, seed) {m} appears in more than one run")
            where[m] = (i, k)
    cfg = replace(first.config, seeds=seeds)
    missing = [m for m in cfg.members if m not in where]
    if missing:
        raise ValueError(f"merged runs do not cover every (delta, seed): missing {missing}")

    def gather(name, axis):
        return np.stack([np.take(getattr(records[where[m][0]], name), where[m][1], axis=axis) for m in cfg.members], axis=axis)

    return Records(cfg, first.steps, gather("probs", 1), gather("analytic", 1), gather("ood_images", 1),
                   gather("train_loss", 1), np.max([r.wall_s for r in records], axis=0))


def smooth(y: np.ndarray, window: int = 3, axis: int = -2) -> np.ndarray:
    """Centred moving average along ``axis`` (the window shrinks at the ends)."""
    y = np.moveaxis(np.asarray(y, dtype=np.float64), axis, 0)
    h = window // 2
    out = np.stack([y[max(0, i - h): i + h + 1].mean(axis=0) for i in range(len(y))])
    return np.moveaxis(out, 0, axis)


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
    from .data import classes, training_rows

    s = rec.probs.shape[-1]
    all_c = classes(s)
    rows = training_rows(s)
    right = ((rec.probs[:, :, rows] > 0.5) == all_c[rows][None, None, :, None, :]).all(axis=-1)
    return np.moveaxis(right.mean(axis=(2, 3)), 0, 1)


def concept_accuracy(rec: Records) -> np.ndarray:
    """Per concept, how well the training prompts express it: the mean probability of the right
    value, over the generations of each training class, minimum over those classes: ``(K, C, s)``.

    This reads concept learning off the in-distribution prompts, where the concepts settle; the OOD
    prompt's coordinates can keep swinging long after (design notes)."""
    from .data import classes, training_rows

    s = rec.probs.shape[-1]
    all_c = classes(s)
    rows = training_rows(s)
    target = all_c[rows][None, None, :, None, :]
    p = rec.probs[:, :, rows]
    right = np.where(target == 1, p, 1 - p).mean(axis=3)  # (C, K, classes, s)
    return np.moveaxis(right.min(axis=2), 0, 1)


def probe_agreement(rec: Records, last: int = 5) -> np.ndarray:
    """Fraction of generations (all prompts, last ``last`` checkpoints) on which the CNN and the
    analytic probe give the same hard label, per concept (colour, size): ``(K, 2)``."""
    a = rec.probs[-last:, ..., :2] > 0.5
    b = rec.analytic[-last:] > 0.5
    return (a == b).mean(axis=(0, 2, 3))


def _first(times) -> str:
    if not np.isfinite(times[:2]).any():
        return "none"
    tc, ts = (x if np.isfinite(x) else np.inf for x in times[:2])
    return "colour" if tc < ts else "size" if ts < tc else "tie"


def speed(steps: np.ndarray, C: np.ndarray):
    """``|dC/dt|`` between checkpoints (per 1k steps) at the midpoints: ``(mid (C-1,), speed (..., C-1))``."""
    steps = np.asarray(steps, dtype=np.float64)
    dt = np.diff(steps) / 1000.0
    v = np.linalg.norm(np.diff(C, axis=-2), axis=-1) / dt
    return (steps[1:] + steps[:-1]) / 2, v


def fit_exponential_decay(t: np.ndarray, v: np.ndarray, start_frac: float = 0.5) -> tuple[float, float]:
    """Least-squares fit ``log v = c - rate t`` over ``t >= start_frac max(t)``: ``(rate, R^2)``.

    ``rate`` is per 1k steps; a positive rate with a high R^2 is a straight decline on a log-y plot
    (exponential deceleration)."""
    t, v = np.asarray(t, float), np.asarray(v, float)
    keep = (t >= start_frac * t.max()) & (v > 0)
    if keep.sum() < 3:
        return float("nan"), float("nan")
    x, y = t[keep] / 1000.0, np.log(v[keep])
    slope, intercept = np.polyfit(x, y, 1)
    resid = y - (slope * x + intercept)
    ss = np.sum((y - y.mean()) ** 2)
    return float(-slope), float(1 - np.sum(resid**2) / ss) if ss > 0 else float("nan")


def learning_times(steps: np.ndarray, C: np.ndarray, threshold: float = 0.8) -> np.ndarray:
    """Per concept, the first checkpoint step after which the (smoothed) coordinate stays at or
    above ``threshold``; NaN if it never settles. ``C``: (C, s) -> (s,)."""
    steps = np.asarray(steps, dtype=np.float64)
    out = np.full(C.shape[-1], np.nan)
    for p in range(C.shape[-1]):
        above = C[:, p] >= threshold
        if above[-1]:
            below = np.flatnonzero(~above)
            out[p] = steps[below[-1] + 1] if len(below) else steps[0]
    return out


def non_monotone(steps, mse, rel_tol: float = 0.1) -> tuple[bool, float]:
    """Whether the (smoothed) MSE has an interior maximum that rises by more than ``rel_tol`` of the
    curve's range (a swing-by: fall, rise, fall), and the largest such rise."""
    from simtheory.swingby import turning_points

    tps = turning_points(np.asarray(steps, float), np.asarray(mse, float), rel_tol=rel_tol)
    rises, low = [], float(mse[0])
    for tp in tps:
        if tp.kind == "max":
            rises.append(tp.value - low)
        else:
            low = tp.value
    return bool(rises), float(max(rises, default=0.0))


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
        a = np.exp(z[:s])
        U = np.zeros((s, s))
        U[tri] = z[s:]
        return a, U @ U.T

    def curve(z):
        a, W0 = unpack(z)
        W = symmetric_flow(np.diag(a), W0 + 1e-9 * np.eye(s), t)
        return W.sum(axis=-1)

    def resid(z):
        return (curve(z) - C).ravel()

    best = None
    horizon = max(t[-1], 1e-9)
    for k in range(n_starts):
        U0 = np.eye(s) * np.sqrt(0.1 * (k + 1))
        z0 = np.concatenate([np.full(s, np.log(10.0 / horizon)), U0[tri]])
        try:
            sol = least_squares(resid, z0, bounds=(np.r_[np.full(s, np.log(1e-3 / horizon)), np.full(len(z0) - s, -2.0)],
                                                     np.r_[np.full(s, np.log(1e4 / horizon)), np.full(len(z0) - s, 2.0)]),
                                max_nfev=200)
        except (ValueError, np.linalg.LinAlgError, FloatingPointError):
            continue
        if best is None or sol.cost < best.cost:
            best = sol
    if best is None:
        raise RuntimeError("SIM fit failed from every start")
    a, W0 = unpack(best.x)
    fitted = curve(best.x)
    return {"a": a, "W0": W0, "init_scale": float(np.linalg.norm(W0)), "rms": float(np.sqrt(np.mean((fitted - C) ** 2))),
            "curve": fitted}


def signal_crossing(resolution: int, concepts=("colour", "size"), lo: float = 0.05, hi: float = 0.8, *,
                    size_gap: float = 0.1) -> float:
    """The delta at which the pixel-space colour signal equals the size signal (bisection); NaN if
    the colour signal stays on one side in [lo, hi]."""
    def f(d):
        sig = concept_signal(ImageSpec(resolution, d, concepts, size_gap=size_gap), n=256)
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


#: thresholds of the claims, fixed before the first sweep was run
LEARNED = 0.8          # a concept is learned when its smoothed OOD coordinate stays >= 0.8
SWING_RISE = 0.1       # a swing-by rise must exceed 10% of the MSE curve's range
SEPARATED = 3.0 ** 0.5  # signal ratio above which the theory predicts a swing-by (a ratio > 3)
DECAY_R2 = 0.5         # exponential-decay fit quality needed


def analyse(rec: Records, *, fit: bool = True) -> dict:
    """Every per-member measure and the three claims, as plain numbers (JSON-ready)."""
    cfg = rec.config
    steps = rec.steps
    C = smooth(ood_trajectory(rec))                     # (K, C, s)
    mse = mse_to_target(C)                              # (K, C)
    mid, v = speed(steps, C)
    acc_id = smooth(concept_accuracy(rec))              # (K, C, s)
    mult = multiplicative_accuracy(rec)
    agree = probe_agreement(rec)
    signals = {d: concept_signal(ImageSpec(cfg.resolution, d, cfg.concepts, size_gap=cfg.size_gap), n=256) for d in cfg.deltas}
    members = []
    for k, (d, seed) in enumerate(rec.members):
        times = learning_times(steps, C[k], LEARNED)
        times_id = learning_times(steps, acc_id[k], LEARNED)
        nm, rise = non_monotone(steps, mse[k], SWING_RISE)
        rate, r2 = fit_exponential_decay(mid, v[k])
        sig = signals[d]
        ratio = max(sig["colour"], sig["size"]) / min(sig["colour"], sig["size"])
        m = {"delta": d, "seed": seed, "time_colour_id": float(times_id[0]), "time_size_id": float(times_id[1]),
             "learned_first_id": _first(times_id), "time_colour": float(times[0]), "time_size": float(times[1]),
             "learned_first": _first(times), "predicted_first": "colour" if sig["colour"] > sig["size"] else "size",
             "signal_colour": sig["colour"], "signal_size": sig["size"], "predicted_swingby": bool(ratio > SEPARATED),
             "mse_non_monotone": nm, "mse_rise": rise, "final_mse": float(mse[k, -1]),
             "final_mult_accuracy": float(mult[k, -1]), "mult_accuracy_last5": float(mult[k, -5:].mean()),
             "probe_agreement_colour": float(agree[k, 0]), "probe_agreement_size": float(agree[k, 1]),
             "final_in_distribution_accuracy": float(in_distribution_accuracy(rec)[k, -1]),
             "decay_rate_per_1k": rate, "decay_r2": r2}
        if fit:
            f = sim_fit(steps, C[k])
            m.update({"sim_a_colour": float(f["a"][0]), "sim_a_size": float(f["a"][1]),
                      "sim_ratio": float(f["a"][0] / f["a"][1]), "sim_init_scale": f["init_scale"], "sim_rms": f["rms"]})
        members.append(m)
    return {"members": members, "claims": claims(members),
            "signal_crossing_delta": signal_crossing(cfg.resolution, cfg.concepts, size_gap=cfg.size_gap)}


def _order(members: list[dict], key: str) -> dict:
    """Learning order read by ``key`` against the signal's prediction; per-delta majority for the flip."""
    decided = [m for m in members if m[key] in ("colour", "size")]
    agree = [m[key] == m["predicted_first"] for m in decided]
    by_delta: dict = {}
    for m in decided:
        by_delta.setdefault(m["delta"], []).append(m[key])
    majority = {d: max(set(v), key=v.count) if v.count("colour") != v.count("size") else "tie" for d, v in by_delta.items()}
    lo, hi = (min(majority), max(majority)) if majority else (None, None)
    return {"n_decided": len(decided), "n_members": len(members),
            "agreement": float(np.mean(agree)) if agree else float("nan"),
            "first_by_delta": {f"{d:g}": v for d, v in sorted(majority.items())},
            "flips": bool(majority) and "tie" not in (majority[lo], majority[hi]) and majority[lo] != majority[hi]}


def claims(members: list[dict]) -> dict:
    """The three claims of the issue, with their numbers (not pass/fail verdicts alone).

    Order is read on the training prompts (``order``: where concepts settle) and on the OOD prompt
    (``order_ood``: the paper's reading, often undecided because its coordinates keep swinging)."""
    pred_sw = [m for m in members if m["predicted_swingby"]]
    pred_mono = [m for m in members if not m["predicted_swingby"]]
    fits = [m for m in members if np.isfinite(m["decay_r2"])]
    out = {
        "order": _order(members, "learned_first_id"),
        "order_ood": _order(members, "learned_first"),
        "swingby": {"n_predicted": len(pred_sw),
                    "non_monotone_where_predicted": float(np.mean([m["mse_non_monotone"] for m in pred_sw])) if pred_sw else float("nan"),
                    "non_monotone_elsewhere": float(np.mean([m["mse_non_monotone"] for m in pred_mono])) if pred_mono else float("nan")},
        "deceleration": {"n_fitted": len(fits),
                         "fraction_exponential": float(np.mean([m["decay_rate_per_1k"] > 0 and m["decay_r2"] >= DECAY_R2 for m in fits])) if fits else float("nan"),
                         "median_r2": float(np.median([m["decay_r2"] for m in fits])) if fits else float("nan"),
                         "median_rate_per_1k": float(np.median([m["decay_rate_per_1k"] for m in fits])) if fits else float("nan")},
    }
    sims = [m for m in members if "sim_ratio" in m]
    if len({m["delta"] for m in sims}) >= 2:
        from scipy.stats import spearmanr

        rho = spearmanr([m["delta"] for m in sims], [m["sim_ratio"] for m in sims]).statistic
        out["sim_fit"] = {"spearman_delta_vs_ratio": float(rho), "median_rms": float(np.median([m["sim_rms"] for m in sims]))}
    return out


def figure6(rec: Records, result: dict, path) -> list[Path]:
    """The paper's Figure 6 analogue and beyond, one 2x3 figure (PNG + PDF)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    steps = rec.steps
    C = smooth(ood_trajectory(rec))
    mse = mse_to_target(C)
    mult = multiplicative_accuracy(rec)
    mid, v = speed(steps, C)
    deltas = np.array([d for d, _ in rec.members])
    norm = matplotlib.colors.Normalize(min(deltas.min(), deltas.max() - 0.1), max(deltas.max(), deltas.min() + 0.1))
    cmap = matplotlib.colormaps["viridis"]
    fig, ax = plt.subplots(2, 3, figsize=(12, 7), constrained_layout=True)
    for k, (d, seed) in enumerate(rec.members):
        col = cmap(norm(d))
        ax[0, 0].plot(C[k, :, 0], C[k, :, 1], "-", color=col, lw=1, alpha=0.8)
        ax[0, 0].plot(C[k, -1, 0], C[k, -1, 1], "o", color=col, ms=4)
        ax[0, 1].semilogx(np.maximum(steps, 1), mse[k], color=col, lw=1)
        ax[0, 2].semilogx(np.maximum(steps, 1), mult[k], color=col, lw=1)
        ax[1, 0].semilogy(mid, np.maximum(v[k], 1e-6), color=col, lw=1)
        m = result["members"][k]
        if np.isfinite(m["decay_rate_per_1k"]):
            t = mid[mid >= 0.5 * mid.max()]
            j = np.argmin(np.abs(mid - t[0]))
            ax[1, 0].semilogy(t, max(v[k, j], 1e-6) * np.exp(-m["decay_rate_per_1k"] * (t - t[0]) / 1000), ":", color=col, lw=1)
    ax[0, 0].set(xlabel="P(blue)", ylabel="P(small)", xlim=(-0.02, 1.02), ylim=(-0.02, 1.02),
                 title="OOD prompt in concept space")
    ax[0, 0].plot([1], [1], "k*", ms=10)
    ax[0, 1].set(xlabel="step", ylabel="MSE to (1, 1)", title="concept-space MSE")
    ax[0, 2].set(xlabel="step", ylabel="P(blue) P(small)", title="multiplicative accuracy")
    ax[1, 0].set(xlabel="step", ylabel="|dC/dt| per 1k steps", title="speed (dotted: exponential fit)")
    ms = result["members"]
    for key, marker, label in (("time_colour", "o", "colour"), ("time_size", "s", "size")):
        ax[1, 1].plot([m["delta"] for m in ms], [m[key] for m in ms], marker, label=label, alpha=0.8)
    cross = result.get("signal_crossing_delta")
    if cross is not None and np.isfinite(cross):
        ax[1, 1].axvline(cross, color="0.5", ls="--", lw=1, label="signals equal")
    ax[1, 1].set(xlabel="delta", ylabel=f"step learned (>= {LEARNED})", title="time to learn each concept")
    ax[1, 1].legend(fontsize=8)
    if "sim_ratio" in ms[0]:
        ax[1, 2].semilogy([m["delta"] for m in ms], [m["sim_ratio"] for m in ms], "o")
        ax[1, 2].axhline(1, color="0.5", lw=1)
    ax[1, 2].set(xlabel="delta", ylabel="a_colour / a_size", title="SIM fit: rate ratio")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm, cmap), ax=ax[0, 0], label="delta", fraction=0.046, pad=0.02)
    out = []
    for ext in (".png", ".pdf"):
        p = path.with_suffix(ext)
        fig.savefig(p, dpi=120)
        out.append(p)
    plt.close(fig)
    return out


def image_strip(rec: Records, path, member: int = 0, n_ckpt: int = 10) -> Path:
    """OOD generations of one member at ``n_ckpt`` checkpoints (rows: checkpoints)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = np.unique(np.linspace(0, len(rec.steps) - 1, n_ckpt).round().astype(int))
    imgs = rec.ood_images[idx, member]  # (n, N_SHOW, 3, H, W)
    grid = np.concatenate([np.concatenate(list(row.transpose(0, 2, 3, 1)), axis=1) for row in imgs], axis=0)
    fig, ax = plt.subplots(figsize=(imgs.shape[1] * 0.6, len(idx) * 0.6))
    ax.imshow(grid, interpolation="nearest")
    ax.set_yticks((np.arange(len(idx)) + 0.5) * imgs.shape[-1], [str(s) for s in rec.steps[idx]])
    ax.set_xticks([])
    d, s = rec.members[member]
    ax.set_title(f"OOD prompt, delta = {d:g}, seed {s}", fontsize=8)
    path = Path(path).with_suffix(".png")
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    return path
