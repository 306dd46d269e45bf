"""Report objects shared by the validation modules, and their command-line runner."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simtheory.claims import Claim, held, reported


def training_description(lr: float, n: int, batch) -> str:
    """How the runs were trained, for captions: full-batch GD or the paper's SGD (40 epochs)."""
    if batch is None:
        return f"full-batch GD at lr {lr:g}, {n} points per cluster"
    return f"SGD at lr {lr:g}, batch {batch}, 40 epochs of {n} points per cluster"


def train_loss_monotone(train_loss, batch) -> np.ndarray:
    """``(E,)`` whether each training-loss curve ``(E, T)`` never rises: by more than 1e-9 relative per record
    for full-batch GD (``batch=None``), by more than 1% of the initial loss for SGD (minibatch noise)."""
    from simtheory.measures import never_rises

    return (
        never_rises(train_loss, rel_initial=1e-2)
        if batch is not None
        else never_rises(train_loss, rel_step=1e-9)
    )


def balanced_accuracy(predicted, actual) -> float:
    """Mean of the true-positive and true-negative rates of boolean ``predicted`` against ``actual``;
    nan when ``actual`` holds one class only (a constant guess scores 0.5 whatever the class balance)."""
    predicted, actual = np.asarray(predicted, bool).ravel(), np.asarray(actual, bool).ravel()
    if actual.all() or not actual.any():
        return float("nan")
    return float((np.mean(predicted[actual]) + np.mean(~predicted[~actual])) / 2)


def kind_alternatives(predicted, actual) -> dict:
    """What trivial or wrong predictions of monotone vs not score in :func:`balanced_accuracy`: a constant
    guess of either kind, and the right predictor paired with the wrong run (shifted by one member)."""
    predicted = np.asarray(predicted, bool).ravel()
    return {
        "always monotone": balanced_accuracy(np.zeros_like(predicted), actual),
        "always non-monotone": balanced_accuracy(np.ones_like(predicted), actual),
        "another run's prediction": balanced_accuracy(np.roll(predicted, 1), actual),
    }


def reversed_rates(A, s: int) -> np.ndarray:
    """``A`` (..., d, d) with its first ``s`` coordinates (the concept axes) in reverse order: the theory
    with its rates reversed, a wrong prediction that claims have to tell apart from the right one."""
    A = np.asarray(A)
    idx = np.r_[np.arange(s)[::-1], np.arange(s, A.shape[-1])]
    return A[..., idx, :][..., idx]


def turning_point_score(actual, reference) -> float:
    """Max relative difference of the turning points' times and values of two
    :class:`~simtheory.swingby.Analysis` (GD against a prediction); ``inf`` when the sequences of kinds
    differ or the reference has none (a claim about turning points needs at least one)."""
    from simtheory.swingby import turning_point_gap

    same, dt, dv = turning_point_gap(actual, reference)
    return max(dt, dv) if same and reference.turning_points else float("inf")


def symmetric_alternatives(task, A, W0, t, gd, s: int | None = None) -> dict:
    """Scores (:func:`turning_point_score`) of wrong predictions of the symmetric model's OOD loss against
    the GD analysis ``gd``: the flow at the paper's half speed (dW/dt = V), the flow with the concepts'
    rates reversed, and a monotone prediction (no turning point)."""
    import simtheory as sim
    from simtheory.swingby import classify

    s = task.s if s is None else s

    def score(W):
        return turning_point_score(gd, classify(t, sim.ood_loss(task, W)))

    return {
        "theory at half speed (paper's dW/dt = V)": score(sim.symmetric_flow(A, W0, t, convention="paper")),
        "theory with reversed rates": score(sim.symmetric_flow(reversed_rates(A, s), W0, t)),
        "a monotone prediction": float("inf"),
    }


@dataclass
class Report:
    """A validation's result: its claims (:class:`~simtheory.claims.Claim`: each with its measured number,
    what it is held to and a verdict), metrics, figures with captions, and notes."""

    name: str
    claim: str
    claims: list[Claim] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)

    def figure(self, paths, caption: str) -> None:
        """Record a figure (the PNG of ``paths``) with a caption that states its parameters and the
        measured agreement (the report prints it under the figure)."""
        png = str(paths[0])
        self.figures.append(png)
        self.captions[png] = caption

    def check(
        self,
        name: str,
        value: float,
        bound: str,
        accepts,
        *,
        alternatives: dict | None = None,
        base_rate: str = "",
        figure: str = "",
    ) -> Claim:
        """Record a claim held to a threshold: ``value`` measured, ``bound`` required, ``accepts`` the
        predicate that decides it (value -> bool), and the scores of the trivial or wrong ``alternatives``
        on the same check (:func:`simtheory.claims.held`: a check that one of them passes is not a pass)."""
        c = held(name, value, bound, accepts, alternatives=alternatives, base_rate=base_rate, figure=figure)
        self.claims.append(c)
        return c

    def report(self, name: str, value: float, why: str, *, alternatives: dict | None = None) -> Claim:
        """Record a number without a threshold, saying ``why`` (e.g. a trivial answer scores as well)."""
        c = reported(name, value, why, alternatives=alternatives)
        self.claims.append(c)
        return c

    @property
    def passed(self) -> bool:
        """At least one claim passes and none fails (an inconclusive claim is neither)."""
        return any(c.verdict == "pass" for c in self.claims) and not any(c.failed for c in self.claims)

    def __str__(self) -> str:
        lines = [f"{self.name}: {'PASS' if self.passed else 'FAIL'} - {self.claim}"]
        for c in self.claims:
            measured = f"{c.value:.6g}" if c.value is not None else c.measured
            extra = f"; trivial/wrong: {c.base_rate}" if c.base_rate else ""
            lines.append(f"  [{c.verdict}] {c.name}: {measured} (required {c.required}{extra})")
        for k, v in self.metrics.items():
            lines.append(f"  {k}: {v}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  figure: {f}" for f in self.figures]
        return "\n".join(lines)

    @classmethod
    def from_dict(cls, d: dict) -> "Report":
        """The report :meth:`to_dict` wrote (``passed`` is recomputed from the claims)."""
        return cls(
            name=d["name"],
            claim=d["claim"],
            claims=[Claim.from_dict(c) for c in d.get("claims", [])],
            metrics=dict(d.get("metrics", {})),
            figures=list(d.get("figures", [])),
            notes=list(d.get("notes", [])),
            captions=dict(d.get("captions", {})),
        )

    def to_dict(self) -> dict:
        return {
            "name": self.name,
            "claim": self.claim,
            "passed": self.passed,
            "claims": [c.to_dict() for c in self.claims],
            "metrics": self.metrics,
            "figures": self.figures,
            "captions": self.captions,
            "notes": self.notes,
        }


def main(run, argv=None) -> int:
    """Command-line entry of a validation module: prints the report, exits 0 on pass, 1 on fail."""
    p = argparse.ArgumentParser(
        description=(run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else None
    )
    p.add_argument("--full", action="store_true", help="the full-size version (slow)")
    p.add_argument("--out", help="directory for figures and report.json")
    args = p.parse_args(argv)
    out = Path(args.out) if args.out else None
    from simtheory.simulate import progress_bars

    with progress_bars(sys.stderr.isatty()):  # a bar per GD run where someone watches
        report = run(quick=not args.full, out=out)
    print(report)
    if out is not None:
        from simtheory.files import atomic_write_text

        atomic_write_text(out / f"{report.name}.json", json.dumps(report.to_dict(), indent=2, default=float))
    return 0 if report.passed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(1)
