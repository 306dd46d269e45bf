"""One record for a claim checked against measurements: what was measured, what was required, the
verdict, what a trivial or wrong answer would have scored on the same check, and the paper figure
it concerns."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

import numpy as np

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
    alternatives: dict = field(default_factory=dict)  # trivial / wrong answer -> its score on the same check
    also_met_by: list = field(default_factory=list)  # the alternatives that meet ``required`` (a defect)

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


def held(
    name: str,
    value: float,
    required: str,
    accepts,
    *,
    alternatives: dict | None = None,
    figure: str = "",
    base_rate: str = "",
    details: dict | None = None,
) -> Claim:
    """A claim whose ``value`` is held to ``required`` by the predicate ``accepts`` (value -> bool), with
    each alternative's score held to the same predicate.

    The verdict is ``"pass"`` or ``"fail"`` by ``accepts(value)``, or ``"inconclusive"`` when the value is
    nan (undecidable) or an alternative is accepted as well (the check does not discriminate: listed in
    ``also_met_by``). ``base_rate`` defaults to the alternatives and their scores.
    """
    if not callable(accepts):
        raise TypeError(f"accepts must be a predicate (value -> bool); got {type(accepts).__name__}")
    alternatives = {k: float(v) for k, v in (alternatives or {}).items()}
    also = [k for k, v in alternatives.items() if not np.isnan(v) and bool(accepts(v))]
    value = float(value)
    if np.isnan(value):
        v = "inconclusive"
    elif also:
        v = "inconclusive" if accepts(value) else "fail"
    else:
        v = "pass" if accepts(value) else "fail"
    if not base_rate and alternatives:
        base_rate = "; ".join(f"{k}: {_fmt(x)}" for k, x in alternatives.items())
        if also:
            base_rate += f" (also met by: {', '.join(also)}: the check does not discriminate)"
    return Claim(
        name,
        _fmt(value),
        required,
        v,
        figure,
        base_rate,
        details=dict(details or {}),
        value=value,
        alternatives=alternatives,
        also_met_by=also,
    )


def reported(
    name: str, value: float, why: str, *, alternatives: dict | None = None, figure: str = ""
) -> Claim:
    """A number shown without a threshold (verdict ``"reported"``), with ``why`` it is not held to one
    (e.g. a trivial answer scores as well) and the alternatives' scores beside it."""
    alternatives = {k: float(v) for k, v in (alternatives or {}).items()}
    base = "; ".join(f"{k}: {_fmt(x)}" for k, x in alternatives.items())
    return Claim(
        name, _fmt(value), why, "reported", figure, base, value=float(value), alternatives=alternatives
    )


def _fmt(x: float) -> str:
    return "nan" if x != x else f"{x:.4g}"


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
