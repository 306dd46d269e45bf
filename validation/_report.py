"""Report objects shared by the validation modules, and their command-line runner."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from simtheory.claims import Claim


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
        self, name: str, value: float, bound: str, passed: bool, *, base_rate: str = "", figure: str = ""
    ) -> Claim:
        """Record a claim held to a threshold: ``value`` measured, ``bound`` required, pass or fail."""
        c = Claim(
            name,
            f"{float(value):.4g}",
            bound,
            "pass" if passed else "fail",
            figure,
            base_rate,
            value=float(value),
        )
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
    report = run(quick=not args.full, out=out)
    print(report)
    if out is not None:
        from simtheory.curves import atomic_write_text

        atomic_write_text(out / f"{report.name}.json", json.dumps(report.to_dict(), indent=2, default=float))
    return 0 if report.passed else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(1)
