"""Text-conditioned diffusion model in concept space (paper Section 5, Figure 6).

Quick (default tests): a 0.24M-parameter U-Net, 1000 steps at 16x16 and delta = 0.689 — the
pipeline runs end to end, the probe passes its 99% gate, the loss falls and the colour word steers
generation. Full (``--full``, slow, about 26 minutes on 2 CPU cores): the CPU default (16x16,
0.49M-parameter U-Net, batch 64, 12k steps) at delta = 0.6; it must generate the training classes
and compose the OOD class (blue-small). ``--sweep`` runs the CPU sweep of the claims (4 deltas
spanning the pixel-signal crossing x 3 seeds, :func:`sweep_config`; the paper's 6 x 3 on a GPU with
``--gpu``); ``--vector`` the vector-prompt ablation with the over-prompting test. Every report
carries the Figure 6 analogue (seed means) and the claims table.

Claims (:func:`simtheory.diffusion.analysis.claims`; thresholds fixed in code before the first
sweep), each pass / fail / inconclusive with its numbers and what a trivial answer would score:
(i) the concept with the larger pixel-space signal is learned first (held-out prompt, Park's
reading, and training prompts) and the colour learning time falls as delta rises; (ii) the
seed-mean concept-space MSE rises again where the theory predicts a swing-by (a_strong > 3
a_weak), with the trajectory near the stronger concept's training corner; (iii) the speed
|dC/dt| decays exponentially after the last turning point; and the SIM fit's rate ratio rises
with delta. Disagreements with the paper are reported, not hidden.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from simtheory import sweep
from simtheory.claims import markdown_table
from simtheory.diffusion import analysis, figures
from simtheory.diffusion.model import NetConfig
from simtheory.diffusion.train import RunConfig, cpu_config, paper_config, train

from ._report import Report, main

#: what guessing scores on a claim that needs colour and size both right (two balanced binary concepts)
CHANCE_BOTH = {"chance (colour and size right by guess)": 0.25}


def quick_config(**changes):
    """The smoke-test setting: a 0.24M-parameter U-Net, 1000 steps at delta = 0.689 (about a minute)."""
    base = dict(
        deltas=(0.689,),
        seeds=(0,),
        steps=1000,
        batch=32,
        lr=1e-3,
        n_per_class=256,
        net=NetConfig(16, 16, (1, 2, 2), 32),
        checkpoint_every=250,
        checkpoint_ramp=500,
        n_generate=16,
        sample_steps=25,  # the sweep's ancestral step count: 10 steps under-read the colour (gap 0.29-0.33)
        ema=0.99,  # a half-life of 69 steps for a 1000-step run (0.995's 138 lag the fast early learning)
        probe_steps=600,
    )
    return cpu_config(**{**base, **changes})


def full_config(**changes):
    return cpu_config(**changes)


#: the CPU sweep's colour signals: two well below the pixel-signal crossing (about 0.55), one below it by
#: more than the 15% tie margin, one above it
SWEEP_DELTAS = (0.1, 0.2, 0.4, 0.8)
SWEEP_SEEDS = (0, 1, 2, 3, 4)


def sweep_config(gpu: bool = False, **changes):
    """The delta x seed sweep of the claims: the CPU one (:data:`SWEEP_DELTAS` x :data:`SWEEP_SEEDS`, each
    seed one 4-member ensemble, one process each) or, with ``gpu``, the same deltas and seeds at Park's size
    (32x32, channels 64/128/256, batch 64, 20k steps: his 1.28M images) on CUDA.

    CPU setting: the 0.24M-parameter U-Net at 12x12, batch 64, 6000 steps (384k images per member; Park's
    model learned size at 0.4-0.5M), checkpoints every 200 steps after a quadratic ramp to 2000 (41
    checkpoints, 9 in the first 500 steps, where the order is decided), 32 generations per prompt read by
    the ancestral sampler (25 steps) from EMA weights, and 8 more per prompt read from the raw weights by
    DDIM (the comparison reading). One seed takes about 30 minutes on one core
    (``benchmarks/diffusion.py --cpu-sweep``).
    Dynamics as in Park et al.: AdamW 1e-3 with weight decay 0.01, constant learning rate, no prompt dropout,
    blur in canvas units (one pixel at 32x32), the same sampler noise at every checkpoint. The seeds are
    trained as separate runs (one directory each, see :func:`train_sweep`) and merged for the analysis."""
    if gpu:
        return paper_config(
            **{
                "deltas": SWEEP_DELTAS,
                "seeds": SWEEP_SEEDS,
                "batch": 64,
                "n_generate": 32,
                "weight_decay": 0.01,
                "p_uncond": 0.0,
                "blur": 2 / 32,
                **changes,
            }
        )
    base = dict(
        resolution=12,
        net=NetConfig(12, 16, (1, 2, 2), 32),
        deltas=SWEEP_DELTAS,
        seeds=SWEEP_SEEDS,
        steps=6000,
        batch=64,
        lr=1e-3,
        weight_decay=0.01,
        p_uncond=0.0,
        blur=2 / 32,
        checkpoint_every=200,
        checkpoint_ramp=2000,
        n_generate=32,
        compare_generate=8,
    )
    return cpu_config(**{**base, **changes})


def vector_config(**changes):
    """The vector-prompt ablation (Park's conditioning: (R, G, B, radius), added per block through a small
    MLP) at delta 0.1 and 0.8 x 2 seeds (one 2-member run per seed, like the sweep), with the over-prompting
    test (the OOD class also generated with its blue exaggerated 1.25 to 3 times) at every checkpoint;
    otherwise the CPU sweep's setting."""
    base = sweep_config()
    base = dict(
        net=replace(base.net, conditioning="vector"),
        deltas=(0.1, 0.8),
        seeds=(0, 1),
        over_prompt=(1.25, 1.5, 2.0, 2.5, 3.0),
    )
    return sweep_config(**{**base, **changes})


@sweep.cell(torch=True)
def seed_cell(config: dict, root: str, seed: int, budget_s: float | None = None) -> sweep.Record:
    """One cell of :func:`train_sweep`: seed ``seed``'s ensemble over the deltas, trained (or resumed from
    its checkpoint) in ``root/seed<k>``."""
    import shutil

    cfg = RunConfig.from_dict(config)
    d = Path(root) / f"seed{seed}"
    if not (d / "probe.pt").exists():
        # the probe depends on the images only, not on the seed: reuse a sibling's
        siblings = sorted(Path(root).glob("seed*/probe.pt"))
        if siblings:
            d.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(siblings[0], d / "probe.pt")
    train(replace(cfg, seeds=(seed,)), d, progress=sys.stderr.isatty(), budget_s=budget_s)
    return sweep.Record({"run_dir": str(d), "seed": seed})


def train_sweep(
    config,
    root,
    *,
    seeds=None,
    budget_s: float | None = None,
    progress: bool = False,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
) -> list[Path]:
    """Train (or resume) ``config`` as one run per seed under ``root`` (``root/seed<k>``: one ensemble over
    the deltas each), as the cells of a :mod:`simtheory.sweep` (its manifest and records in ``root``): in this
    process or on a Dask cluster (``executor="dask"``, ``workers`` processes or ``scheduler``'s address), and
    resumed seed by seed. Returns the run directories, in seed order, for
    :func:`simtheory.diffusion.analysis.merge`. ``seeds``: train only these of the configuration's seeds
    (e.g. one per process: ``--seeds 0`` and ``--seeds 1`` in two terminals, each ``--threads 1``); the
    directories of its seeds that hold records are returned.

    ``threads`` per cell: default all cores in this process, one per worker on Dask
    (:func:`simtheory.sweep.executor_options`)."""
    root = Path(root)
    sweep.run(
        seed_cell,
        sweep.grid(seed=list(config.seeds if seeds is None else _subset(seeds, config.seeds))),
        root,
        fixed={"config": config.to_dict(), "root": str(root), **({"budget_s": budget_s} if budget_s else {})},
        progress=progress,
        **sweep.executor_options(executor, workers, scheduler, threads),
    )
    return [root / f"seed{s}" for s in config.seeds if (root / f"seed{s}" / "records.npz").exists()]


def _subset(seeds, of) -> list[int]:
    seeds = [int(x) for x in seeds]
    extra = sorted(set(seeds) - set(of))
    if extra:
        raise ValueError(f"--seeds {extra} are not seeds of the configuration ({list(of)})")
    return seeds


def config_of(run_dir):
    """The configuration stored in an existing run directory."""
    from simtheory.diffusion.train import read_config

    return read_config(run_dir)


MEMBER_COLUMNS = (
    "delta",
    "seed",
    "competent",
    "competent_step",
    "predicted_first",
    "first_heldout",
    "first_park",
    "first_training",
    "time_colour_heldout",
    "time_size_heldout",
    "time_colour_training",
    "time_size_training",
    "final_mse",
    "final_mult_accuracy",
    "final_in_distribution_accuracy",
)


def _member_rows(result) -> list[dict]:
    rows = []
    for m in result.members:
        d = m.to_dict()
        row = {k: (round(d[k], 4) if isinstance(d[k], float) else d[k]) for k in MEMBER_COLUMNS}
        if m.compare is not None:  # the raw-weight DDIM reading of the same checkpoints, beside it
            row["compare_competent_step"] = m.compare["competent_step"]
            row["compare_final_worst_training"] = m.compare["final_worst_training"]
        rows.append(row)
    return rows


def _write_analysis(result, out: Path, title: str) -> None:
    from simtheory.files import atomic_write_text

    atomic_write_text(out / "diffusion_analysis.json", json.dumps(result.to_dict(), indent=2, default=float))
    atomic_write_text(
        out / "diffusion_claims.md", f"# Diffusion claims ({title})\n\n{markdown_table(result.claims)}\n"
    )


def report_run(rec, r: Report, out=None, *, fit: bool = True, title: str = ""):
    """Add the analysis of finished runs (:class:`~simtheory.diffusion.analysis.Records`) to ``r``: the
    members' table, the competence gate and the figures; returns the
    :class:`~simtheory.diffusion.analysis.Analysis`, whose claims the caller adds as they apply to the run."""
    result = analysis.analyse(rec, fit=fit)
    r.metrics["members"] = _member_rows(result)
    r.metrics["competence_gate"] = analysis.gate_summary(result.members, result.run_length)
    r.metrics["signal_crossing_delta"] = result.signal_crossing_delta
    r.metrics["wall_s"] = float(rec.wall_s[-1])
    if out is not None:
        out = Path(out)
        r.figure(
            figures.figure6(result, out / "diffusion_figure6", title=title),
            f"Figure 6 analogue ({title or 'diffusion run'}): seed means of the gated runs of "
            f"{len(set(rec.config.seeds))} seed(s) at delta "
            f"{', '.join(f'{d:g}' for d in sorted(set(rec.config.deltas)))}; "
            + "; ".join(f"{c.name.split(':')[0]}: {c.verdict}" for c in result.claims),
        )
        for k in range(len(rec.members)):
            r.figures.append(str(figures.image_strip(rec, out / f"diffusion_ood_samples_{k}", member=k)))
        _write_analysis(result, out, title)
    return result


def _train_or_resume(
    cfg, run_dir, out, config, executor, workers, scheduler, seeds=None, threads=None, budget_s=None
):
    """Train (or resume) the run(s) of ``cfg`` and return their directories; a list of finished run
    directories is returned as it is (nothing trained)."""
    if isinstance(run_dir, (list, tuple)) and len(run_dir) == 1:
        run_dir = run_dir[0]
    if isinstance(run_dir, (list, tuple)):
        dirs = [Path(d) for d in run_dir]
        missing = [str(d) for d in dirs if not (d / "records.npz").exists()]
        if missing:
            raise ValueError(f"--run-dir: no finished run (records.npz) in {', '.join(missing)}")
        return dirs
    if run_dir is None:
        import tempfile

        run_dir = (
            Path(out) / "diffusion_run"
            if out is not None
            else Path(tempfile.mkdtemp(prefix="simtheory-diffusion-"))
        )
    run_dir = Path(run_dir)
    if config is None and (run_dir / "config.json").exists():
        cfg = config_of(run_dir)  # an existing run is resumed (or just analysed) as it was configured
    on_gpu = str(cfg.device).startswith("cuda")  # one ensemble of every member: the GPU is launch-bound
    if len(cfg.seeds) > 1 and not on_gpu and not (run_dir / "config.json").exists():
        return train_sweep(
            cfg,
            run_dir,
            seeds=seeds,
            budget_s=budget_s,
            progress=sys.stderr.isatty(),
            executor=executor,
            workers=workers,
            scheduler=scheduler,
            threads=threads,
        )
    train(cfg, run_dir, progress=sys.stderr.isatty(), budget_s=budget_s)
    return [run_dir]


def _check_sweep(r: Report, rec, result, power_reps: int = 0, out=None) -> None:
    """A sweep: the claims decide; the pipeline must have learned; the gate is reported; with
    ``power_reps`` and at least 3 seeds, each claim's power and false-positive rate on synthetic sweeps of
    the same setting (:mod:`simtheory.diffusion.power`) stand beside the verdicts."""
    id_all = analysis.in_distribution_accuracy(rec)
    r.check(
        "in-distribution accuracy at the end, worst member (all concepts right)",
        float(id_all[:, -1].min()),
        ">= 0.5",
        lambda x: x >= 0.5,
        alternatives={"the same models at their first checkpoint": float(id_all[:, 0].min()), **CHANCE_BOTH},
    )
    r.claims.extend(result.claims)
    gate = analysis.gate_summary(result.members, result.run_length)
    r.notes.append(
        f"competence gate ({gate['rule']}): {gate['passed']} of {gate['of']} runs passed"
        + (f"; not passed (delta, seed): {gate['failed']}" if gate["failed"] else "")
        + "; the claims read the gated runs only"
    )
    if power_reps and len(set(rec.config.seeds)) >= 3:
        _add_power(r, rec.config, power_reps, out)
    r.notes.append(
        f"thresholds: learning time = smoothed (sigma {analysis.SMOOTH_TIME} ckpts) argmax accuracy > "
        f"{analysis.LEARNED} for {analysis.RUN} checkpoints (held-out reading counted only where the "
        "training prompts express the concept); order 'tie' where the signals differ by <= "
        f"{analysis.TIE:.0%}; swing-by scored where the signal ratio is >= {analysis.CLEAR:g}, after "
        f"{analysis.CUT:.0%} of the run"
    )


def _check_quick(r: Report, rec) -> None:
    """The quick run: the pipeline and the colour pathway."""
    r.check(
        "training loss, last / first checkpoint (worst member)",
        float(np.max(rec.train_loss[-1] / rec.train_loss[1])),
        "<= 0.5",
        lambda x: x <= 0.5,
        alternatives={"no training (ratio 1)": 1.0},
    )
    r.check(
        "the colour word steers generation: P(blue | blue prompts) - P(blue | red prompts)",
        _colour_gap(rec),
        ">= 0.3",
        lambda x: x >= 0.3,
        alternatives={"a model that ignores the prompt (gap 0)": 0.0},
    )
    r.metrics["in_distribution_colour_accuracy"] = min(_colour_accuracy(rec))
    r.notes.append(
        "quick: the pipeline and the colour pathway only; size and the OOD composition need --full, "
        "the claims --sweep"
    )


def _check_full(r: Report, rec, result) -> None:
    """One full run: it generates the training classes and composes the OOD class; only the slowdown."""
    id_all = analysis.in_distribution_accuracy(rec)
    k = int(np.argmax([m.delta for m in result.members]))
    m = result.members[k]
    r.check(
        "in-distribution accuracy at the end (all concepts right)",
        float(id_all[k, -1]),
        ">= 0.8",
        lambda x: x >= 0.8,
        alternatives={"the same model at its first checkpoint": float(id_all[k, 0]), **CHANCE_BOTH},
    )
    r.check(
        "OOD composition: P(blue) P(small) at the end",
        m.final_mult_accuracy,
        ">= 0.5",
        lambda x: x >= 0.5,
        alternatives=CHANCE_BOTH,
    )
    r.notes.append(
        f"the OOD prompt keeps swinging between checkpoints: P(blue) P(small) averages "
        f"{m.mult_accuracy_last5:.2f} over the last 5 checkpoints (last: {m.final_mult_accuracy:.2f})"
    )
    r.claims.extend(c for c in result.claims if c.name.startswith("(iii)"))  # one delta: only the slowdown
    r.notes.append("claims (i) and (ii) compare deltas: run --sweep for them")


def _add_power(r: Report, config, reps: int, out=None) -> None:
    from simtheory.diffusion import power
    from simtheory.files import atomic_write_text

    table = power.power_table(config, reps)
    r.metrics["power"] = [p.to_dict() for p in table]
    r.notes.append(
        f"power at this setting ({reps} synthetic sweeps per effect, `--power`): "
        + "; ".join(
            f"{p.claim}: {p.power:.0%}, {p.false_positive:.0%} false positives ({p.null})" for p in table
        )
    )
    if out is not None:
        atomic_write_text(Path(out) / "diffusion_power.md", power.markdown(table, config) + "\n")


def run(
    quick: bool = True,
    out=None,
    run_dir=None,
    config=None,
    *,
    executor: str = "local",
    workers: int | None = None,
    scheduler: str | None = None,
    seeds=None,
    threads: int | None = None,
    budget_s: float | None = None,
    power_reps: int = 200,
) -> Report:
    """Diffusion model in concept space: pipeline, composition, and the claims.

    ``config`` overrides the setting; a configuration with several seeds (e.g. :func:`sweep_config`) is
    trained seed by seed under ``run_dir`` (:func:`train_sweep`: one sweep cell per seed, in this process or
    on Dask with ``executor``, ``workers``, ``scheduler``; ``seeds`` trains only those, ``threads`` per seed)
    and merged. ``run_dir`` resumes or reuses a run, and a list of run directories (finished runs differing
    only in seeds) is merged and analysed. A sweep of 3 or more seeds reports each claim's power
    (``power_reps`` synthetic sweeps per effect, about 0.4 s each; 0 leaves it out)."""
    r = Report(
        "diffusion",
        "a text-conditioned diffusion model learns concepts in the order of their signal; "
        "its OOD concept-space trajectory swings by and decelerates exponentially",
    )
    cfg = config if config is not None else quick_config() if quick else full_config()
    dirs = _train_or_resume(cfg, run_dir, out, config, executor, workers, scheduler, seeds, threads, budget_s)
    rec = analysis.merge(analysis.load(d) for d in dirs)
    title = (
        f"{rec.config.prompt} prompt, {rec.config.resolution}x{rec.config.resolution}, {rec.steps[-1]} steps"
    )
    result = report_run(rec, r, out, fit=not quick, title=title)
    r.check(
        "probe held-out accuracy (worst delta x concept, and shape / no shape)",
        min(_probe_accuracy(d) for d in dirs),
        ">= 0.99",
        lambda x: x >= 0.99,
        alternatives={"chance (two balanced classes per concept)": 0.5},
    )
    if len({m.delta for m in result.members}) >= 2:
        _check_sweep(r, rec, result, power_reps, out)
    elif quick:
        _check_quick(r, rec)
    else:
        _check_full(r, rec, result)
    return r


def _probe_accuracy(run_dir) -> float:
    from simtheory.diffusion.probe import Probe

    return Probe.accuracy_of(run_dir)


def _colour_gap(rec) -> float:
    """Smallest over members of mean P(blue) on blue training prompts minus that on red ones, at the end."""
    from simtheory.diffusion.data import classes, training_rows

    all_c = classes(rec.probs.shape[-1])
    rows = training_rows(all_c.shape[1])
    p = rec.probs[-1][:, rows][..., 0].mean(axis=-1)  # (K, classes)
    blue = np.array([all_c[i][0] == 1 for i in rows])
    return float(np.min(p[:, blue].mean(axis=1) - p[:, ~blue].mean(axis=1)))


def _colour_accuracy(rec) -> np.ndarray:
    """Per member, fraction of in-distribution generations with the right colour at the end."""
    from simtheory.diffusion.data import classes, training_rows

    all_c = classes(rec.probs.shape[-1])
    rows = training_rows(all_c.shape[1])
    colour = rec.probs[-1][:, rows][..., 0]  # (K, classes, n)
    right = (colour > 0.5) == all_c[rows][None, :, None, 0]
    return right.mean(axis=(1, 2))


def cli(argv=None) -> int:
    p = _parser()
    a = p.parse_args(argv)
    if a.reps < (1 if a.power else 0):
        p.error(f"--reps must be an integer >= {1 if a.power else 0}, got {a.reps}")
    if a.power:
        from simtheory.diffusion import power

        cfg = sweep_config(gpu=a.gpu)
        print(power.markdown(power.power_table(cfg, a.reps), cfg))
        return 0
    _check_flags(p, a)
    config = sweep_config(gpu=a.gpu) if a.sweep else vector_config() if a.vector else None
    sized = a.sweep or a.vector
    try:
        return main(
            lambda quick, out: run(
                quick=quick and not sized,
                out=out,
                run_dir=a.run_dir,
                config=config,
                executor=a.executor,
                workers=a.workers,
                scheduler=a.scheduler,
                seeds=a.seeds,
                threads=a.threads,
                budget_s=a.budget_s,
                power_reps=a.reps,
            ),
            ["--out", a.out] * bool(a.out) + ["--full"] * a.full,
        )
    except ValueError as exc:  # bad input: one line naming it, not a traceback
        p.error(str(exc))


def _check_flags(p, a) -> None:
    if a.gpu and not a.sweep:
        p.error("--gpu goes with --sweep")
    if a.seeds and not a.sweep:
        p.error("--seeds goes with --sweep")
    if a.vector and (a.sweep or a.full):
        p.error("--vector is a run of its own: use it without --sweep and --full")
    if a.run_dir and len(a.run_dir) > 1:
        missing = [d for d in a.run_dir if not Path(d).is_dir()]
        if missing:
            p.error(f"--run-dir: no such directory: {', '.join(missing)}")
    if a.out and Path(a.out).exists() and not Path(a.out).is_dir():
        p.error(f"--out {a.out!r} is a file; give a directory")


def _parser():
    import argparse

    p = argparse.ArgumentParser(
        description="Diffusion model in concept space (paper Figure 6) and the claims."
    )
    p.add_argument(
        "--full", action="store_true", help="the CPU full run: delta = 0.6, 12k steps (~26 min on 2 cores)"
    )
    p.add_argument(
        "--sweep",
        action="store_true",
        help="the claims' sweep: 4 deltas x 5 seeds on CPU (about 30 min a seed on one core); with --gpu "
        "the paper's",
    )
    p.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="with --sweep: train only these seeds (one process per seed: run several, each --threads 1)",
    )
    p.add_argument("--threads", type=int, help="torch/BLAS threads per seed (default: all cores in-process)")
    p.add_argument(
        "--budget-s",
        type=float,
        help="stop training after the first checkpoint past this many seconds (a rerun resumes): a GPU "
        "session",
    )
    p.add_argument(
        "--power",
        action="store_true",
        help="print the claims' power and false-positive rates on synthetic sweeps of the --sweep setting",
    )
    p.add_argument(
        "--reps",
        type=int,
        default=200,
        help="synthetic sweeps per effect for --power, and for the power column of a sweep's report "
        "(3 or more seeds; 0 leaves it out)",
    )
    p.add_argument(
        "--vector",
        action="store_true",
        help="the vector-prompt ablation (delta 0.1, 0.8 x 2 seeds) with the over-prompting test",
    )
    p.add_argument("--gpu", action="store_true", help="with --sweep: the paper-sized sweep on CUDA")
    _where_arguments(p)
    return p


def _where_arguments(p) -> None:
    """Where the runs train and where they are written."""
    p.add_argument(
        "--executor",
        choices=sweep.EXECUTORS,
        default="local",
        help="with --sweep or --vector: train the seeds in this process or on Dask (one cell per seed)",
    )
    p.add_argument("--workers", type=int, help="worker processes of the local Dask cluster")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler (tcp://host:8786)")
    p.add_argument(
        "--run-dir",
        nargs="+",
        help="run directory (resumed if it exists; default OUT/diffusion_run or a "
        "temporary one); several finished runs that differ in seeds are merged",
    )
    p.add_argument("--out", help="directory for figures and diffusion.json")


if __name__ == "__main__":
    raise SystemExit(cli())
