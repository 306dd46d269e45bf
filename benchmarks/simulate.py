"""simulate.train against bare PyTorch loops doing the same training, each ratio alone and next to one
CPU-bound process (``benchmarks/_load.py``), in one process.

    python benchmarks/simulate.py            # the sizes of the README's table (a few minutes on 2 cores)
    python benchmarks/simulate.py --quick    # fewer steps, same meaning
    python benchmarks/simulate.py --alone    # skip the runs under load

1. One symmetric model (the paper's Figure 5 data: d = 3, mu = (1, 1.5), 100 points per cluster,
   full-batch GD with the published code's F.mse_loss, lr 0.01, float32) vs the loop of the published
   ``train()``: ``torch.optim.SGD``, ``zero_grad``/``backward``/``step`` and ``float(loss)`` per step.
   Same init, same data; the final weights of both are compared.
2. An ensemble of 16 models at d = 2 (minibatch SGD, batch 32, one shuffle per epoch) vs the same bare
   loop run 16 times, shuffling per epoch with ``randperm`` (what ``DataLoader(shuffle=True)`` does).
3. An ensemble of 16 at d = 64 (batch 128): achieved GFLOP/s (forward X U U^T: 2 matmuls of 2 b d^2
   flops per member; backward counted as twice the forward) against the rate of a batched matmul of the
   step's own shapes (``torch.bmm`` (16, 128, 64) x (16, 64, 64)) on the same threads, and against the
   ensemble of 256 symmetric d = 8 models vs the loop.
The baselines run on the threads the library's policy gives work of their size (one thread for the small
models here; ``simtheory.threads`` overrides): the same threads as ``train``, so that a ratio compares the
code and not the thread counts (with torch's default two threads a bare loop is 3-4x slower next to a busy
process).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F
from _load import alone_and_loaded, best_of, show

import simtheory as sim
from simtheory import _threads
from simtheory.simulate import Init, Model, train


def bare_loop(U0: torch.Tensor, X: torch.Tensor, lr: float, steps: int, batch=None, seed: int = 0):
    """The published code's training loop for one symmetric model (plus a per-epoch shuffle for SGD)."""
    U = torch.nn.Parameter(U0.clone())
    opt = torch.optim.SGD([U], lr=lr)
    N = X.shape[0]
    g = torch.Generator().manual_seed(seed)
    Xs, per_epoch = X, (1 if batch is None else -(-N // batch))
    for k in range(steps):
        if batch is None:
            Xb = X
        else:
            j = k % per_epoch
            if j == 0:
                Xs = X[torch.randperm(N, generator=g)]
            Xb = Xs[j * batch : (j + 1) * batch]
        opt.zero_grad()
        loss = F.mse_loss(Xb @ U @ U.T, Xb)
        loss.backward()
        opt.step()
        float(loss)
    return U.detach()


def single(steps: int):
    task = sim.SIMTask([1.0, 1.5], 0.05, d=3)
    X = task.sample(100, seed=0).inputs
    U0 = np.random.default_rng(0).random((3, 3)) / 5

    def ours():
        kw = dict(lr=0.01, steps=steps, record=[0, steps], inputs=X, loss="mse", dtype="float32")
        return train(task, Model("symmetric"), Init("given", arrays=(U0,)), **kw)

    def bare():
        return bare_loop(
            torch.tensor(U0, dtype=torch.float32), torch.tensor(X, dtype=torch.float32), 0.01, steps
        )

    def measure():
        t_ours, run = best_of(ours)
        t_bare, U = best_of(bare)
        return dict(ours=t_ours, bare=t_bare, dW=float(np.abs(run.params[0][0] - U.numpy()).max()))

    return measure


def ensemble(d: int, E: int, steps: int, batch: int, n: int, loop_members: int):
    mu = np.linspace(1.0, 2.0, min(d, 4))
    task = sim.SIMTask(mu, 0.05, d=d)
    init = Init("gaussian", 0.05)
    kw = dict(lr=0.01, steps=steps, record=[0, steps], n=n, batch_size=batch, dtype="float32")

    def measure():
        t_ens, run = best_of(lambda: train(task, Model("symmetric"), init, seeds=list(range(E)), **kw), 1)

        def one(e):
            X = torch.tensor(run.inputs[e], dtype=torch.float32)
            U0 = torch.tensor(run.initial[0][e], dtype=torch.float32)
            return bare_loop(U0, X, kw["lr"] * d / 2, steps, batch=batch, seed=e)  # "sim" lr -> mse lr

        def loop():
            with same_threads(2 * (batch or n * len(mu)) * d * d):
                return [one(e) for e in range(loop_members)]

        t_loop, Us = best_of(loop, 1)
        t_loop *= E / loop_members
        ours_loss = float(np.mean(run.curves.train_loss[:loop_members, -1]))
        bare_loss = float(
            np.mean([sim.train_loss(run.A_n[e], (U @ U.T).double().numpy()) for e, U in enumerate(Us)])
        )
        b = batch if batch else n * len(mu)
        flops = E * steps * 3 * (2 * 2 * b * d * d)
        return dict(
            ens=t_ens, loop=t_loop, loss_ours=ours_loss, loss_bare=bare_loss, gflops=flops / t_ens / 1e9
        )

    return measure


def same_threads(flops_per_matmul: float):
    """The threads simulate.train's policy gives work of this size (the baselines run on the same)."""
    return _threads.limited(_threads.for_work(flops_per_matmul), torch=True)


def bmm_rate(E: int, b: int, d: int, repeat: int = 200) -> float:
    """GFLOP/s of ``torch.bmm`` of the step's shapes, on the threads the policy gives the training."""
    x, w = torch.randn(E, b, d), torch.randn(E, d, d)
    with same_threads(2 * E * b * d * d):
        torch.bmm(x, w)
        t, _ = best_of(lambda: [torch.bmm(x, w) for _ in range(repeat)], 5)
    return 2 * E * b * d * d * repeat / t


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--alone", action="store_true", help="only the runs alone (no busy process)")
    args = p.parse_args(argv)
    loaded = not args.alone
    steps = 500 if args.quick else 2000
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads by default, steps = {steps}",
        flush=True,
    )

    show(
        "1. one symmetric model, d = 3, full batch, float32: simulate.train vs the published loop",
        alone_and_loaded(single(steps), loaded),
        lambda r: (
            f"train {r['ours']:.3f} s, loop {r['bare']:.3f} s, ratio {r['ours'] / r['bare']:.2f} "
            f"(goal <= 1.1); max |W difference| {r['dW']:.1e}"
        ),
    )
    show(
        "2. 16 symmetric models, d = 2, SGD batch 32: ensemble vs the loop 16 times",
        alone_and_loaded(ensemble(2, 16, steps, 32, 100, 16), loaded),
        lambda r: (
            f"ensemble {r['ens']:.2f} s, loop {r['loop']:.2f} s, ratio {r['loop'] / r['ens']:.1f}x "
            f"(goal >= 8x); final training loss {r['loss_ours']:.2e} vs {r['loss_bare']:.2e}"
        ),
    )

    def big():
        r = ensemble(64, 16, steps // 2, 128, 256, 2)()
        r["bmm"] = bmm_rate(16, 128, 64) / 1e9
        return r

    show(
        "3. 16 symmetric models, d = 64, SGD batch 128",
        alone_and_loaded(big, loaded),
        lambda r: (
            f"{r['gflops']:.1f} GFLOP/s vs {r['bmm']:.1f} GFLOP/s for bmm of the step's shapes "
            f"({r['gflops'] / r['bmm']:.0%}, goal >= 50%); ensemble {r['ens']:.2f} s, loop {r['loop']:.2f} s "
            f"(timed on 2 members, scaled), ratio {r['loop'] / r['ens']:.1f}x"
        ),
    )
    show(
        "4. 256 symmetric models, d = 8, full batch",
        alone_and_loaded(ensemble(8, 256, steps, None, 32, 4), loaded),
        lambda r: (
            f"ensemble {r['ens']:.2f} s, loop {r['loop']:.2f} s (timed on 4 members, scaled), "
            f"ratio {r['loop'] / r['ens']:.1f}x (goal >= 20x); {r['gflops']:.2f} GFLOP/s"
        ),
    )


if __name__ == "__main__":
    main()
