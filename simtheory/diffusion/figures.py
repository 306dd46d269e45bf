"""Figures of diffusion runs: the paper's Figure 6 analogue, drawn from the result of
:func:`~simtheory.diffusion.analysis.analyse` (nothing is recomputed), and strips of generated images."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from .analysis import CUT, FLOOR_FACTOR
from .records import Records


def figure6(result, path, *, title: str = "") -> list[Path]:
    """The paper's Figure 6 analogue from the seed means of :func:`analyse` (it recomputes nothing): the OOD
    trajectory in concept space per delta (seed s.e. as error bars), the concept-space MSE with seed bands,
    the speed on log axes with its noise floor and exponential fit, the learning time of each concept against
    delta (held-out prompt, filled; training prompts, open; censored runs at the top edge), the multiplicative
    accuracy (and the best over-prompt, dashed) and the SIM fit's rate ratio. ``result``: an
    :class:`~simtheory.diffusion.analysis.Analysis`. PNG + PDF."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    per = result.deltas
    deltas = np.array([e.delta for e in per])
    norm = matplotlib.colors.Normalize(
        min(deltas.min(), deltas.max() - 0.1), max(deltas.max(), deltas.min() + 0.1)
    )
    cmap = matplotlib.colormaps["viridis"]
    fig, ax = plt.subplots(2, 3, figsize=(12, 7), constrained_layout=True)
    for e in per:
        _delta_curves(ax, e, cmap(norm(e.delta)))
    _label_curve_panels(ax, result.run_length)
    _learning_time_panel(ax[1, 0], result, deltas)
    if per and per[0].sim is not None:
        ax[1, 2].semilogy(deltas, [e.sim["ratio"] for e in per], "o-")
        ax[1, 2].axhline(1, color="0.5", lw=1)
    else:  # a quick analysis does not fit (the fit takes seconds per delta)
        ax[1, 2].text(0.5, 0.5, "not fitted\n(quick analysis; --sweep fits)", ha="center", va="center",
                      transform=ax[1, 2].transAxes, color="0.4")  # fmt: skip
    ax[1, 2].set(xlabel="delta", ylabel="a_colour / a_size", title="SIM fit: rate ratio")
    if title:
        fig.suptitle(title, fontsize=10)
    out = []
    for ext in (".png", ".pdf"):
        p = path.with_suffix(ext)
        fig.savefig(p, dpi=120)
        out.append(p)
    plt.close(fig)
    return out


def _delta_curves(ax, e, col) -> None:
    """One delta's seed-mean trajectory, MSE (seed band), speed (floor and fit) and P(blue) P(small)."""
    c = e.curves
    steps, C, Cse = np.array(c["steps"]), np.array(c["C"]), np.array(c["C_se"])
    lab = f"delta {e.delta:g}" + ("" if e.gated else " (no run passed the gate)")
    ax[0, 0].plot(C[:, 0], C[:, 1], "-", color=col, lw=1.2, label=lab)
    ax[0, 0].errorbar(
        C[::6, 0], C[::6, 1], xerr=Cse[::6, 0], yerr=Cse[::6, 1], fmt="none", color=col, lw=0.6, alpha=0.6
    )
    ax[0, 0].plot(C[-1, 0], C[-1, 1], "o", color=col, ms=4)
    x = np.maximum(steps, 1)
    mse, se = np.array(c["mse"]), np.array(c["mse_se"])
    ax[0, 1].semilogx(x, mse, color=col, lw=1.2, label=lab)
    ax[0, 1].fill_between(x, mse - se, mse + se, color=col, alpha=0.2, lw=0)
    mid, v = np.array(c["speed_mid"]), np.array(c["speed"])
    ax[0, 2].loglog(mid, np.maximum(v, 1e-6), color=col, lw=1.2)
    dec = e.decay
    ax[0, 2].axhline(FLOOR_FACTOR * dec.floor, color=col, ls=":", lw=0.8)
    if dec.n_points >= 3 and np.isfinite(dec.rate_per_1k):
        w = (mid >= dec.start_step) & (mid <= dec.end_step)
        j = np.flatnonzero(w)[0]
        ax[0, 2].loglog(
            mid[w], v[j] * np.exp(-dec.rate_per_1k * (mid[w] - mid[j]) / 1000), "--", color=col, lw=1
        )
    ax[1, 1].semilogx(x, c["mult"], color=col, lw=1.2)
    if "mult_over_prompt" in c:
        ax[1, 1].semilogx(x, c["mult_over_prompt"], "--", color=col, lw=1)


def _label_curve_panels(ax, run_length: float) -> None:
    ax[0, 0].plot([1], [1], "k*", ms=10)
    ax[0, 0].set(
        xlabel="P(blue)",
        ylabel="P(small)",
        xlim=(-0.02, 1.02),
        ylim=(-0.02, 1.02),
        title="OOD prompt (seed mean of the gated runs)",
    )
    ax[0, 0].text(0.02, 0.97, "red-small", va="top", fontsize=7)
    ax[0, 0].text(0.98, 0.03, "blue-large", ha="right", fontsize=7)
    ax[0, 0].legend(fontsize=7, loc="center left")
    ax[0, 1].axvline(max(CUT * run_length, 1), color="0.6", lw=0.8, ls=":")
    ax[0, 1].set(xlabel="step", ylabel="MSE to (1, 1)", title="MSE to (1, 1), +- seed s.e. (: early cut)")
    ax[0, 2].set(xlabel="step", ylabel="|dC/dt| per 1k steps", title="speed (--: exp. fit, : 2x floor)")
    ax[1, 1].set(
        xlabel="step", ylabel="P(blue) P(small)", title="P(blue) P(small), smoothed (--: over-prompt)"
    )


def _learning_time_panel(ax, result, deltas) -> None:
    per = result.deltas
    for name, mk, off in (("colour", "o", -0.006), ("size", "s", 0.006)):
        for reading, fill in (("heldout", True), ("training", False)):
            t = np.array([e.times[reading][name] for e in per])
            se = np.array([e.times[reading][f"{name}_se"] for e in per])
            ax.errorbar(
                deltas + off,
                t,
                yerr=se,
                fmt=mk + ("-" if fill else "--"),
                mfc=None if fill else "none",
                label=f"{name} ({'held-out' if fill else 'training prompts'})",
                ms=5,
                lw=1,
                capsize=2,
            )
    ax.axhline(result.run_length, color="0.6", lw=0.8, ls=":")
    cross = result.signal_crossing_delta
    if cross is not None and np.isfinite(cross):
        ax.axvline(cross, color="0.5", ls="--", lw=1, label="pixel signals equal")
    ax.set(
        xlabel="delta (colour signal)",
        ylabel="steps (dotted line: censored)",
        title="learning time per concept",
    )
    ax.legend(fontsize=6)


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
