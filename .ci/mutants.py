"""Mutation testing with a curated list of wrong implementations.

Each mutant plants one bug that a plausible mistake would make (a closed form at the wrong rate, a
vector field with a flipped sign, the wrong time convention, a turning point read at its detection time,
the loss over N - 1, ...) into a temporary copy of the repository, runs the tests that should notice it
under a time limit, and counts it *killed* when they fail (or run out of time: a hung suite is a red one).
The script prints one line per mutant and the kill rate; it exits 1 unless every mutant is killed.

    python .ci/mutants.py                 # every mutant (about 2 minutes on 2 cores; 7 with --baseline)
    python .ci/mutants.py --list          # the list, without running
    python .ci/mutants.py -k turning      # the mutants whose id contains "turning"
    python .ci/mutants.py --baseline      # first check that the selected tests pass unmutated

A curated list, not a tool such as mutmut: random operator swaps in this code base mostly produce
equivalent or instantly crashing mutants, and the bugs worth catching are the ones listed here.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    id: str
    what: str
    path: str
    edits: tuple[tuple[str, str], ...]  # (original text, replacement): every occurrence is replaced
    tests: tuple[str, ...]  # pytest arguments (files, node ids, -k expressions)


MUTANTS = (
    Mutant(
        "turning-point-at-detection",
        "a turning point reported when it is detected, not at the extremum",
        "simtheory/measures.py",
        (("float(t[i_min])", "float(t[k])"), ("float(t[i_max])", "float(t[k])")),
        ("tests/test_swingby.py", "tests/test_measures.py"),
    ),
    Mutant(
        "factor-field-sign",
        "the symmetric model's factor field dU/dt with its sign flipped (ascent instead of descent)",
        "simtheory/_solvers.py",
        (
            (
                "return (-0.5 * kappa) * (A[..., None, :] if diagonal else A)",
                "return (0.5 * kappa) * (A[..., None, :] if diagonal else A)",
            ),
        ),
        ("tests/test_theory.py",),
    ),
    Mutant(
        "symmetric-field-cubic-term",
        "V(W) with half its W A W term",
        "simtheory/_solvers.py",
        (("- 0.5 * (AW @ W + W @ WA) - WA @ W)", "- 0.5 * (AW @ W + W @ WA) - 0.5 * WA @ W)"),),
        ("tests/test_theory.py",),
    ),
    Mutant(
        "loss-over-N-minus-1",
        "the training loss averaged over N - 1 points instead of N",
        "simtheory/simulate.py",
        (
            (
                "return 0.5 * sq.sum(dim=-1).mean(dim=-1)  # (E,)",
                "return 0.5 * sq.sum(dim=-1).sum(dim=-1) / (sq.shape[-2] - 1)",
            ),
        ),
        ("tests/test_simulate.py",),
    ),
    Mutant(
        "second-moment-over-N-minus-1",
        "the empirical second moment A_n = X^T X / (N - 1)",
        "simtheory/task.py",
        (("return X.T @ X / X.shape[0]", "return X.T @ X / (X.shape[0] - 1)"),),
        ("tests/test_simulate.py", "tests/test_task.py"),
    ),
    Mutant(
        "a-without-1-over-s",
        "a_p = mu_p^2 + sigma_p^2 (the cluster weight 1/s forgotten)",
        "simtheory/task.py",
        (("a[:s] += mu**2 / n_clusters", "a[:s] += mu**2"),),
        ("tests/test_task.py",),
    ),
    Mutant(
        "gradient-flow-time",
        "the gradient-flow convention at the paper's speed (kappa = 1 instead of 2)",
        "simtheory/theory/_base.py",
        (('"gradient-flow": (2.0, False)', '"gradient-flow": (1.0, False)'),),
        ("tests/test_theory.py",),
    ),
    Mutant(
        "one-layer-closed-form-rate",
        "Theorem 4.1's closed form at half the rate",
        "derivations/one_layer_flow.py",
        (
            (
                "return delta_ * (1 - sp.exp(-a_ * t_)) + sp.exp(-a_ * t_) * w0_",
                "return delta_ * (1 - sp.exp(-a_ * t_ / 2)) + sp.exp(-a_ * t_ / 2) * w0_",
            ),
        ),
        ("tests/test_derivations.py", "tests/test_theory.py"),
    ),
    Mutant(
        "logistic-rate",
        "the symmetric model's logistic at half the rate",
        "derivations/symmetric.py",
        (("sp.exp(-2 * kappa_ * a_ * t_)", "sp.exp(-kappa_ * a_ * t_)"),),
        ("tests/test_derivations.py",),
    ),
    Mutant(
        "gd-off-by-one-step",
        "exact discrete GD one step ahead",
        "simtheory/theory/linear.py",
        (("k=steps_arr[None, :, None], w0=0.0", "k=steps_arr[None, :, None] + 1, w0=0.0"),),
        ("tests/test_theory.py",),
    ),
    Mutant(
        "deep-field-transpose",
        "the deep linear field without the transpose of the factors below",
        "simtheory/_solvers.py",
        (("out[k] = -G @ np.swapaxes(below[k], -1, -2)", "out[k] = -G @ below[k]"),),
        ("tests/test_theory.py",),
    ),
    Mutant(
        "ood-point-mean",
        "the OOD point as the mean of the concepts instead of their sum",
        "simtheory/task.py",
        (("x[: self.s] = v * self.mu\n", "x[: self.s] = v * self.mu / self.s\n"),),
        ("tests/test_theory.py", "tests/test_curves.py"),
    ),
    Mutant(
        "probe-axes-swapped",
        "the analytic probe returns (P(small), P(blue)) for (P(blue), P(small))",
        "simtheory/diffusion/probe.py",
        (
            (
                "np.stack([1 / (1 + np.exp(-z_blue)), 1 / (1 + np.exp(-z_small))], axis=1)",
                "np.stack([1 / (1 + np.exp(-z_small)), 1 / (1 + np.exp(-z_blue))], axis=1)",
            ),
        ),
        ("tests/test_diffusion.py", "-k", "probe"),
    ),
    Mutant(
        "learning-time-first-touch",
        "a concept counted as learned at the first smoothed sample above the level (no sustained run)",
        "simtheory/measures.py",
        (("hits = np.flatnonzero(streak == run)", "hits = np.flatnonzero(streak >= 1)"),),
        ("tests/test_measures.py",),
    ),
    Mutant(
        "truncated-variance",
        "the truncated-normal variance factor without the factor 2 in 2 c phi(c)",
        "simtheory/task.py",
        (
            (
                "return float(1.0 - 2.0 * c * phi / (2.0 * ndtr(c) - 1.0))",
                "return float(1.0 - c * phi / (2.0 * ndtr(c) - 1.0))",
            ),
        ),
        ("tests/test_task.py",),
    ),
    Mutant(
        "balanced-accuracy",
        "balanced accuracy scoring the false-positive rate as the true-negative rate",
        "validation/_report.py",
        (("np.mean(~predicted[~actual])", "np.mean(predicted[~actual])"),),
        ("tests/test_claims.py",),
    ),
    Mutant(
        "reversed-rates-identity",
        "the 'reversed rates' alternative that does not reverse anything",
        "validation/_report.py",
        (
            (
                "idx = np.r_[np.arange(s)[::-1], np.arange(s, A.shape[-1])]",
                "idx = np.r_[np.arange(s), np.arange(s, A.shape[-1])]",
            ),
        ),
        ("tests/test_claims.py",),
    ),
    Mutant(
        "swing-rise-over-global-minimum",
        "a diffusion swing-by read as the rise above the curve's overall minimum, not its running minimum",
        "simtheory/diffusion/analysis.py",
        (("int(np.argmin(m[: i + 1]))", "int(np.argmin(m))"),),
        ("tests/test_diffusion_analysis.py",),
    ),
    Mutant(
        "competence-gate-open",
        "every diffusion member admitted, competent at the end of its run or not",
        "simtheory/diffusion/analysis.py",
        (("bool(step <= GATE * steps[-1]),", "True,"),),
        ("tests/test_diffusion_analysis.py",),
    ),
    Mutant(
        "power-law-fit-on-linear-time",
        "the power-law alternative fitted against time instead of log time (the same fit as the exponential)",
        "simtheory/diffusion/analysis.py",
        (("log_linear_fit(mid[window], v[window], log_x=True)", "log_linear_fit(mid[window], v[window])"),),
        ("tests/test_diffusion_analysis.py",),
    ),
    Mutant(
        "claim-ignores-alternatives",
        "a claim that passes although a trivial alternative meets its threshold",
        "simtheory/claims.py",
        (
            (
                "also = [k for k, v in alternatives.items() if not np.isnan(v) and bool(accepts(v))]",
                "also = []",
            ),
        ),
        ("tests/test_claims.py",),
    ),
    Mutant(
        "sweep-does-not-wait",
        "a sweep process returns while another process is still computing one of its cells",
        "simtheory/sweep.py",
        (("    while True:\n        time.sleep(delay)", "    while False:\n        time.sleep(delay)"),),
        ("tests/test_concurrency.py",),
    ),
    Mutant(
        "processes-one-at-a-time",
        "the processes executor runs one cell at a time whatever the free cores",
        "simtheory/sweep.py",
        (("free_cores(own=len(running)) // job.threads", "free_cores(own=len(running)) - job.threads"),),
        ("tests/test_concurrency.py",),
    ),
    Mutant(
        "zigzag-first-turn-down-missed",
        "a curve's first turn down is missed when it rose by less than the threshold before it",
        "simtheory/measures.py",
        (("if trend >= 0 and loss[k] > loss[i_max]:", "if trend != 0 and loss[k] > loss[i_max]:"),),
        ("tests/test_measures.py",),
    ),
)


def _copy(dst: Path) -> None:
    ignore = shutil.ignore_patterns(
        ".git",
        ".venv*",
        "runs",
        "site",
        "__pycache__",
        ".hypothesis",
        ".pytest_cache",
        ".ruff_cache",
        "*.egg-info",
    )
    shutil.copytree(ROOT, dst, ignore=ignore, dirs_exist_ok=True)


def _apply(tree: Path, m: Mutant) -> None:
    f = tree / m.path
    text = f.read_text()
    for old, new in m.edits:
        if old not in text:
            raise SystemExit(f"mutant {m.id}: {old!r} not found in {m.path} (the list is out of date)")
        text = text.replace(old, new)
    f.write_text(text)


def _pytest(tree: Path, args, timeout: float) -> tuple[str, float]:
    """Run pytest on ``tree``: 'passed', 'failed', 'timeout' or 'error' (nothing collected), and seconds."""
    env = dict(
        os.environ, PYTHONPATH=str(tree), OMP_NUM_THREADS="1", MKL_NUM_THREADS="1", HYPOTHESIS_PROFILE="ci"
    )
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "--timeout", "300", *args]
    start = time.perf_counter()
    try:
        rc = subprocess.run(cmd, cwd=tree, env=env, capture_output=True, timeout=timeout).returncode
    except subprocess.TimeoutExpired:
        return "timeout", time.perf_counter() - start
    took = time.perf_counter() - start
    return {0: "passed", 1: "failed"}.get(rc, "error"), took


def _check_isolated(tree: Path) -> None:
    """The copy, not the installed package, must be what the tests import."""
    env = dict(os.environ, PYTHONPATH=str(tree))
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import simtheory, derivations, validation; print(simtheory.__file__, derivations.__file__)",
        ],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    if not all(Path(p).resolve().is_relative_to(tree.resolve()) for p in out):
        raise SystemExit(f"the tests would import {out}, not the mutated copy in {tree}")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("-k", default="", help="run only the mutants whose id contains this")
    p.add_argument("--list", action="store_true", help="print the mutants and exit")
    p.add_argument(
        "--baseline", action="store_true", help="check that the selected tests pass unmutated first"
    )
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per mutant (default 900)")
    args = p.parse_args(argv)
    chosen = [m for m in MUTANTS if args.k in m.id]
    if args.list:
        for m in chosen:
            print(f"{m.id:30s} {m.path:32s} {m.what}")
        return 0
    killed = 0
    with tempfile.TemporaryDirectory(prefix="simtheory-mutants-") as tmp:
        clean = Path(tmp) / "clean"
        _copy(clean)
        _check_isolated(clean)
        if args.baseline:
            for tests in sorted({m.tests for m in chosen}):
                status, took = _pytest(clean, tests, args.timeout)
                print(f"baseline {' '.join(tests)}: {status} ({took:.0f} s)", flush=True)
                if status != "passed":
                    return 2
        for m in chosen:
            tree = Path(tmp) / m.id
            shutil.copytree(clean, tree)
            _apply(tree, m)
            status, took = _pytest(tree, m.tests, args.timeout)
            ok = status in ("failed", "timeout")
            killed += ok
            print(
                f"{'killed ' if ok else 'SURVIVED'} {m.id:30s} {status:8s} {took:5.0f} s  {m.what}",
                flush=True,
            )
            shutil.rmtree(tree)
    print(f"kill rate: {killed}/{len(chosen)} ({killed / max(len(chosen), 1):.0%})")
    return 0 if killed == len(chosen) else 1


if __name__ == "__main__":
    sys.exit(main())
