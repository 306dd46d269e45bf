"""Ensemble-of-K diffusion training vs K models trained one after another, in one process.

    python benchmarks/diffusion.py                 # CPU: K = 4 small U-Nets (16x16, batch 32)
    python benchmarks/diffusion.py --k 8 --cpu-default
    python benchmarks/diffusion.py --device cuda --paper   # on a GPU: K = 18, 32x32, the paper-sized U-Net
    python benchmarks/diffusion.py --cpu-sweep --steps 30  # one seed of the CPU sweep: step, projected time

Times the real training step of :class:`simtheory.diffusion.train.Run` (minibatch draw, noising,
forward, backward, AdamW) for the ensemble (``vmap`` over stacked parameters) and for a loop over
K plain ``nn.Module`` U-Nets with their own AdamW (the naive sequential sweep). Reports the ratio
(loop time / ensemble time for the same K model-steps) and, with ``--paper``, the projected time
of the paper's sweep (6 deltas x 3 seeds, 20k steps) both ways.
"""

from __future__ import annotations

import argparse
import tempfile
import time

import torch

from simtheory.diffusion.model import Ensemble, NetConfig, n_parameters
from simtheory.diffusion.train import (
    Run,
    _Stream,
    cpu_config,
    make_optimizer,
    paper_config,
)


def _sync(device):
    if str(device).startswith("cuda"):
        torch.cuda.synchronize()


def time_steps(fn, n: int, warmup: int, device) -> float:
    for _ in range(warmup):
        fn()
    _sync(device)
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    _sync(device)
    return (time.perf_counter() - t0) / n


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--k", type=int, default=4, help="ensemble size")
    p.add_argument("--steps", type=int, default=10, help="timed steps (after warm-up)")
    p.add_argument("--device", default="cpu")
    p.add_argument(
        "--cpu-default", action="store_true", help="the CPU default U-Net (0.49M parameters, batch 64)"
    )
    p.add_argument("--paper", action="store_true", help="the paper-sized setting (K = 18, 32x32)")
    p.add_argument(
        "--cpu-sweep",
        action="store_true",
        help="one seed of the CPU sweep of the claims (K = 4 deltas, 12x12, 0.24M parameters, batch 32)",
    )
    args = p.parse_args(argv)
    if args.paper:
        cfg = paper_config(device=args.device, n_per_class=256)
        k = len(cfg.members)
    elif args.cpu_sweep:
        from validation.diffusion import sweep_config

        cfg = sweep_config(seeds=(0,), n_per_class=256, device=args.device)
        k = len(cfg.members)
    else:
        small = dict(net=NetConfig(16, 16, (1, 2, 2), 32), batch=32)
        cfg = cpu_config(
            deltas=(0.6,),
            seeds=tuple(range(args.k)),
            n_per_class=256,
            device=args.device,
            **({} if args.cpu_default else small),
        )
        k = args.k
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(cfg, tmp)
        images, tokens = run.data()
        images = images.to(args.device)
        null = torch.as_tensor(run.tok.null())
        seeds = [s for _, s in cfg.members]
        ens = Ensemble(cfg.net, seeds, args.device)
        opt = make_optimizer(ens, cfg)
        streams = [_Stream(s) for s in seeds]
        t_ens = time_steps(
            lambda: run.step(ens, opt, streams, images, tokens, null), args.steps, 2, args.device
        )

        singles = [ens.member(i).to(args.device) for i in range(k)]
        opts = [torch.optim.AdamW(m.parameters(), lr=cfg.lr) for m in singles]
        sstreams = [_Stream(s) for s in seeds]

        def loop():
            for i, (m, o, st) in enumerate(zip(singles, opts, sstreams)):
                idx, t, eps, drop = st.draw(images.shape[1], cfg.batch, images.shape[2:], cfg.T, cfg.p_uncond)
                tok = torch.where(drop[:, None], null, tokens[idx]).to(args.device)
                t, eps = t.to(args.device), eps.to(args.device)
                loss = (
                    (m(run.schedule.noisy(images[i, idx.to(args.device)], t, eps), t, tok) - eps) ** 2
                ).mean()
                o.zero_grad(set_to_none=True)
                loss.backward()
                o.step()

        t_loop = time_steps(loop, args.steps, 2, args.device)
    n_par = n_parameters(singles[0])
    print(
        f"K = {k} U-Nets of {n_par / 1e6:.2f}M parameters, {cfg.resolution}x{cfg.resolution}, batch "
        f"{cfg.batch}, "
        f"device {args.device}, torch {torch.__version__}, {torch.get_num_threads()} threads"
    )
    print(
        f"ensemble step (all K) {t_ens * 1e3:.1f} ms; loop of K plain models {t_loop * 1e3:.1f} ms; "
        f"ratio loop/ensemble {t_loop / t_ens:.2f}x"
    )
    if args.cpu_sweep:
        print(
            f"projected training time of one seed ({k} deltas x {cfg.steps} steps; checkpoints and the probe "
            f"add about 3 minutes): {t_ens * cfg.steps / 60:.1f} min"
        )
    if args.paper:
        print(
            f"projected sweep ({k} models x {cfg.steps} steps, training only): ensemble "
            f"{t_ens * cfg.steps / 60:.1f} min, "
            f"sequential {t_loop * cfg.steps / 60:.1f} min (goal <= 10 min)"
        )


if __name__ == "__main__":
    main()
