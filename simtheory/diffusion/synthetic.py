"""Synthetic diffusion records with known effects: what the claims' statistics see when the paper's
effects are there (power) and when they are not (false positives).

:func:`synthetic_records` writes :class:`~simtheory.diffusion.records.Records` -- the same arrays a trained
sweep stores, per checkpoint, member, prompt and generation -- from a generative model of what Park et
al.'s figures show, so :func:`simtheory.diffusion.analysis.analyse` runs on them unchanged:

* every member learns each concept at a time drawn around :attr:`Effect.times` (fractions of the run,
  log-normal seed jitter); the probability that a generation shows a learned concept's prompted value is
  logistic in steps (:attr:`Effect.width`), 1/2 before;
* a shape is drawn at all only from :attr:`Effect.disc_time` on; before, the probe reads chance
  (the disc head);
* on the held-out prompt, the concept learned second is first pulled *away* from its prompted value
  while the first one is learned (the trajectory swings toward the first concept's training corner,
  :attr:`Effect.swing_depth` of the way from chance: 1 reaches the corner), and reaches it when it is
  learned itself; ``swing_depth = 0`` is the monotone alternative;
* the last approach to the composition is logistic (exponential in time) or, with ``tail="power"``, a power
  law ``1 - 1/2 (1 + (t - t_w)/width)^-1`` (the alternative for the slowdown claim);
* each checkpoint's prompt probability gets a logit-normal kick (:attr:`Effect.volatility`: the
  checkpoint-to-checkpoint swings of a real run) and each generation is a Bernoulli draw read by a probe
  that is right with probability :attr:`Effect.probe_confidence`.

:data:`PARK` holds the effect sizes read off Park et al.'s figures (see its docstring).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
from scipy.special import expit, logit

from .data import classes
from .records import Records
from .train import RunConfig

#: Park's 20k-step run mapped onto a run long enough for the competence gate: his slowest learning time
#: (colour at delta 0.1, extrapolated: 0.95 of his run) falls at 0.55 of ours
PARK_SCALE = 0.58


def park_times(delta: float) -> tuple[float, float]:
    """Learning times ``(colour, size)`` as fractions of the run, read off Park et al.'s learning-time figure
    (sep_size 0.4, 20k steps): size at about 6-7.5k steps whatever the colour difference (0.34 of his run),
    colour from about 15k steps at delta 0.2 to 3.5k at 0.8, log-linear in between (0.75 -> 0.175 of his
    run) and extended to lower deltas the same way; both scaled by :data:`PARK_SCALE` (a run long enough to
    learn both: the competence gate's premise). The ratios, which decide the order, are Park's; the two
    cross near delta 0.45, as in his figure."""
    colour = 0.75 * (0.175 / 0.75) ** ((delta - 0.2) / 0.6)
    return float(PARK_SCALE * colour), PARK_SCALE * 0.34


@dataclass(frozen=True)
class Effect:
    """A generative model of a sweep's probe outputs (module docstring). Times and widths are fractions of
    the run length."""

    times: dict = field(default_factory=dict)  # delta -> (colour, size) learning times; default park_times
    swing_depth: float = 0.8
    tail: str = "logistic"
    jitter: float = 0.2
    width: float = 0.04
    disc_time: float = 0.03
    volatility: float = 0.3
    probe_confidence: float = 0.97

    def learning_times(self, delta: float) -> tuple[float, float]:
        return tuple(self.times.get(delta, park_times(delta)))


#: Park-like effects (:func:`park_times`; the held-out trajectory swings 80% of the way to the first concept's
#: training corner, as his low-delta trajectories do before turning to the composition)
PARK = Effect()
#: the same runs without a swing-by (the held-out trajectory goes straight to the composition)
NO_SWING = replace(PARK, swing_depth=0.0)
#: the same runs whose last approach slows down as a power law, not exponentially
POWER_TAIL = replace(PARK, tail="power")


def _approach(t, t0, width, tail: str, last: bool):
    """Probability that a concept learned at ``t0`` is shown: logistic, or for the last concept with
    ``tail="power"`` logistic up to ``t0`` and then a power-law approach."""
    x = expit((t - t0) / width)
    if tail == "power" and last:
        x = np.where(t <= t0, x, 1 - 0.5 / (1 + (t - t0) / width))
    return x


def synthetic_records(config: RunConfig, effect: Effect = PARK, seed: int = 0) -> Records:
    """Records of ``config``'s members (its deltas, seeds, checkpoint grid and ``n_generate``) drawn from
    ``effect``; ``seed`` makes the replicate (the same seed gives the same arrays)."""
    rng = np.random.default_rng(seed)
    L = float(config.steps)
    steps = config.checkpoints()
    t = steps.astype(np.float64)
    K, C, n = len(config.members), len(steps), config.n_generate
    all_c = classes(2)
    probs = np.empty((C, K, len(all_c), n, 2))
    disc = np.empty((C, K, len(all_c), n))
    w = effect.width * L
    for k, (delta, _) in enumerate(config.members):
        base = np.array(effect.learning_times(delta)) * L
        when = base * np.exp(effect.jitter * rng.standard_normal(2))  # (colour, size)
        first, second = (0, 1) if when[0] <= when[1] else (1, 0)
        learned = np.stack(
            [_approach(t, when[p], w, effect.tail, last=(p == second)) for p in range(2)], axis=1
        )  # (C, 2): P(a generation shows the prompted value), learned half
        shown = 0.5 + 0.5 * learned
        for j, row in enumerate(all_c):
            q = np.where(row == 1, shown, 1 - shown)  # P(value 1) on this prompt, (C, 2)
            if j == len(all_c) - 1:  # held-out prompt: the second concept swings to the first's corner first
                pulled = 0.5 * (1 - effect.swing_depth * learned[:, first])
                q[:, second] = (1 - learned[:, second]) * pulled + learned[:, second]
            q = expit(logit(np.clip(q, 1e-4, 1 - 1e-4)) + effect.volatility * rng.standard_normal(q.shape))
            value = rng.random((C, n, 2)) < q[:, None, :]
            read = np.where(value, effect.probe_confidence, 1 - effect.probe_confidence)
            drawn = rng.random((C, n)) < expit((t - effect.disc_time * L) / (0.01 * L))[:, None]
            probs[:, k, j] = 0.5 + drawn[..., None] * (read - 0.5)
            disc[:, k, j] = np.where(drawn, 0.99, 0.01)
    return Records(
        config,
        steps,
        probs.astype(np.float32),
        probs.astype(np.float32),  # the analytic probe reads the same
        np.zeros((C, K, 1, 3, config.resolution, config.resolution), np.uint8),
        np.ones((C, K), np.float32),
        np.arange(C, dtype=np.float64),
        disc=disc.astype(np.float32),
    )
