"""How the checkpoint sampler reads a trained diffusion model: DDIM (eta = 0) vs ancestral (eta = 1), on the
raw and on the EMA weights of a run directory's last state.

    python benchmarks/diffusion_samplers.py RUN_DIR [--n 64] [--steps 25 50]

For each (weights, sampler) it generates ``n`` images per class prompt from the same noise and prints the
fraction of generations whose background is darker than any in the data (a background channel below 0.75:
training backgrounds are uniform in [0.8, 1]), the worst training class's colour and size accuracy, and the
OOD prompt's concept point, per member. Needs the run's ``state.pt`` (weights are not committed: run it on a
directory you trained).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from simtheory.diffusion.data import classes, training_rows
from simtheory.diffusion.model import Ensemble
from simtheory.diffusion.schedule import sample
from simtheory.diffusion.train import Run, read_config


def readings(run_dir, n: int, steps_list) -> list[dict]:
    cfg = read_config(run_dir)
    run = Run(cfg, run_dir)
    blob = torch.load(f"{run_dir}/state.pt", weights_only=True, map_location="cpu")
    ens = Ensemble(cfg.net, [s for _, s in cfg.members])
    weights = {
        "raw": blob["params"],
        "ema": {k: v / (1 - cfg.ema ** blob["step"]) for k, v in blob["ema"].items()},
    }
    probe = run.probe()
    g = torch.Generator().manual_seed(5)
    all_c = classes(len(cfg.concepts))
    tokens = torch.as_tensor(np.repeat(run.tok.batch([_caption(c, cfg) for c in all_c]), n, axis=0))
    prompts = tokens[None].expand(len(cfg.members), -1, -1)
    out = []
    for steps in steps_list:
        noise = torch.randn((len(all_c) * n, 3, cfg.resolution, cfg.resolution), generator=g)
        z = torch.randn((steps - 1, *noise.shape), generator=g)
        for name, params in weights.items():
            for sampler, eta in (("ddim", 0.0), ("ancestral", 1.0)):
                x = sample(
                    lambda x, t, tk: ens(x, t, tk, params=params),
                    run.schedule,
                    noise[None].expand(len(cfg.members), *noise.shape).contiguous(),
                    prompts,
                    steps=steps,
                    eta=eta,
                    step_noise=z[:, None],
                    batch_dims=2,
                )
                images = ((x + 1) / 2).clamp(0, 1).numpy()
                out.append(_measure(images, probe, all_c, n, cfg, blob["step"], name, sampler, steps))
    return out


def _caption(c, cfg):
    from simtheory.diffusion.data import caption

    return caption(c, cfg.concepts)


def _measure(images, probe, all_c, n, cfg, step, weights, sampler, steps) -> dict:
    bg = np.quantile(images.reshape(*images.shape[:3], -1), 0.9, axis=-1)  # (K, N, 3)
    probs = np.stack([probe(im) for im in images]).reshape(len(images), len(all_c), n, -1)
    rows = training_rows(all_c.shape[1])
    right = (probs[:, rows] > 0.5) == (all_c[rows][None, :, None, :] == 1)
    worst = right.mean(axis=2).min(axis=1)  # (K, s)
    return {
        "step": int(step),
        "weights": weights,
        "sampler": sampler,
        "steps": steps,
        "bad_backgrounds": float((bg.min(axis=-1) < 0.75).mean()),
        "worst_training": [[round(float(x), 3) for x in w[:2]] for w in worst],
        "ood_point": [[round(float(x), 3) for x in p] for p in probs[:, -1].mean(axis=1)[:, :2]],
        "members": [list(m) for m in cfg.members],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run_dir")
    p.add_argument("--n", type=int, default=64, help="generations per class prompt")
    p.add_argument("--steps", type=int, nargs="+", default=[25])
    a = p.parse_args(argv)
    torch.set_num_threads(1)
    for r in readings(a.run_dir, a.n, a.steps):
        print(
            f"step {r['step']}, {r['weights']} weights, {r['sampler']} {r['steps']}: bad backgrounds "
            f"{r['bad_backgrounds']:.0%}; worst training class (colour, size) {r['worst_training']}; "
            f"OOD point {r['ood_point']} for members {r['members']}"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
