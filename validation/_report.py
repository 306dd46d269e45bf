"""Report objects shared by the validation modules, and their command-line runner."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from simtheory.claims import Claim


@dataclass(frozen=True)
class Check:
    """One claim with its measured value and the tolerance it is held to."""

    name: str
    value: float
    bound: str
    passed: bool


@dataclass
class Report:
    name: str
    claim: str
    checks: list[Check] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    figures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    captions: dict[str, str] = field(default_factory=dict)
    claims: list[Claim] = field(default_factory=list)  # the paper's claims with verdicts (pass/fail/inconclusive)

    def figure(self, paths, caption: str) -> None:
        """Record a figure (the PNG of ``paths``) with a caption that states its parameters and the
        measured agreement (the report prints it under the figure)."""
        png = str(paths[0])
        self.figures.append(png)
        self.captions[png] = caption

    def check(self, name: str, value: float, bound: str, passed: bool) -> Check:
        c = Check(name, float(value), bound, bool(passed))
        self.checks.append(c)
        return c

    @property
    def passed(self) -> bool:
        """Every check passes and no claim fails (an inconclusive claim is not a failure, nor a pass)."""
        return bool(self.checks) and all(c.passed for c in self.checks) and not any(c.failed for c in self.claims)

    def __str__(self) -> str:
        lines = [f"{self.name}: {'PASS' if self.passed else 'FAIL'} - {self.claim}"]
        for c in self.checks:
            lines.append(f"  [{'pass' if c.passed else 'FAIL'}] {c.name}: {c.value:.6g} (required {c.bound})")
        for c in self.claims:
            lines.append(f"  [{c.verdict}] {c.name}: {c.measured} (required {c.required}; trivial/wrong: {c.base_rate or '-'})")
        for k, v in self.metrics.items():
            lines.append(f"  {k}: {v}")
        lines += [f"  note: {n}" for n in self.notes]
        lines += [f"  figure: {f}" for f in self.figures]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"name": self.name, "claim": self.claim, "passed": self.passed,
                "checks": [c.__dict__ for c in self.checks], "claims": [c.to_dict() for c in self.claims],
                "metrics": self.metrics,
                "figures": self.figures, "captions": self.captions, "notes": self.notes}


def main(run, argv=None) -> int:
    """Command-line entry of a validation module: prints the report, exits 0 on pass, 1 on fail."""
    p = argparse.ArgumentParser(description=(run.__doc__ or "").strip().splitlines()[0] if run.__doc__ else None)
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
