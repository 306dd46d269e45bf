"""Figures. Plotting only reads :class:`~simtheory.Curves` and plain arrays; no theory lives here."""

from __future__ import annotations

from pathlib import Path

import numpy as np

# colour-blind-safe palette (Okabe & Ito)
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save(fig, stem) -> list[Path]:
    """Save ``fig`` as ``stem.png`` and ``stem.pdf``; returns both paths."""
    stem = Path(stem)
    stem.parent.mkdir(parents=True, exist_ok=True)
    out = []
    for ext in ("png", "pdf"):
        p = stem.with_suffix(f".{ext}")
        fig.savefig(p, dpi=150, bbox_inches="tight")
        out.append(p)
    _plt().close(fig)
    return out


def _readable_log_ticks(ax) -> None:
    """A log axis spanning under 3 decades gets plain ticks at 1, 2 and 5 per decade and no minor labels:
    matplotlib's default labels every minor tick there, and on a narrow figure the labels overlap."""
    from matplotlib import ticker

    for axis, lim in ((ax.xaxis, ax.get_xlim()), (ax.yaxis, ax.get_ylim())):
        if axis.get_scale() != "log" or min(lim) <= 0 or np.log10(max(lim) / min(lim)) >= 3:
            continue
        axis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
        axis.set_major_formatter(ticker.FuncFormatter(lambda v, _: f"{v:g}"))
        axis.set_minor_formatter(ticker.NullFormatter())


def _finish(fig, ax, stem, title: str, ncol: int = 1) -> list[Path]:
    _readable_log_ticks(ax)
    ax.legend(fontsize=7, ncol=ncol)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return save(fig, stem)


def ood_loss_panels(
    panels: dict,
    stem,
    *,
    title: str = "",
    marks: dict | None = None,
    overlay: dict | None = None,
    overlay_label: str = "prediction",
) -> list[Path]:
    """One panel per entry ``{label: Curves}`` (single setting each): OOD and training loss
    against time (log x), with turning points ``marks[label]`` (list of (t, value)) marked and a
    predicted OOD loss ``overlay[label] = (t, loss)`` drawn dotted over the measured one."""
    plt = _plt()
    n = len(panels)
    fig, axes = plt.subplots(1, n, figsize=(3.4 * n, 2.8), squeeze=False)
    for ax, (label, c) in zip(axes[0], panels.items()):
        t = c.times
        sel = t > 0
        ax.plot(t[sel], c.ood_loss[sel], color=PALETTE[0], label="OOD loss")
        ax.plot(t[sel], c.train_loss[sel], color=PALETTE[1], ls="--", label="train loss")
        if overlay and label in overlay:
            tp, lp = (np.asarray(x) for x in overlay[label])
            keep = tp > 0
            ax.plot(tp[keep], lp[keep], color="black", ls=":", lw=1.3, label=overlay_label)
        for tm, v in (marks or {}).get(label, []):
            ax.plot([tm], [v], "o", ms=4, color=PALETTE[3])
        ax.set_xscale("log")
        ax.set_xlabel(
            "t (" + ("gradient-flow" if c.convention == "gradient-flow" else c.convention) + " time)"
        )
        ax.set_title(label, fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("loss")
    axes[0][0].legend(fontsize=7)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return save(fig, stem)


def entries(c, stem, *, title: str = "") -> list[Path]:
    """Entries of W over time for one setting (diagonal solid, off-diagonal dashed)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    t = c.times
    sel = t > 0
    s = c.task.s
    k = 0
    for i in range(s):
        for j in range(i, s):
            ax.plot(
                t[sel],
                c.W[sel, i, j],
                ls="-" if i == j else "--",
                color=PALETTE[k % len(PALETTE)],
                label=f"$w_{{{i + 1}{j + 1}}}$",
            )
            k += 1
    ax.set_xscale("log")
    ax.set_xlabel("t")
    return _finish(fig, ax, stem, title, ncol=2)


def sweep(
    x, series: dict, stem, *, xlabel: str, ylabel: str, title: str = "", logy: bool = True, logx: bool = False
) -> list[Path]:
    """Line plot (with markers) of several named series over one swept parameter ``x``."""
    return lines(
        {label: (x, y) for label, y in series.items()},
        stem,
        xlabel=xlabel,
        ylabel=ylabel,
        title=title,
        logx=logx,
        logy=logy,
        style="o-",
    )


def lines(
    series: dict,
    stem,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    logx: bool = True,
    logy: bool = False,
    style: str = "-",
) -> list[Path]:
    """Several named curves ``{label: (x, y)}``, each on its own x grid (x <= 0 dropped on a log axis)."""
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    for k, (label, (x, y)) in enumerate(series.items()):
        x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
        keep = x > 0 if logx else np.ones(x.shape, dtype=bool)
        ax.plot(x[keep], y[keep], style, color=PALETTE[k % len(PALETTE)], label=label)
    if logx:
        ax.set_xscale("log")
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    return _finish(fig, ax, stem, title)


def compositions(c, stem, *, title: str = "") -> list[Path]:
    """Loss at every composition v in {0,1}^s over time (one line per v, coloured by |v|)."""
    plt = _plt()
    V = c.task.compositions()
    L = c.composition_losses()
    fig, ax = plt.subplots(figsize=(4.2, 3.0))
    sel = c.times > 0
    for m, v in enumerate(V):
        ax.plot(
            c.times[sel],
            L[sel, m],
            color=PALETTE[int(v.sum()) % len(PALETTE)],
            lw=1,
            label=f"|v|={int(v.sum())}" if m == int(np.argmax(V.sum(1) == v.sum())) else None,
        )
    ax.set_xscale("log")
    ax.set_xlabel("t")
    ax.set_ylabel("loss at x(v)")
    return _finish(fig, ax, stem, title)


#: figure widths in inches for a two-column paper (one column, full width)
WIDTHS = {"one-column": 3.25, "two-column": 6.75}


def paper_figure(c, stem, *, width: str = "one-column") -> list[Path]:
    """Paper-style vector figure of one setting's OOD and training loss: width in inches from
    :data:`WIDTHS`, 8-9 pt fonts, the colour-blind-safe palette; saved as PDF (and PNG)."""
    if width not in WIDTHS:
        raise ValueError(f"width must be one of {sorted(WIDTHS)}, got {width!r}")
    if c.W.ndim != 3:
        raise ValueError("paper_figure draws one setting: select one with Curves.select(i)")
    plt = _plt()
    w = WIDTHS[width]
    with plt.rc_context(
        {
            "font.size": 8,
            "axes.labelsize": 8,
            "legend.fontsize": 7,
            "xtick.labelsize": 7,
            "ytick.labelsize": 7,
            "pdf.fonttype": 42,
            "axes.prop_cycle": plt.cycler(color=PALETTE),
        }
    ):
        fig, ax = plt.subplots(figsize=(w, w * 0.62))
        sel = c.times > 0
        ax.plot(c.times[sel], c.ood_loss[sel], label="OOD loss")
        ax.plot(c.times[sel], c.train_loss[sel], ls="--", label="training loss")
        ax.set_xscale("log")
        ax.set_xlabel("time $t$ (" + c.convention + ")")
        ax.set_ylabel("loss")
        ax.legend(frameon=False)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.tight_layout(pad=0.3)
        return save(fig, stem)


def phase_diagram(result: dict, stem, *, title: str = "") -> list[Path]:
    """Four panels of :func:`simtheory.swingby.phase_diagram`'s result: the fraction of non-monotone OOD
    losses and their median bump, from the numerical flow and from the closed form, over (axis value, init
    scale); and ``stem.csv`` with every cell's numbers (what the figure plots)."""
    plt = _plt()
    values, scales = result["values"], result["scales"]
    fig, axes = plt.subplots(2, 2, figsize=(7.5, 5.6), sharex=True, sharey=True)
    label = {"ratio": "a_strong / a_weak", "d": "dimension d"}[result["axis"]]
    # one colour scale per row, so that the flow's panel and the closed form's compare cell by cell
    bumps = np.concatenate([np.ravel(result[k]["bump"]) for k in ("flow", "approx")])
    bump_max = float(np.nanmax(bumps)) if np.isfinite(bumps).any() else 1.0
    for col, key in enumerate(("flow", "approx")):
        for row, (what, cmap, vmax) in enumerate((("fraction", "viridis", 1.0), ("bump", "magma", bump_max))):
            ax = axes[row, col]
            data = np.asarray(result[key][what], dtype=float)
            im = ax.imshow(data, origin="lower", aspect="auto", cmap=cmap, vmin=0.0, vmax=vmax)
            for (i, j), val in np.ndenumerate(data):
                if np.isfinite(val):  # dark text on the bright end of both colour maps
                    colour = "k" if val > 0.6 * vmax else "w"
                    ax.text(j, i, f"{val:.2g}", ha="center", va="center", fontsize=6, color=colour)
            ax.set_xticks(range(len(scales)), [f"{s:g}" for s in scales], fontsize=7)
            ax.set_yticks(range(len(values)), [f"{v:g}" for v in values], fontsize=7)
            name = "numerical flow" if key == "flow" else "closed form (composite)"
            ax.set_title(
                f"{'fraction non-monotone' if what == 'fraction' else 'median bump'}: {name}", fontsize=8
            )
            fig.colorbar(im, ax=ax, fraction=0.046)
            if row == 1:
                ax.set_xlabel("init scale", fontsize=8)
            if col == 0:
                ax.set_ylabel(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    paths = save(fig, stem)
    from .files import atomic_write_text

    lines = [f"{result['axis']},scale,flow_fraction,flow_bump,approx_fraction,approx_bump"]
    for i, v in enumerate(values):
        for j, s in enumerate(scales):
            lines.append(
                f"{v:g},{s:g},{result['flow']['fraction'][i, j]:.6g},{result['flow']['bump'][i, j]:.6g},"
                f"{result['approx']['fraction'][i, j]:.6g},{result['approx']['bump'][i, j]:.6g}"
            )
    paths.append(atomic_write_text(Path(stem).with_suffix(".csv"), "\n".join(lines) + "\n"))
    return paths
