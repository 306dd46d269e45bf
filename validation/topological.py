"""Topological order (paper Figure 7): losses at all 2^s compositions over time, and how often
``loss(u) <= loss(v)`` holds for u below v on the hypercube (u <= v entry-wise, u != v).

Symmetric model, s = d = 4, mu = (1, 2, 3, 4), sigma = 0.05, near-isotropic small init. The
fraction is measured on the GD run and on the prediction (``symmetric_flow`` with A_n); the two
must agree within 0.02, and the measured fraction is reported (the theory's claim is that it is
high: compositions further up the hypercube are learned later).
"""

from __future__ import annotations

import itertools

import numpy as np

import simtheory as sim
from simtheory import paper
from simtheory.curves import Curves
from simtheory.simulate import Init, Model, train

from ._report import Report, main


def order_fraction(losses: np.ndarray, comps: np.ndarray) -> float:
    """Fraction of (time, u < v) pairs with loss(u) <= loss(v); losses (T, 2^s)."""
    pairs = [
        (i, j)
        for i, j in itertools.permutations(range(len(comps)), 2)
        if np.all(comps[i] <= comps[j]) and not np.array_equal(comps[i], comps[j])
    ]
    ok = sum(np.count_nonzero(losses[:, i] <= losses[:, j] + 1e-12) for i, j in pairs)
    return ok / (len(pairs) * losses.shape[0])


def run(quick: bool = True, out=None) -> Report:
    """Topological order of composition losses, GD vs theory."""
    r = Report("topological", "loss(u) <= loss(v) for u below v, measured on GD and on the theory")
    setting = paper.figure7()
    sizes = setting.sizes(quick)
    task = setting.task()
    U0 = 0.01 * (np.eye(4) + 0.1 * np.random.default_rng(0).normal(size=(4, 4)))
    lr = sizes.lrs[0]
    steps = int(round(12.0 / lr))
    run_ = train(
        task,
        Model("symmetric"),
        Init("given", arrays=(U0,)),
        lr=lr,
        steps=steps,
        seeds=[0],
        n=sizes.n,
    )
    c = run_.curves.select(0)
    comps = task.compositions()
    gd_frac = order_fraction(c.composition_losses(), comps)
    pred = Curves.from_W(
        task, c.times, sim.symmetric_flow(run_.A_n[0], U0 @ U0.T, c.times), model="symmetric"
    )
    th_frac = order_fraction(pred.composition_losses(), comps)
    r.metrics["fraction_gd"] = gd_frac
    r.metrics["fraction_theory"] = th_frac
    r.check(
        "|fraction(GD) - fraction(theory)|", abs(gd_frac - th_frac), "<= 0.02", abs(gd_frac - th_frac) <= 0.02
    )
    r.check("fraction of (time, u < v) with loss(u) <= loss(v), GD", gd_frac, ">= 0.9", gd_frac >= 0.9)
    if out is not None:
        from simtheory import plotting

        paths = plotting.compositions(
            c, out / "topological", title=f"GD, s = 4: order holds in {gd_frac:.1%}"
        )
        r.figure(
            paths,
            f"Paper Figure 7 analogue from GD: losses at all 2^4 compositions on the hypercube, symmetric "
            f"model, mu = (1, 2, 3, 4), sigma = 0.05, U0 = 0.01 (I + 0.1 noise), lr {lr}. loss(u) <= loss(v) "
            f"for u below v holds in {gd_frac:.1%} of (time, pair) cases for GD and {th_frac:.1%} for "
            f"symmetric_flow with A_n.",
        )
    return r


if __name__ == "__main__":
    raise SystemExit(main(run))
