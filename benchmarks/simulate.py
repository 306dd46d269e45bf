"""Batched ensemble training vs a Python loop of the same models, measured in one process.

    python benchmarks/simulate.py            # 256 symmetric models, d = 8, 10k full-batch steps
    python benchmarks/simulate.py --quick    # 64 models, 2k steps

The ensemble is timed in full. The loop trains ``--n-loop`` of the same members one at a time
(same seeds, same data) and its per-model cost is scaled to the ensemble size (a loop is linear in
the number of models). Both report achieved FLOP/s (forward + backward of X U U^T counted as
3x the forward's 2 N d h (2 matmuls)), against a peak estimated from a large float64 matmul.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

import simtheory as sim
from simtheory.simulate import Init, Model, train


def peak_flops(n: int = 1024, repeat: int = 5) -> float:
    a = torch.randn(n, n, dtype=torch.float64)
    b = torch.randn(n, n, dtype=torch.float64)
    a @ b
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--n-loop", type=int, default=8, help="members trained one by one for the loop baseline")
    args = p.parse_args(argv)
    E, steps = (64, 2000) if args.quick else (256, 10_000)
    d, n = 8, 32  # 32 points per cluster, s = 2 concepts: N = 64 training points per model
    task = sim.SIMTask([1.0, 1.5], 0.05, d=d)
    kw = dict(lr=0.01, steps=steps, record=[0, steps], n=n)
    model, init = Model("symmetric"), Init("gaussian", 0.05)
    train(task, model, init, seeds=[0], **{**kw, "steps": 10, "record": [10]})  # warm-up

    t0 = time.perf_counter()
    ens = train(task, model, init, seeds=list(range(E)), **kw)
    t_ens = time.perf_counter() - t0
    t0 = time.perf_counter()
    singles = [train(task, model, init, seeds=[e], **kw) for e in range(args.n_loop)]
    t_loop = (time.perf_counter() - t0) / args.n_loop * E
    diff = max(np.abs(s.curves.W[0] - ens.curves.W[e]).max() for e, s in enumerate(singles))

    N = 2 * n
    flops_per_step = 3 * (2 * N * d * d * 2)  # forward: X U then (X U) U^T; backward ~ 2x forward
    peak = peak_flops()
    print(
        f"{E} symmetric models, d = {d}, N = {N}, {steps} full-batch steps, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads"
    )
    print(
        f"ensemble {t_ens:.1f} s; loop {t_loop:.1f} s (timed on {args.n_loop} models, scaled); "
        f"ratio {t_loop / t_ens:.1f}x (goal >= 20x); max |W difference| {diff:.1e}"
    )
    print(
        f"achieved {E * steps * flops_per_step / t_ens / 1e9:.2f} GFLOP/s (ensemble), "
        f"{E * steps * flops_per_step / t_loop / 1e9:.3f} GFLOP/s (loop); "
        f"peak estimate {peak / 1e9:.1f} GFLOP/s (1024^2 float64 matmul)"
    )


if __name__ == "__main__":
    main()
