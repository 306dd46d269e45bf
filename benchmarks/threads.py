"""The thread policy's evidence: training on 1 and on 2 threads, alone and next to one busy process.

    python benchmarks/threads.py

For three ensemble sizes (flops of one matmul of the step in the first column), ``simulate.train`` of
200 SGD steps under ``simtheory.threads(1)``, ``threads(2)`` and the size-and-load policy
(``threads(None)``), best of 2, alone and next to one CPU-bound process (``benchmarks/_load.py``).
"""

from __future__ import annotations

import numpy as np
from _load import best_of, busy

import simtheory as sim
from simtheory import _threads
from simtheory.simulate import Init, Model, train


def main():
    print(f"{_threads.cores()} cores; PARALLEL_FLOPS = {_threads.PARALLEL_FLOPS:g}", flush=True)
    for d, E, b in [(2, 16, 32), (8, 16, 64), (8, 64, 64), (64, 16, 128), (128, 16, 256)]:
        task = sim.SIMTask(np.linspace(1, 2, min(d, 4)), 0.05, d=d)
        kw = dict(lr=0.01, steps=200, record=[0, 200], n=256, batch_size=b, dtype="float32")
        flops = 2 * E * b * d * d
        for loaded in (False, True):
            res = {}
            for n in (1, 2, None):

                def go(n=n):
                    with sim.threads(n):
                        train(task, Model("symmetric"), Init("gaussian", 0.05), seeds=list(range(E)), **kw)

                if loaded:
                    with busy(1):
                        res[n] = best_of(go, 2)[0]
                        chosen = _threads.for_work(flops)
                else:
                    res[n] = best_of(go, 2)[0]
                    chosen = _threads.for_work(flops)
            print(
                f"d = {d:3d}, E = {E:2d}, batch {b}: {flops:.1e} flops/matmul, "
                f"{'next to a busy process' if loaded else 'alone':22s}: 1 thread {res[1]:.3f} s, "
                f"2 threads {res[2]:.3f} s, policy ({chosen} thread(s)) {res[None]:.3f} s",
                flush=True,
            )


if __name__ == "__main__":
    main()
