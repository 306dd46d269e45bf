"""Linear model: float64 GD equals the exact discrete solution; GD approaches gradient flow with error ∝ lr.

Claims (design reference, one-layer model):
1. Full-batch GD in float64 on sampled SIM data equals ``linear_gd`` with the data's empirical
   second moment A_n to 1e-10 (relative), for every member of a seeded ensemble.
2. At a fixed gradient-flow time, ``||W_GD - W_flow||`` is proportional to lr: the log-log slope
   fitted over halvings of lr lies in [0.9, 1.1].
"""

from __future__ import annotations

import numpy as np

import simtheory as sim
from simtheory.measures import log_linear_fit
from simtheory.simulate import Init, Model, init_params, train

from ._report import Report, main


def run(quick: bool = True, out=None) -> Report:
    """Linear model: GD = exact GD solution; GD -> flow with error ∝ lr."""
    r = Report("linear", "float64 GD = linear_gd(A_n) to 1e-10; GD - flow error ∝ lr (slope in [0.9, 1.1])")
    rng = np.random.default_rng(0)
    E = 4 if quick else 16
    tasks = [sim.SIMTask(rng.uniform(0.5, 2.5, 2), rng.uniform(0.05, 0.4), d=3) for _ in range(E)]
    seeds = list(range(E))
    model, init = Model("linear"), Init("gaussian", 0.3)
    steps = 300 if quick else 2000
    lr = 0.05
    run_ = train(tasks, model, init, lr=lr, steps=steps, seeds=seeds, n=40 if quick else 400)
    W0 = init_params(model, init, 3, seeds)[0][0].numpy()
    _exact(r, run_, tasks, W0, lr)
    _convergence_order(r, run_, tasks[0], W0, quick, out)
    return r


def _exact(r: Report, run_, tasks, W0, lr: float) -> None:
    """float64 GD against the exact GD solution linear_gd(A_n), beside the population A and the flow."""
    exact = sim.linear_gd(run_.A_n, W0, lr, np.asarray(run_.curves.meta["steps"]))
    steps_rec = np.asarray(run_.curves.meta["steps"])

    def gap(W):
        return float(np.max(np.abs(W - run_.curves.W)) / np.max(np.abs(exact)))

    r.check(
        "max |W_GD - linear_gd(A_n)| / max |W|",
        gap(exact),
        "<= 1e-10",
        lambda x: x <= 1e-10,
        alternatives={
            "linear_gd with the population A": gap(
                sim.linear_gd(np.stack([t.A for t in tasks]), W0, lr, steps_rec)
            ),
            "gradient flow linear_flow(A_n) at t = lr k": gap(sim.linear_flow(run_.A_n, W0, lr * steps_rec)),
        },
    )


def _convergence_order(r: Report, run_, task, W0, quick: bool, out) -> None:
    """Same data and init, lr halved, compared with the flow at the same time: error ∝ lr."""
    model, init = Model("linear"), Init("gaussian", 0.3)
    t_end = 4.0
    lrs = np.array([0.2, 0.1, 0.05, 0.025] if quick else [0.2, 0.1, 0.05, 0.025, 0.0125, 0.00625])
    errs, wrong = [], []
    X = run_.inputs[:1]
    for lr_k in lrs:
        k = int(round(t_end / lr_k))
        rk = train(task, model, init, lr=float(lr_k), steps=k, record=[k], seeds=[0], inputs=X)
        flow = sim.linear_flow(rk.A_n[0], W0[0], t_end)[0]
        errs.append(float(np.linalg.norm(rk.curves.W[0, -1] - flow)))
        half = sim.linear_flow(rk.A_n[0], W0[0], t_end / 2)[0]  # the flow at the paper's half-speed time
        wrong.append(float(np.linalg.norm(rk.curves.W[0, -1] - half)))
    slope = log_linear_fit(lrs, errs, log_x=True).slope  # convergence order
    r.check(
        "log-log slope of ||W_GD(t) - W_flow(t)|| against lr",
        slope,
        "in [0.9, 1.1]",
        lambda x: 0.9 <= x <= 1.1,
        alternatives={
            "GD against the flow at half its time (paper's dW/dt = V)": log_linear_fit(
                lrs, wrong, log_x=True
            ).slope
        },
    )
    r.metrics["errors_by_lr"] = {f"{a:g}": e for a, e in zip(lrs, errs)}
    if out is not None:
        from simtheory import plotting

        paths = plotting.sweep(
            lrs,
            {"||W_GD - W_flow||": errs},
            out / "linear_convergence",
            xlabel="learning rate",
            ylabel=f"error at t = {t_end}",
            title=f"slope {slope:.3f}",
            logx=True,
        )
        r.figure(
            paths,
            f"One-layer linear model: float64 GD against the exact gradient flow linear_flow(A_n) at "
            f"t = {t_end}, over halvings of the learning rate. Fitted log-log slope {slope:.3f} (error ∝ lr: "
            "1).",
        )


if __name__ == "__main__":
    raise SystemExit(main(run))
