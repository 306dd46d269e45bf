"""One record for a claim checked against measurements: what was measured, what was required, the
verdict, what a trivial or wrong answer would have scored on the same check, and the paper figure
it concerns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

VERDICTS = ("pass", "fail", "inconclusive", "reported")


@dataclass(frozen=True)
class Claim:
    """A claim with its numbers.

    ``verdict`` is ``"pass"`` or ``"fail"`` against ``required``; ``"inconclusive"`` when the data cannot
    decide (too few points, nothing learned), never a silent pass; ``"reported"`` for a number shown
    without a threshold. ``base_rate`` says what a trivial or wrong answer scores on the same check
    (empty when none applies); ``details`` holds the per-setting numbers behind ``measured``, and ``value``
    the measured number itself where there is one (full precision; ``measured`` is its display).
    """

    name: str
    measured: str
    required: str
    verdict: str
    figure: str = ""
    base_rate: str = ""
    details: dict = field(default_factory=dict)
    value: float | None = None  # the measured number, where ``measured`` is one

    def __post_init__(self):
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict must be one of {VERDICTS}; got {self.verdict!r}")

    @property
    def failed(self) -> bool:
        return self.verdict == "fail"

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Claim:
        return cls(**d)


def verdict(passed: bool | None) -> str:
    """``"pass"``, ``"fail"``, or ``"inconclusive"`` for ``None``."""
    return "inconclusive" if passed is None else "pass" if passed else "fail"


def markdown_table(claims) -> str:
    """The claims as a Markdown table (claim, measured, required, verdict, base rate, paper figure)."""
    rows = [
        "| claim | measured | required | verdict | trivial / wrong answers | paper |",
        "|---|---|---|---|---|---|",
    ]
    for c in claims:
        cells = (c.name, c.measured, c.required, f"**{c.verdict}**", c.base_rate or "-", c.figure or "-")
        rows.append("| " + " | ".join(str(x).replace("|", "\\|") for x in cells) + " |")  # pipes escaped
    return "\n".join(rows)
