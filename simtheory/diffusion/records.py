"""The stored measurements of diffusion runs: :class:`Records` read from a run directory (:func:`load`) and
merged across runs that differ only in their seeds (:func:`merge`)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .train import RunConfig, read_config


@dataclass(frozen=True)
class Records:
    config: RunConfig
    steps: np.ndarray  # (C,)
    probs: np.ndarray  # (C, K, classes, n, s) CNN probe P(value 1) per sample
    analytic: np.ndarray  # (C, K, classes, n, 2)
    ood_images: np.ndarray  # (C, K, N_SHOW, 3, H, W) uint8
    train_loss: np.ndarray  # (C, K) mean loss since the previous checkpoint
    wall_s: np.ndarray  # (C,)
    over_probs: np.ndarray | None = (
        None  # (C, K, n_over, n, s): the OOD class at exaggerated colours (vector prompt)
    )
    disc: np.ndarray | None = (
        None  # (C, K, classes, n) probe P(a shape is drawn); None: runs before the disc head
    )
    probs_compare: np.ndarray | None = None  # (C, K, classes, n_c, s) raw weights read with DDIM (comparison)
    disc_compare: np.ndarray | None = None  # (C, K, classes, n_c)

    @property
    def members(self):
        return self.config.members


def load(run_dir) -> Records:
    run_dir = Path(run_dir)
    cfg = read_config(run_dir)
    if not (run_dir / "records.npz").is_file():
        raise ValueError(f"{run_dir} has no records.npz yet (train the run first)")
    with np.load(run_dir / "records.npz", allow_pickle=False) as f:
        return Records(
            cfg,
            f["step"],
            f["probs"],
            f["analytic"],
            f["ood_images"],
            f["train_loss"],
            f["wall_s"],
            *(
                f[k] if k in f.files else None
                for k in ("over_probs", "disc", "probs_compare", "disc_compare")
            ),
        )


def merge(records) -> Records:
    """One :class:`Records` from runs that differ only in their seeds (e.g. a sweep split over
    processes or machines): the members are put in the order of the combined configuration."""
    from dataclasses import replace

    records = list(records)
    if not records:
        raise ValueError("merge needs at least one Records")
    first = records[0]
    seeds = tuple(sorted({s for r in records for s in r.config.seeds}))
    for r in records[1:]:
        if replace(r.config, seeds=first.config.seeds) != first.config:
            raise ValueError("merged runs must have the same configuration apart from seeds")
        if not np.array_equal(r.steps, first.steps):
            raise ValueError("merged runs must have the same checkpoint steps (finish or resume them first)")
    where = {}
    for i, r in enumerate(records):
        for k, m in enumerate(r.members):
            if m in where:
                raise ValueError(f"member (delta, seed) {m} appears in more than one run")
            where[m] = (i, k)
    cfg = replace(first.config, seeds=seeds)
    missing = [m for m in cfg.members if m not in where]
    if missing:
        raise ValueError(f"merged runs do not cover every (delta, seed): missing {missing}")

    def gather(name, axis):
        return np.stack(
            [np.take(getattr(records[where[m][0]], name), where[m][1], axis=axis) for m in cfg.members],
            axis=axis,
        )

    return Records(
        cfg,
        first.steps,
        gather("probs", 1),
        gather("analytic", 1),
        gather("ood_images", 1),
        gather("train_loss", 1),
        np.max([r.wall_s for r in records], axis=0),
        *(
            gather(name, 1) if getattr(first, name) is not None else None
            for name in ("over_probs", "disc", "probs_compare", "disc_compare")
        ),
    )
