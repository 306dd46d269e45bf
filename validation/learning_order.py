"""Learning order: over a sweep of (mu, sigma), the concept learned first follows a_p = mu_p^2/s + sigma_p^2.

For each model (one-layer linear, symmetric U U^T, untied W2 W1, deep linear with 3 layers, ReLU MLP
with biases) an ensemble covers the sweep; concept p counts as learned when the model maps the
cluster centre mu_p e_p to within 10% of itself on coordinate p (output_p >= 0.9 mu_p), read from
the recorded outputs at the compositions. The agreement rate is the fraction of settings (with
a_1 and a_2 more than 10% apart) where the first-learned concept is the one with the larger a_p.
The theory is derived for the linear models; the ReLU MLP is reported, not required to agree.

The a_p order assumes comparable initial scales per concept: the symmetric model's stage time is
log((1 - w_pp(0)) / w_pp(0)) / (4 a_p) (gradient-flow time), so a random Gaussian U0 (whose
diagonal entries of W0 = U0 U0^T differ by large factors) can flip the order of concepts with close
a_p. The symmetric model is therefore run twice: from a near-isotropic U0 = 0.01 (I + 0.1 noise),
where the a_p order and the logistic time to 0.9 (within 10%, median) are required, and from a
Gaussian U0, where the agreement with the a_p order and with the decoupled logistic order of each
member's own W0 are reported only (a 0.9 requirement on the latter was tried and found fragile: it
passed or failed with the resolution of the recorded time grid).
"""

from __future__ import annotations

import numpy as np

import simtheory as sim
from simtheory.simulate import Init, Model, train

from ._report import Report, main

MODELS = {
    "linear": (Model("linear"), Init("gaussian", 1e-3), 0.05),
    "symmetric": (Model("symmetric"), None, 0.02),  # near-isotropic given init, built per sweep
    "symmetric (gaussian init)": (Model("symmetric"), Init("gaussian", 1e-2), 0.02),
    "untied": (Model("untied", (8,)), Init("gaussian", 1e-2), 0.02),
    "deep (3 layers)": (Model("deep", (8, 8)), Init("gaussian", 0.2), 0.02),
    "relu mlp": (Model("mlp", (32,), bias=True), Init("default"), 0.02),
}
REQUIRED = {"linear": 1.0, "symmetric": 1.0, "untied": 1.0, "deep (3 layers)": 0.8}


def sweep(quick: bool):
    mus = [0.6, 1.0, 1.4, 1.8, 2.2] if quick else list(np.linspace(0.5, 2.5, 9))
    sigmas = [0.05, 0.6, 1.2] if quick else [0.05, 0.4, 0.8, 1.2]
    return [sim.SIMTask([m, 1.5], [s, 0.05], d=2) for m in mus for s in sigmas]


def first_learned(curves, level=0.9):
    """(E, s) first recorded time each concept's output reaches level x mu_p (inf if never)."""
    task = curves.task
    comps = task.compositions()
    out = []
    for p in range(task.s):
        onehot = int(np.flatnonzero((comps.sum(1) == 1) & (comps[:, p] == 1))[0])
        tasks = curves.meta.get("tasks") or [task.to_dict()] * curves.W.shape[0]
        mu_p = np.array([t["mu"][p] for t in tasks])
        y = curves.composition_outputs[:, :, onehot, p]
        reached = y >= level * mu_p[:, None]
        idx = np.argmax(reached, axis=1)
        out.append(np.where(reached.any(axis=1), curves.times[idx], np.inf))
    return np.stack(out, axis=1)


def run(quick: bool = True, out=None) -> Report:
    """Learning order follows a_p for the linear models; reported for a ReLU MLP."""
    r = Report("learning_order", "the concept with the larger a_p is learned first")
    tasks = sweep(quick)
    a = np.stack([t.a[:2] for t in tasks])
    separated = np.abs(a[:, 0] - a[:, 1]) > 0.1 * a.max(axis=1)
    theory_first = np.argmax(a, axis=1)
    steps = 3000 if quick else 5000
    rates = {}
    E = len(tasks)
    noise = np.random.default_rng(0).normal(size=(E, 2, 2))
    isotropic = Init("given", arrays=(0.01 * (np.eye(2) + 0.1 * noise),))
    record = np.unique(np.concatenate([[0], np.geomspace(1, steps, 400).astype(np.int64)]))
    for name, (model, init, lr) in MODELS.items():
        run_ = train(tasks, model, init or isotropic, lr=lr, steps=steps, record=record, seeds=list(range(E)),
                     n=64 if quick else 256)
        t = first_learned(run_.curves)
        decided = np.isfinite(t.min(axis=1)) & separated
        ok = (np.argmin(t, axis=1) == theory_first) & decided
        rate = float(ok.sum() / max(decided.sum(), 1))
        rates[name] = {"agreement": rate, "decided": int(decided.sum()), "settings": E}
        if name in REQUIRED:
            r.check(f"{name}: agreement with the a_p order", rate, f">= {REQUIRED[name]}", rate >= REQUIRED[name])
        if name == "symmetric":
            # overlay: logistic time to w_pp = 0.9 from each member's own w_pp(0) (kappa = 2)
            w0 = np.einsum("eii->ei", run_.curves.W[:, 0])[:, :2]
            t_pred = np.log(9 * (1 - w0) / w0) / (4 * a)
            rel = float(np.median(np.abs(t - t_pred) / t_pred))
            r.check("symmetric: median |t_GD - t_logistic| / t_logistic (time to 0.9)", rel, "<= 0.1", rel <= 0.1)
            sym_times = (a, t, t_pred)
        if name == "symmetric (gaussian init)":
            w0 = np.einsum("eii->ei", run_.curves.W[:, 0])[:, :2]
            t_pred = np.log(9 * (1 - w0) / w0) / (4 * a)  # decoupled logistic; ignores the off-diagonal coupling
            done = np.isfinite(t.min(axis=1))
            ok_pred = (np.argmin(t, axis=1) == np.argmin(t_pred, axis=1)) & done
            rates[name]["agreement_logistic_order"] = float(ok_pred.sum() / max(done.sum(), 1))
    r.metrics["agreement"] = rates
    if out is not None:
        from simtheory import plotting

        a_, t_, tp_ = sym_times
        order = np.argsort(a_.ravel())
        paths = plotting.sweep(a_.ravel()[order], {"GD, symmetric": t_.ravel()[order],
                                                  "logistic prediction": tp_.ravel()[order]},
                               out / "learning_order_time_vs_a", xlabel="a_p", ylabel="time to w_pp >= 0.9",
                               title="Time to learn a concept against a_p (all sweep settings)", logx=True)
        r.figures.append(str(paths[0]))
    g = rates["symmetric (gaussian init)"]
    r.notes.append(f"symmetric from a Gaussian U0 (reported, not required): a_p order in {g['agreement']:.0%} of "
                   f"settings, order of the decoupled logistic times of each W0 in {g['agreement_logistic_order']:.0%}; "
                   "the off-diagonal coupling of a random W0 is outside the decoupled solution.")
    r.notes.append(f"ReLU MLP (default init, biases) agrees in {rates['relu mlp']['agreement']:.0%} of "
                   f"{rates['relu mlp']['decided']} decided settings; the theory does not cover it.")
    return r


if __name__ == "__main__":
    raise SystemExit(main(run))
