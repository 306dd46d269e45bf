"""Speed of the compiled predictors, as ratios against baselines measured in the same process.

    python benchmarks/predict.py            # full sizes of the issue (a few minutes on 2 cores)
    python benchmarks/predict.py --quick    # smaller sizes, same ratios' meaning

1. ``linear_flow`` over S random settings x 1000 times (d = 8) vs ``solve_ivp`` (DOP853,
   rtol = atol = 1e-10) on the same settings. ``solve_ivp`` is timed on ``--n-ref`` of the
   settings and its per-setting cost is scaled to S (it is a loop: cost is linear in S).
2. ``symmetric_flow`` batched over 256 settings (d = 8, W0 not commuting with A, so it is the
   numerical path) vs a Python loop of per-setting ``solve_ivp`` with the same method, the same
   right-hand side and the same tolerances.
3. ``predict`` (the flow plus its ``Curves``: OOD output and loss, training loss, outputs at every
   composition) vs the ``symmetric_flow`` call it wraps, 256 settings, s = 4, d = 8, 100 times.
4. Import time of ``simtheory`` vs ``import numpy`` (fresh interpreters, best of 5).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
from scipy.integrate import solve_ivp

import simtheory as sim
from simtheory import _solvers


def best_of(fn, repeat=3):
    best = np.inf
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def random_settings(rng, n, d):
    A = np.empty((n, d, d))
    for b in range(n):
        Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        A[b] = Q @ np.diag(rng.uniform(0.05, 2.0, d)) @ Q.T
    return A


def bench_linear(n_settings, n_ref, d=8, n_times=1000, seed=0):
    rng = np.random.default_rng(seed)
    A = random_settings(rng, n_settings, d)
    W0 = rng.normal(0, 0.1, (n_settings, d, d))
    t = np.linspace(0, 20, n_times)
    sim.linear_flow(A[:2], W0[:2], t[:3])  # compile once (SymPy lambdify), outside the timing
    t_pred, W = best_of(lambda: sim.linear_flow(A, W0, t))
    t_floor, _ = best_of(lambda: np.multiply(W, 1.0))  # one read + one write of the output: a memory floor

    def ref_one(b):
        f = lambda _, y: (-(y.reshape(d, d) - np.eye(d)) @ A[b]).ravel()
        return solve_ivp(f, (0, t[-1]), W0[b].ravel(), method="DOP853", t_eval=t, rtol=1e-10, atol=1e-10).y.T

    t0 = time.perf_counter()
    refs = [ref_one(b) for b in range(n_ref)]
    t_ref = (time.perf_counter() - t0) / n_ref * n_settings
    err = max(np.abs(W[b].reshape(n_times, -1) - refs[b]).max() for b in range(n_ref))
    return t_pred, t_ref, err, t_floor, W.nbytes


def bench_symmetric(n_settings=256, d=8, n_times=100, seed=1, repeat=1):
    rng = np.random.default_rng(seed)
    A = np.stack([np.diag(rng.uniform(0.2, 2.0, d)) for _ in range(n_settings)])
    U0 = rng.normal(0, 0.05, (n_settings, d, d))
    W0 = U0 @ np.swapaxes(U0, -1, -2)
    t = np.linspace(0, 6, n_times)
    rate = 4 * 2 * A.max() * max(1, np.abs(np.linalg.eigvalsh(W0)).max())
    method = _solvers.choose_method("auto", rate, t[-1])
    t_batch, W = best_of(lambda: sim.symmetric_flow(A, W0, t, method=method), repeat)
    U0f = _solvers.psd_factor(W0)

    def loop():
        out = []
        for b in range(n_settings):
            f = lambda _, y, b=b: _solvers.factor_field(y.reshape(d, d), A[b], 2.0).ravel()
            sol = solve_ivp(f, (0, t[-1]), U0f[b].ravel(), method=method, t_eval=t, rtol=1e-10, atol=1e-12)
            U = sol.y.T.reshape(n_times, d, d)
            out.append(U @ np.swapaxes(U, -1, -2))
        return np.stack(out)

    t_loop, Wl = best_of(loop, repeat)
    return t_batch, t_loop, float(np.abs(W - Wl).max()), method


def bench_predict_overhead(n_settings=256, d=8, s=4, n_times=100, seed=2, repeat=5):
    """``predict`` against the flow it wraps, alternating the two, best of ``repeat`` each."""
    rng = np.random.default_rng(seed)
    task = sim.SIMTask(rng.uniform(0.5, 2.0, s), 0.05, d=d)
    U0 = rng.normal(0, 0.05, (n_settings, d, d))
    W0 = U0 @ np.swapaxes(U0, -1, -2)
    t = np.linspace(0, 6, n_times)
    sim.predict(task, W0[:2], t[:3])  # compile and import once, outside the timing
    best_flow = best_pred = np.inf
    for _ in range(repeat):
        best_flow = min(best_flow, best_of(lambda: sim.symmetric_flow(task, W0, t), 1)[0])
        best_pred = min(best_pred, best_of(lambda: sim.predict(task, W0, t), 1)[0])
    same = np.array_equal(sim.predict(task, W0, t).W, sim.symmetric_flow(task, W0, t))
    return best_flow, best_pred, same


def bench_import(repeat=5):
    def run(stmt):
        best = np.inf
        for _ in range(repeat):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-c", stmt], check=True)
            best = min(best, time.perf_counter() - t0)
        return best

    base = run("pass")
    return run("import numpy") - base, run("import simtheory") - base


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="200 linear settings, 64 symmetric settings")
    p.add_argument("--n-ref", type=int, default=50, help="settings on which solve_ivp is timed for item 1")
    args = p.parse_args(argv)
    n_lin, n_sym = (200, 64) if args.quick else (1000, 256)

    t_pred, t_ref, err, t_floor, nbytes = bench_linear(n_lin, min(args.n_ref, n_lin))
    print(
        f"linear_flow, {n_lin} settings x 1000 times, d = 8: predictor {t_pred:.3f} s, "
        f"solve_ivp {t_ref:.1f} s (timed on {min(args.n_ref, n_lin)} settings, scaled), "
        f"ratio {t_ref / t_pred:.0f}x (goal >= 1000x); max |difference| {err:.1e}"
    )
    print(
        f"  memory floor: copying the {nbytes / 2**20:.0f} MiB result takes {t_floor:.3f} s; "
        f"the predictor takes {t_pred / t_floor:.1f}x that"
    )
    t_batch, t_loop, err, method = bench_symmetric(n_sym)
    print(
        f"symmetric_flow, {n_sym} settings batched vs loop of solve_ivp ({method}), d = 8: "
        f"batched {t_batch:.2f} s, loop {t_loop:.2f} s, ratio {t_loop / t_batch:.1f}x (goal >= 20x); "
        f"max |difference| {err:.1e}"
    )
    t_flow, t_predict, same = bench_predict_overhead(64 if args.quick else 256)
    print(
        f"predict vs the symmetric_flow it wraps ({64 if args.quick else 256} settings, s = 4, d = 8, 100 "
        f"times): flow {t_flow:.3f} s, predict {t_predict:.3f} s, ratio {t_predict / t_flow:.2f} "
        f"(goal <= 1.2); same W: {same}"
    )
    t_np, t_st = bench_import()
    print(
        f"import time: simtheory {t_st * 1e3:.0f} ms vs numpy {t_np * 1e3:.0f} ms "
        f"(ratio {t_st / t_np:.2f}; SymPy, SciPy, matplotlib and torch load lazily)"
    )


if __name__ == "__main__":
    main()
