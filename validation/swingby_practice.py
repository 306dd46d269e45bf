"""Swing-by in practice, from GD runs (paper Figures 2c/3, 11-14 and 17).

1. Four-layer linear network (PyTorch default init, as the paper's runs) at d = 2 vs d = 64,
   s = 2, mu = (1, 2), sigma = 0.05: the OOD loss is non-monotone far more often at d = 2
   (required: fraction(d = 2) >= fraction(d = 64) + 0.3).
2. Figure 17: in every run whose OOD loss is non-monotone, the training loss falls monotonically
   (tolerance 1e-9 relative per recorded step for GD, 1% of the initial loss for SGD). Full-batch GD at
   a stable learning rate cannot raise its own loss, so with GD (quick) this is reported, beside the
   same test applied to those runs' OOD loss; with SGD (full) it is required in >= 95% of those runs.
3. Reported, not required: three-layer linear at d = 3 (Figures 13/14), and two-layer linear and
   ReLU networks over a sweep of mu_1 (Figures 11/12): fraction of non-monotone OOD losses.
4. Theory overlay: the linear networks (four-, three- and two-layer) have a gradient-flow prediction
   from each run's own initial weights and training second moment A_n (``simulate.flow_limit``:
   ``deep_flow`` / ``untied_flow``; no closed form exists for default initialisation). Full-batch GD
   must agree with it on the kind of OOD curve (monotone or not) with a balanced accuracy (mean of the
   rates on non-monotone and on monotone runs) >= 0.9 over the linear runs (quick): a constant guess
   scores 0.5 whatever the share of monotone runs, and the flow of another run is shown beside it.
   With SGD (full) the flow is only the noiseless limit, so agreement is reported. The ReLU
   networks have no prediction. The figures draw the prediction dotted over each GD curve.
Quick: full-batch GD, 64 points per cluster. Full: 5000 points per cluster, SGD at batch 128 for
40 epochs, as the paper's runs. Truncated training sets (Figures 15/16): ``validation.truncated``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import simtheory as sim
from simtheory import paper, swingby, theory
from simtheory.simulate import Init, Model, flow_limit, train

from ._report import (
    Report,
    balanced_accuracy,
    kind_alternatives,
    main,
    train_loss_monotone,
    training_description,
)


def _flow(run_, members=None):
    """Predicted OOD loss (E', T) of the gradient-flow limit of the chosen members of a linear run."""
    W = flow_limit(run_, rtol=1e-7, atol=1e-10, members=members)
    return theory.ood_loss(run_.curves.task, W)


class _Agreement:
    """Collects, over linear runs, whether GD's OOD loss and its gradient-flow prediction are non-monotone."""

    def __init__(self):
        self.predicted, self.actual, self.gaps = [], [], []

    def add(self, run_, nonmono_gd) -> np.ndarray:
        pred = _flow(run_)
        nonmono_pred = swingby.ood_non_monotone(run_.curves, pred)
        self.last = (int(np.sum(nonmono_pred == nonmono_gd)), nonmono_gd.size)
        self.last_fraction = float(nonmono_pred.mean())  # predicted fraction of non-monotone runs
        self.predicted += list(nonmono_pred)
        self.actual += list(nonmono_gd)
        self.gaps += list(np.max(np.abs(pred - run_.curves.ood_loss), axis=1))
        return pred

    @property
    def total(self) -> int:
        return len(self.actual)

    @property
    def rate(self) -> float:
        """Plain agreement (accuracy)."""
        return float(np.mean(np.equal(self.predicted, self.actual))) if self.actual else float("nan")

    @property
    def balanced(self) -> float:
        return balanced_accuracy(self.predicted, self.actual)

    def alternatives(self) -> dict:
        return kind_alternatives(self.predicted, self.actual)


class _Runs(NamedTuple):
    """How every network here is trained: the paper's Figure 2c sizes (full) or full-batch GD (quick)."""

    E: int
    n: int
    batch: int | None
    steps: int
    how: str

    def train(self, task, model: Model):
        return train(
            task,
            model,
            Init("default"),
            lr=0.05,
            steps=self.steps,
            seeds=list(range(self.E)),
            n=self.n,
            batch_size=self.batch,
        )


def run(quick: bool = True, out=None) -> Report:
    """Swing-by at low dimension, training loss monotone while the OOD loss is not."""
    r = Report("swingby_practice", "non-monotone OOD loss at d = 2, not at d = 64; training loss monotone")
    # quick: full-batch GD; full: the paper's sizes (5000 points per cluster, SGD at batch 128, 40 epochs)
    sizes = paper.figure2c().sizes(quick)
    runs = _Runs(
        sizes.E,
        sizes.n,
        sizes.batch,
        sizes.n_steps(2 * sizes.n),
        training_description(0.05, sizes.n, sizes.batch),
    )
    agreement = _Agreement()
    _four_layer(r, runs, agreement, out)
    _three_layer(r, runs, agreement, out)
    _two_layer_sweeps(
        r, runs, [0.6, 1.0, 1.4] if quick else [0.5, 0.75, 1.0, 1.25, 1.5, 1.75], agreement, out
    )
    _agreement_claim(r, agreement, runs.batch)
    return r


def _four_layer(r: Report, runs: _Runs, agreement: _Agreement, out) -> None:
    """Four-layer linear at d = 2 vs d = 64: the non-monotone fractions, and the training loss of the
    non-monotone runs (Figures 2c/3 and 17)."""
    fractions, train_monotone, nonmono_total, ood_passes_total, panels, overlay = {}, 0, 0, 0, {}, {}
    for d in (2, 64):
        run_ = runs.train(paper.figure2c().task(d=d), Model("deep", (d, d, d)))
        nm = swingby.ood_non_monotone(run_.curves)
        fractions[d] = float(nm.mean())
        e = int(np.flatnonzero(nm)[0]) if nm.any() else 0
        label = f"d = {d}, seed {e}" + (" (non-monotone)" if nm.any() else " (all monotone)")
        panels[label] = run_.curves.select(e)
        if d == 2:  # every member; at d = 64 only the panel's (the flow of 16k parameters per member is slow)
            overlay[label] = (run_.curves.times, agreement.add(run_, nm)[e])
            agree2 = agreement.last
        else:
            overlay[label] = (run_.curves.times, _flow(run_, members=[e])[0])
        nonmono_total += int(nm.sum())
        train_monotone += int(np.sum(nm & train_loss_monotone(run_.curves.train_loss, runs.batch)))
        ood_passes_total += int(np.sum(nm & train_loss_monotone(run_.curves.ood_loss, runs.batch)))
    r.check(
        "non-monotone fraction d = 2 minus d = 64 (four-layer linear)",
        fractions[2] - fractions[64],
        ">= 0.3",
        lambda x: x >= 0.3,
        alternatives={"no effect of d (the same fraction at both)": 0.0},
    )
    r.metrics["non-monotone fraction, four-layer linear"] = fractions
    _training_loss_claim(r, train_monotone, nonmono_total, ood_passes_total, runs.batch)
    if out is not None:
        from simtheory import plotting

        paths = plotting.ood_loss_panels(
            panels,
            out / "four_layer_d2_vs_d64",
            overlay=overlay,
            overlay_label="gradient-flow prediction",
            title="Four-layer linear, default init: OOD (solid) vs training (dashed) loss",
        )
        r.figure(
            paths,
            f"Paper Figures 2c/3 and 17 analogue. Four-layer linear network (PyTorch default init), "
            f"mu = (1, 2), sigma = 0.05, {runs.E} seeds, {runs.how}. OOD loss non-monotone in "
            f"{fractions[2]:.0%} of runs at d = 2 and {fractions[64]:.0%} at d = 64; the training loss falls "
            f"monotonically in {train_monotone}/{nonmono_total} of the non-monotone runs. Dotted: the "
            f"gradient-flow prediction (deep_flow from each run's initial weights and A_n); at d = 2 it "
            f"predicts monotone vs not in {agree2[0]}/{agree2[1]} runs.",
        )


def _training_loss_claim(r: Report, train_monotone: int, nonmono_total: int, ood_passes: int, batch) -> None:
    frac_mono = train_monotone / max(nonmono_total, 1)
    name = f"training loss monotone in the {nonmono_total} runs with non-monotone OOD loss"
    alternatives = {"the same test on those runs' OOD loss": ood_passes / max(nonmono_total, 1)}
    if batch is None:  # full-batch GD at a stable learning rate cannot raise its own loss
        r.report(
            name,
            frac_mono,
            "reported: guaranteed for full-batch GD at a stable lr",
            alternatives=alternatives,
        )
    else:
        r.check(
            name,
            frac_mono if nonmono_total else float("nan"),
            ">= 0.95",
            lambda x: x >= 0.95,
            alternatives=alternatives,
        )


def _three_layer(r: Report, runs: _Runs, agreement: _Agreement, out) -> None:
    """Three-layer linear at d = 3 (Figures 13/14): reported."""
    three = runs.train(sim.SIMTask([1.0, 2.0], 0.05, d=3), Model("deep", (3, 3)))
    nm3 = swingby.ood_non_monotone(three.curves)
    pred3 = agreement.add(three, nm3)
    r.metrics["non-monotone fraction, three-layer linear d = 3"] = float(nm3.mean())
    if out is None:
        return
    from simtheory import plotting

    picks = list(np.flatnonzero(nm3)[:2]) + list(np.flatnonzero(~nm3)[:1])
    labels = {int(e): f"seed {e}" + (" (non-monotone)" if nm3[e] else " (monotone)") for e in picks}
    paths = plotting.ood_loss_panels(
        {labels[e]: three.curves.select(e) for e in labels},
        out / "three_layer_d3",
        title="Three-layer linear, d = 3, default init",
        overlay={labels[e]: (three.curves.times, pred3[e]) for e in labels},
        overlay_label="gradient-flow prediction",
    )
    r.figure(
        paths,
        f"Paper Figures 13/14 analogue. Three-layer linear network, d = 3, mu = (1, 2), sigma = 0.05, "
        f"default init, {runs.E} seeds, {runs.how}: OOD loss non-monotone in {nm3.mean():.0%} of runs. "
        f"Dotted: the gradient-flow prediction, which gets monotone vs not right in "
        f"{agreement.last[0]}/{agreement.last[1]} runs.",
    )


def _two_layer_sweeps(r: Report, runs: _Runs, mus: list, agreement: _Agreement, out) -> None:
    """Two-layer linear and ReLU networks over mu_1 (Figures 11/12): reported; the linear ones join the
    agreement with their gradient-flow prediction."""
    sweeps, untied_agree, predicted = {}, [0, 0], []
    for name, model in (
        ("two-layer linear", Model("untied", (16,))),
        ("two-layer ReLU", Model("mlp", (16,), bias=True)),
    ):
        row = {}
        for mu1 in mus:
            rr = runs.train(sim.SIMTask([mu1, 2.0], 0.05, d=2), model)
            nm = swingby.ood_non_monotone(rr.curves)
            row[mu1] = float(nm.mean())
            if model.kind == "untied":
                agreement.add(rr, nm)
                untied_agree = [a + b for a, b in zip(untied_agree, agreement.last)]
                predicted.append(agreement.last_fraction)
        r.metrics[f"non-monotone fraction, {name}, d = 2, by mu_1 (mu_2 = 2)"] = row
        sweeps[name] = [row[m] for m in mus]
    if out is None:
        return
    from simtheory import plotting

    sweeps["two-layer linear, gradient-flow prediction"] = predicted
    paths = plotting.sweep(
        mus,
        sweeps,
        out / "two_layer_sweeps",
        xlabel="mu_1 (mu_2 = 2, d = 2)",
        ylabel="fraction of runs with non-monotone OOD loss",
        logy=False,
        title=f"Two-layer networks, default init, {runs.E} seeds per point",
    )
    r.figure(
        paths,
        f"Paper Figures 11/12 analogue. Two-layer linear (W2 W1, hidden 16) and ReLU (hidden 16, "
        f"biases) networks, d = 2, mu = (mu_1, 2), sigma = 0.05, default init, {runs.E} seeds per point, "
        f"{runs.how}. The linear runs' gradient-flow prediction (untied_flow from each run's initial "
        f"weights and A_n; its fraction drawn as the third series) gets monotone vs not right in "
        f"{untied_agree[0]}/{untied_agree[1]} runs; "
        f"the ReLU networks have no prediction.",
    )


def _agreement_claim(r: Report, agreement: _Agreement, batch) -> None:
    name = (
        f"GD and its gradient-flow prediction agree on monotone vs not, balanced accuracy ({agreement.total} "
        f"linear runs, {int(np.sum(agreement.actual))} non-monotone)"
    )
    r.metrics["plain agreement on monotone vs not (always 'monotone' scores the monotone share)"] = (
        f"{agreement.rate:.3f} (always monotone: {1 - np.mean(agreement.actual):.3f})"
    )
    if batch is None:
        r.check(name, agreement.balanced, ">= 0.9", lambda x: x >= 0.9, alternatives=agreement.alternatives())
    else:  # SGD: the flow is only its noiseless limit
        r.report(
            name,
            agreement.balanced,
            "reported: with SGD the flow is only the noiseless limit",
            alternatives=agreement.alternatives(),
        )
    r.metrics["max |OOD loss(GD) - OOD loss(flow)|, median over linear runs"] = float(
        np.median(agreement.gaps)
    )


if __name__ == "__main__":
    raise SystemExit(main(run))
