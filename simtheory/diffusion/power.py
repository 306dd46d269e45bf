"""Power and false-positive rate of the diffusion claims, on synthetic sweeps.

Each replicate is a sweep of the given configuration (its deltas, seeds, checkpoint grid, generations
per prompt) drawn by :func:`~simtheory.diffusion.synthetic.synthetic_records` and passed through
:func:`~simtheory.diffusion.analysis.analyse` unchanged. A claim's *power* is how often it passes when
the paper's effect is there at the size Park et al.'s figures show
(:data:`~simtheory.diffusion.synthetic.PARK`); its *false-positive rate* how often it passes on runs
without that effect:

* the order claims and the colour-time trend: :data:`NO_ORDER` (both concepts learned around the same time
  at every delta: the order is a coin flip per seed, the colour time does not depend on delta);
* the swing-by: :data:`~simtheory.diffusion.synthetic.NO_SWING` (the held-out trajectory goes straight to
  the composition);
* the slowdown: :data:`~simtheory.diffusion.synthetic.POWER_TAIL` (the last approach is a power law).

``python -m validation.diffusion --power [--reps N]`` prints the table for the CPU sweep's setting (the
GPU sweep's with ``--gpu``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from simtheory.measures import wilson

from . import analysis
from .synthetic import NO_SWING, PARK, POWER_TAIL, Effect, synthetic_records
from .train import RunConfig

#: both concepts learned around 0.4 of the run at every delta (no order, no trend)
NO_ORDER = replace(
    PARK, times={d: (0.3, 0.3) for d in (0.1, 0.137, 0.2, 0.247, 0.358, 0.4, 0.468, 0.579, 0.689, 0.8)}
)

#: (claim prefix, the effect without it, its name): the false-positive rate is read on that effect; the
#: swing-by is also read on runs three times as volatile between checkpoints (a real run's reading swings
#: more than the Park-like model's)
NULLS = (
    ("(i) learning order on the held-out prompt", "no order", NO_ORDER),
    ("(i) learning order on the training prompts", "no order", NO_ORDER),
    ("(i) the seed-mean colour learning time", "no order", NO_ORDER),
    ("(ii) swing-by", "no swing-by", NO_SWING),
    ("(ii) swing-by", "no swing-by, 3x volatility", replace(NO_SWING, volatility=3 * NO_SWING.volatility)),
    ("(iii) slowdown", "power-law tail", POWER_TAIL),
)


@dataclass(frozen=True)
class Power:
    """One claim's pass rate with the effect (``power``) and without it (``false_positive``), with 95%
    Wilson intervals, over ``reps`` synthetic sweeps each."""

    claim: str
    null: str
    power: float
    power_ci: tuple
    false_positive: float
    false_positive_ci: tuple
    reps: int

    def to_dict(self) -> dict:
        return {
            "claim": self.claim,
            "null": self.null,
            "power": self.power,
            "power_ci": list(self.power_ci),
            "false_positive": self.false_positive,
            "false_positive_ci": list(self.false_positive_ci),
            "reps": self.reps,
        }

    @property
    def adequate(self) -> bool:
        """Power >= 80% at <= 5% false positives (point estimates)."""
        return self.power >= 0.8 and self.false_positive <= 0.05


def pass_counts(config: RunConfig, effect: Effect, reps: int, seed: int = 0) -> dict[str, int]:
    """How often each claim (by the prefix before its colon) passes over ``reps`` synthetic sweeps."""
    counts: dict[str, int] = {}
    for r in range(reps):
        res = analysis.analyse(synthetic_records(config, effect, seed=seed * 100_003 + r), fit=False)
        for c in res.claims:
            key = c.name.split(":")[0]
            counts[key] = counts.get(key, 0) + (c.verdict == "pass")
    return counts


def power_table(config: RunConfig, reps: int = 200, seed: int = 0) -> list[Power]:
    """:class:`Power` of every claim in :data:`NULLS` for ``config`` (``reps`` sweeps per effect)."""
    with_effect = pass_counts(config, PARK, reps, seed)
    nulls = {}
    for _, name, effect in NULLS:
        if name not in nulls:
            nulls[name] = pass_counts(config, effect, reps, seed + 1)
    out = []
    for claim, null, _ in NULLS:
        key = next(k for k in with_effect if k.startswith(claim))
        k1, k0 = with_effect[key], nulls[null][key]
        out.append(Power(key, null, k1 / reps, wilson(k1, reps), k0 / reps, wilson(k0, reps), reps))
    return out


def markdown(table: list[Power], config: RunConfig) -> str:
    """The table as Markdown, with the setting it was simulated for."""
    n_seeds = len(config.seeds)
    rows = [
        f"Synthetic sweeps: deltas {', '.join(f'{d:g}' for d in config.deltas)} x {n_seeds} seeds, "
        f"{len(config.checkpoints())} checkpoints, {config.n_generate} generations per prompt; "
        f"{table[0].reps} replicates per effect.",
        "",
        "| claim | power (Park-like effect) | false positives (without it) | null |",
        "|---|---|---|---|",
    ]
    for p in table:
        rows.append(
            f"| {p.claim} | {p.power:.0%} ({p.power_ci[0]:.0%}-{p.power_ci[1]:.0%}) | "
            f"{p.false_positive:.0%} ({p.false_positive_ci[0]:.0%}-{p.false_positive_ci[1]:.0%}) | {p.null} |"
        )
    return "\n".join(rows)
