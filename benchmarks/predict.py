"""Speed of the compiled predictors, as ratios against the strongest fair baseline measured in the same
process, each alone and next to one CPU-bound process (``benchmarks/_load.py``), with both sides' accuracy.

    python benchmarks/predict.py            # full sizes (a few minutes on 2 cores)
    python benchmarks/predict.py --quick    # smaller sizes, same meaning
    python benchmarks/predict.py --alone    # skip the runs under load

1. OOD-loss curves of the one-layer flow (what users plot): ``linear_ood_loss`` over S random settings
   (d = 8, A not diagonal) x 1000 times vs ``solve_ivp`` (DOP853 at rtol = atol = 1e-13, its best) on
   the same settings followed by the OOD loss; ``solve_ivp`` is timed on ``--n-ref`` settings and scaled
   to S (it is a loop). Both are checked against ``scipy.linalg.expm`` on those settings.
2. The paper's Figures 8-10 (paper-code rates, 10,000 times to t = 100, W0 = rand/5 not commuting with
   A): ``symmetric_flow`` + ``ood_loss`` vs a faithful NumPy port of the published Euler loop
   (``figure/triple/multiple.py``: float32, W updated in W-space, loss and W stored every step). Both
   are checked against Radau at rtol 1e-13. The loop diverges (NaN) for some inits: the first init it
   survives is timed, and the count of diverging inits is printed.
3. ``symmetric_flow`` batched over 256 settings (d = 8, W0 not commuting with A) vs a Python loop of
   per-setting ``solve_ivp`` with DOP853, the same right-hand side and the same tolerances.
   2b. The methods "auto" chooses between (LSODA, Radau, DOP853) on Figure 8's curves, alone.
4. ``predict`` (the flow plus its ``Curves``) vs the ``symmetric_flow`` call it wraps.
5. Import time of ``simtheory`` vs ``import numpy`` (fresh interpreters, best of 5).
6. The closed-form approximation (issue 14): OOD-loss curves of S non-commuting settings (d = 3 with s = 2 and
   d = 8 with s = 4; mu ~ U[0.6, 2.5], sigma 0.05, U0 = scale x uniform or x normal, scale in [0.02, 0.05];
   1000 times to each setting's horizon) from ``symmetric_approx_ood_loss`` (the composite form, the default,
   and the Riccati form) vs ``symmetric_flow``, and the swing-by criterion (``swingby.approx_verdicts``: the
   composite alone, and checked by the first-order form with its ODE fallbacks) vs classifying the flow's
   curves. ``symmetric_flow`` is timed on ``--n-ref-flow`` settings per d and scaled to S; the agreement of
   the verdicts is counted on those settings.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

import numpy as np
import scipy
from _load import alone_and_loaded, best_of, show
from scipy.integrate import solve_ivp

import simtheory as sim
from simtheory import _solvers, _threads, paper


def random_settings(rng, n, d):
    A = np.empty((n, d, d))
    for b in range(n):
        Q, _ = np.linalg.qr(rng.normal(size=(d, d)))
        A[b] = Q @ np.diag(rng.uniform(0.05, 2.0, d)) @ Q.T
    return A


def bench_ood_curves(n_settings, n_ref, d=8, n_times=1000, seed=0):
    """Item 1: returns a measure() for alone_and_loaded."""
    from scipy.linalg import expm

    rng = np.random.default_rng(seed)
    task = sim.SIMTask([1.0, 1.5, 2.0, 2.5], 0.05, d=d)
    A = random_settings(rng, n_settings, d)
    W0 = rng.normal(0, 0.1, (n_settings, d, d))
    t = np.linspace(0, 20, n_times)
    x = task.test_point()
    sim.linear_ood_loss(task, W0[:2], t[:3], A=A[:2])  # compile once (SymPy lambdify), outside the timing

    def ref_one(b):
        f = lambda _, y: (-(y.reshape(d, d) - np.eye(d)) @ A[b]).ravel()
        sol = solve_ivp(f, (0, t[-1]), W0[b].ravel(), method="DOP853", t_eval=t, rtol=1e-13, atol=1e-13)
        return sim.ood_loss(task, sol.y.T.reshape(n_times, d, d))

    exact = np.array(
        [[0.5 * np.sum(((np.eye(d) - W0[b]) @ expm(-A[b] * tk) @ x) ** 2) for tk in t] for b in range(n_ref)]
    )

    def measure():
        t_pred, L = best_of(lambda: sim.linear_ood_loss(task, W0, t, A=A))
        t0 = time.perf_counter()
        refs = np.array([ref_one(b) for b in range(n_ref)])
        t_ref = (time.perf_counter() - t0) / n_ref * n_settings
        return dict(
            pred=t_pred,
            ref=t_ref,
            err_pred=float(np.abs(L[:n_ref] - exact).max()),
            err_ref=float(np.abs(refs - exact).max()),
        )

    return measure


def paper_euler_loop(W0, A_paper, mu, eta=0.01, steps=10_000):
    """A faithful NumPy port of the published Euler loop of Figures 8-10 (``figure/triple/multiple.py``):
    float32, ``A ** 2`` elementwise, W updated in W-space, W, the OOD output and the loss kept every step."""
    W = W0.astype(np.float32)
    A2 = (A_paper**2).astype(np.float32)
    x = np.asarray(mu, dtype=np.float32)
    eta = np.float32(eta)
    Ws, outputs, losses = [], [], []
    with np.errstate(over="ignore", invalid="ignore"):
        for _ in range(steps):
            update = W @ A2 + A2 @ W - W @ A2 @ W - (A2 @ (W @ W) + (W @ W) @ A2) / 2
            W = W + eta * update
            loss = 0.5 * np.linalg.norm(W @ x - x) ** 2
            Ws.append(W)
            outputs.append(W @ x)
            losses.append(float(loss))
    return np.stack(Ws), np.array(losses)


def bench_figures(seeds=20):
    """Item 2: a measure() per figure (the first init the Euler loop survives) and the divergence counts."""
    out = {}
    for name, setting in paper.multiple_descent().items():
        task = setting.task()
        t = 0.01 * np.arange(1, 10_001)
        A_paper = np.diag(task.a)
        finite = []
        for seed in range(seeds):
            W_e, _ = paper_euler_loop(setting.W0(seed), A_paper, setting.mu, steps=10_000)
            finite.append(bool(np.all(np.isfinite(W_e))))
        seed = finite.index(True)
        W0 = setting.W0(seed)
        ref = sim.symmetric_flow(task, W0, t, "paper-code", method="Radau", rtol=1e-13, atol=1e-15)

        def measure(task=task, W0=W0, t=t, ref=ref, A_paper=A_paper, setting=setting):
            def ours():
                W = sim.symmetric_flow(task, W0, t, "paper-code")
                return W, sim.ood_loss(task, W)

            t_ours, (W, _) = best_of(ours)
            t_loop, (W_e, _) = best_of(lambda: paper_euler_loop(W0, A_paper, setting.mu))
            with sim.solver_log() as log:
                ours()
            return dict(
                ours=t_ours,
                loop=t_loop,
                err_ours=float(np.abs(W - ref).max()),
                err_loop=float(np.abs(W_e - ref).max()),
                method=log[-1].method,
                nfev=log[-1].nfev,
            )

        out[name] = (measure, seed, seeds - sum(finite), seeds)
    return out


def bench_methods(methods=("LSODA", "Radau", "DOP853")):
    """Item 2b: the solve_ivp methods "auto" chooses between, on Figure 8's curves (time, error vs Radau at
    1e-13, evaluations)."""
    setting = paper.figure8()
    task, W0, t = setting.task(), setting.W0(1), 0.01 * np.arange(1, 10_001)
    ref = sim.symmetric_flow(task, W0, t, "paper-code", method="Radau", rtol=1e-13, atol=1e-15)
    out = {}
    for m in methods:
        secs, W = best_of(lambda m=m: sim.symmetric_flow(task, W0, t, "paper-code", method=m))
        with sim.solver_log() as log:
            sim.symmetric_flow(task, W0, t, "paper-code", method=m)
        out[m] = (secs, float(np.abs(W - ref).max()), log[-1].nfev)
    return out


def bench_symmetric(n_settings=256, d=8, n_times=100, seed=1):
    """Item 3: the batched solve vs a loop of per-setting solves with the same method (LSODA through
    ``odeint``, the fastest per-setting path), same right-hand side, same tolerances."""
    from scipy.integrate import odeint

    rng = np.random.default_rng(seed)
    A = np.stack([np.diag(rng.uniform(0.2, 2.0, d)) for _ in range(n_settings)])
    U0 = rng.normal(0, 0.05, (n_settings, d, d))
    W0 = U0 @ np.swapaxes(U0, -1, -2)
    t = np.linspace(0, 6, n_times)
    U0f = _solvers.psd_factor(W0)
    ref = _solvers.solve_symmetric(A[:8], W0[:8], t, 2.0, method="Radau", rtol=1e-13, atol=1e-15)

    def loop():
        out = []
        for b in range(n_settings):
            f = lambda _, y, b=b: _solvers.factor_field(y.reshape(d, d), A[b], 2.0).ravel()
            U = odeint(f, U0f[b].ravel(), t, rtol=1e-10, atol=1e-12, tfirst=True).reshape(n_times, d, d)
            out.append(U @ np.swapaxes(U, -1, -2))
        return np.stack(out)

    def measure():
        t_batch, W = best_of(lambda: sim.symmetric_flow(A, W0, t), 1)
        t_loop, Wl = best_of(loop, 1)
        return dict(
            batch=t_batch,
            loop=t_loop,
            err_batch=float(np.abs(W[:8] - ref).max()),
            err_loop=float(np.abs(Wl[:8] - ref).max()),
        )

    return measure


def bench_predict_overhead(n_settings=256, d=8, s=4, n_times=100, seed=2, repeat=5):
    """Item 4: ``predict`` against the flow it wraps, alternating the two, best of ``repeat`` each."""
    rng = np.random.default_rng(seed)
    task = sim.SIMTask(rng.uniform(0.5, 2.0, s), 0.05, d=d)
    U0 = rng.normal(0, 0.05, (n_settings, d, d))
    W0 = U0 @ np.swapaxes(U0, -1, -2)
    t = np.linspace(0, 6, n_times)
    sim.predict(task, W0[:2], t[:3])  # compile and import once, outside the timing

    def measure():
        best_flow = best_pred = np.inf
        for _ in range(repeat):
            best_flow = min(best_flow, best_of(lambda: sim.symmetric_flow(task, W0, t), 1)[0])
            best_pred = min(best_pred, best_of(lambda: sim.predict(task, W0, t), 1)[0])
        same = np.array_equal(sim.predict(task, W0, t).W, sim.symmetric_flow(task, W0, t))
        return dict(flow=best_flow, predict=best_pred, same=same)

    return measure


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


def approx_settings(n, d, s, seed):
    """Item 6's settings: A scaled by each setting's horizon, so one grid [0, 1] serves them all."""
    from simtheory import swingby

    rng = np.random.default_rng(seed)
    A, W0, x = np.empty((n, d, d)), np.empty((n, d, d)), np.empty((n, d))
    for k in range(n):
        task = sim.SIMTask(rng.uniform(0.6, 2.5, s), 0.05, d=d)
        sc = rng.uniform(0.02, 0.05)
        U0 = sc * (rng.random((d, d)) if k % 2 == 0 else rng.standard_normal((d, d)))
        W0[k] = U0 @ U0.T
        A[k] = task.A * swingby.horizon(task, W0[k])
        x[k] = task.test_point()
    return A, W0, x


def bench_approx(n_settings, n_ref, n_times=1000, seed=6):
    """Item 6: returns {d: measure()} for alone_and_loaded."""
    from simtheory import swingby

    t = np.concatenate([[0.0], np.geomspace(1e-4, 1.0, n_times - 1)])
    chunk = 256

    def flow_ood(A, W0, x):
        out = np.empty((A.shape[0], t.size))
        for lo in range(0, A.shape[0], chunk):
            sl = slice(lo, lo + chunk)
            out[sl] = swingby._ood_losses(sim.symmetric_flow(A[sl], W0[sl], t), x[sl])
        return out

    measures = {}
    for d, s in ((3, 2), (8, 4)):
        A, W0, x = approx_settings(n_settings, d, s, seed + d)
        task = sim.SIMTask(np.ones(s), 0.05, d=d)  # A and x are given per setting

        def approx_ood(A, W0, x, method, task=task):
            return sim.symmetric_approx_ood_loss(task, W0, t, A=A, x=x, form=method)

        def measure(A=A, W0=W0, x=x):
            t_cf, L_cf = best_of(lambda: approx_ood(A, W0, x, "composite"), 1)
            t_ric, L_ric = best_of(lambda: approx_ood(A, W0, x, "riccati"), 1)
            t0 = time.perf_counter()
            L_ref = flow_ood(A[:n_ref], W0[:n_ref], x[:n_ref])
            t_flow = (time.perf_counter() - t0) / n_ref * n_settings
            t_crit, v = best_of(lambda: swingby.approx_verdicts(A, W0, x, t), 1)
            t_chk, v_chk = best_of(lambda: swingby.approx_verdicts(A, W0, x, t, fallback=True), 1)
            nm_ref, bump_ref = swingby.shape(t, L_ref)
            t0 = time.perf_counter()
            swingby.shape(t, L_ref)
            t_shape = (time.perf_counter() - t0) / n_ref * n_settings
            both = v["nonmonotone"][:n_ref] & nm_ref
            bump_err = np.abs(v["bump"][:n_ref][both] - bump_ref[both]) / bump_ref[both]
            err = lambda L: float(np.median(np.abs(L[:n_ref] - L_ref).max(axis=1) / L_ref[:, 0]))  # noqa: E731
            return dict(
                closed=t_cf,
                riccati=t_ric,
                flow=t_flow,
                criterion=t_crit,
                checked=t_chk,
                flow_and_shape=t_flow + t_shape,
                fallback=float(1.0 - v_chk["decided"].mean()),
                agree=float(np.mean(v["nonmonotone"][:n_ref] == nm_ref)),
                agree_checked=float(np.mean(v_chk["nonmonotone"][:n_ref] == nm_ref)),
                bump_within_20=float(np.mean(bump_err <= 0.2)) if bump_err.size else float("nan"),
                nonmono=float(nm_ref.mean()),
                curve_err=err(L_cf),
                curve_err_riccati=err(L_ric),
            )

        measures[d] = measure
    return measures


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="200 linear settings, 64 symmetric settings")
    p.add_argument("--alone", action="store_true", help="only the runs alone (no busy process)")
    p.add_argument("--n-ref", type=int, default=20, help="settings on which solve_ivp is timed for item 1")
    p.add_argument("--n-ref-flow", type=int, default=500, help="settings per d on which item 6 times the ODE")
    p.add_argument("--only", choices=["approx"], help="run only item 6")
    args = p.parse_args(argv)
    loaded = not args.alone
    n_lin, n_sym = (200, 64) if args.quick else (1000, 256)
    n_ref = min(args.n_ref, n_lin)
    print(f"numpy {np.__version__}, scipy {scipy.__version__}; {_threads.cores()} cores", flush=True)
    if args.only != "approx":
        items_1_to_5(args, loaded, n_lin, n_sym, n_ref)
    n_approx = 1000 if args.quick else 10_000
    for d, measure in bench_approx(n_approx, min(args.n_ref_flow, n_approx)).items():
        show(
            f"6. {n_approx} non-commuting settings, d = {d}, 1000 times: symmetric_approx_ood_loss "
            "(composite; Riccati) vs symmetric_flow; the criterion (composite alone; checked, with ODE "
            "fallbacks) vs classifying the flow",
            alone_and_loaded(measure, loaded),
            lambda r: (
                f"composite {r['closed']:.2f} s vs flow {r['flow']:.1f} s: {r['flow'] / r['closed']:.0f}x "
                f"(Riccati {r['riccati']:.2f} s: {r['flow'] / r['riccati']:.0f}x; goal >= 100x); criterion "
                f"{r['criterion']:.2f} s vs {r['flow_and_shape']:.1f} s: "
                f"{r['flow_and_shape'] / r['criterion']:.1f}x (goal >= 20x), verdicts agree "
                f"{r['agree']:.1%}, bump within 20% in {r['bump_within_20']:.0%}; checked "
                f"{r['checked']:.2f} s: {r['flow_and_shape'] / r['checked']:.1f}x, fallback "
                f"{r['fallback']:.1%}, agree {r['agree_checked']:.1%} (non-monotone {r['nonmono']:.0%}); "
                f"median max |loss error| / initial loss {r['curve_err']:.2g} (Riccati "
                f"{r['curve_err_riccati']:.2g})"
            ),
        )


def items_1_to_5(args, loaded, n_lin, n_sym, n_ref):
    show(
        f"1. OOD-loss curves, {n_lin} settings x 1000 times, d = 8: linear_ood_loss vs solve_ivp (1e-13)",
        alone_and_loaded(bench_ood_curves(n_lin, n_ref), loaded),
        lambda r: (
            f"{r['pred']:.3f} s vs {r['ref']:.1f} s (timed on {n_ref} settings, scaled), ratio "
            f"{r['ref'] / r['pred']:.0f}x (goal >= 1000x); max |error| vs expm: {r['err_pred']:.1e} vs "
            f"{r['err_ref']:.1e}"
        ),
    )
    for name, (measure, seed, diverged, seeds) in bench_figures().items():
        show(
            f"2. Figure {paper.multiple_descent()[name].figure} ({name}), init seed {seed}: "
            f"symmetric_flow + ood_loss vs the paper's Euler loop (NumPy port)",
            alone_and_loaded(measure, loaded),
            lambda r, d=diverged, n=seeds: (
                f"{r['ours'] * 1e3:.1f} ms ({r['method']}, {r['nfev']} evaluations) vs "
                f"{r['loop'] * 1e3:.0f} ms, ratio {r['loop'] / r['ours']:.1f}x (goal >= 10x); max |W error| "
                f"vs Radau 1e-13: {r['err_ours']:.1e} vs {r['err_loop']:.1e}; the loop diverged (NaN) for "
                f"{d} of {n} inits"
            ),
        )
    methods = bench_methods()
    print(
        "2b. Figure 8, methods (rtol 1e-10): "
        + "; ".join(
            f"{m} {t * 1e3:.0f} ms, error {e:.1e}, {n} evaluations" for m, (t, e, n) in methods.items()
        ),
        flush=True,
    )
    show(
        f"3. symmetric_flow, {n_sym} settings batched vs a loop of per-setting LSODA (odeint), d = 8, t <= 6",
        alone_and_loaded(bench_symmetric(n_sym), loaded),
        lambda r: (
            f"{r['batch']:.2f} s vs {r['loop']:.2f} s, ratio {r['loop'] / r['batch']:.1f}x (goal >= 20x); "
            f"max |W error| vs Radau 1e-13 (8 settings): {r['err_batch']:.1e} vs {r['err_loop']:.1e}"
        ),
    )
    show(
        f"4. predict vs the symmetric_flow it wraps ({n_sym} settings, s = 4, d = 8, 100 times)",
        alone_and_loaded(bench_predict_overhead(n_sym), loaded),
        lambda r: (
            f"flow {r['flow']:.3f} s, predict {r['predict']:.3f} s, ratio {r['predict'] / r['flow']:.2f} "
            f"(goal <= 1.2); same W: {r['same']}"
        ),
    )
    t_np, t_st = bench_import()
    print(
        f"5. import time: simtheory {t_st * 1e3:.0f} ms vs numpy {t_np * 1e3:.0f} ms "
        f"(ratio {t_st / t_np:.2f}; SymPy, SciPy, matplotlib and torch load lazily)"
    )


if __name__ == "__main__":
    main()
