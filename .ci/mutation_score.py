"""A generated mutation pass over the core modules, with cosmic-ray's operators: how many realistic one-node
mistakes the fast tests of each module kill.

    pip install -e ".[mutation]"   # cosmic-ray
    python .ci/mutation_score.py [--per-module 40] [--seed 0] [--jobs 2] [--modules theory ...] [--out FILE]

For every module below, cosmic-ray enumerates every mutation its operators can make (a changed arithmetic or
comparison operator, a number, a boolean, an ``and``/``or``, a removed decorator, a zero-iteration loop,
...); a seeded random sample of ``--per-module`` of them is applied one at a time, in a clone of the
repository (the checkout itself is never mutated), and the module's fast test files run against it with
``pytest -x``. A mutant is *killed* when the tests fail (or time out), and *survives* when they pass. The
result per module is the kill rate with its 95% Wilson interval; every survivor is listed with its diff, to
be killed by a new test or argued equivalent. A mutant argued equivalent (it changes no behaviour a user can
observe) is listed in ``.ci/mutation_equivalents.json`` -- the line before and after, and the one-line
reason -- and scored as such: the kill rate is killed / (sampled - equivalent), and the raw rate is shown
beside it. Before any mutant, each module's tests run unmutated: a module whose tests fail as they are is
reported, not scored (every mutant would look killed). The last result is written to
``.ci/mutation_results.json`` with the commit it was measured at, and every survivor with its diff and
disposition to ``.ci/mutation_survivors.md``.

It takes about an hour on one core (most mutants die within seconds; a survivor runs its module's whole
test files), so it is not part of the default CI run; ``.ci/mutants.py`` (curated mutants) is.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from simtheory.measures import wilson

ROOT = Path(__file__).resolve().parents[1]

#: module (path under the repository) -> its fast test files (what a mistake there should break)
MODULES = {
    "theory": (
        ["simtheory/theory/_base.py", "simtheory/theory/linear.py", "simtheory/theory/symmetric.py",
         "simtheory/theory/approx.py", "simtheory/theory/_kernels.py", "simtheory/theory/flows.py",
         "simtheory/theory/losses.py"],
        ["tests/test_theory.py", "tests/test_symmetric_approx.py"],
    ),
    "swingby": (["simtheory/swingby.py"], ["tests/test_swingby.py", "tests/test_symmetric_approx.py"]),
    "measures": (["simtheory/measures.py"], ["tests/test_measures.py", "tests/test_swingby.py"]),
    "claims": (["simtheory/claims.py"], ["tests/test_claims.py"]),
    "curves": (["simtheory/curves.py"], ["tests/test_curves.py", "tests/test_errors.py"]),
    "_checks": (["simtheory/_checks.py"], ["tests/test_checks.py", "tests/test_errors.py", "tests/test_task.py"]),  # noqa: E501
    "_threads": (["simtheory/_threads.py"], ["tests/test_threads.py", "tests/test_simulate.py"]),
    "sweep": (["simtheory/sweep.py"], ["tests/test_sweep.py", "tests/test_concurrency.py"]),
    "simulate": (["simtheory/simulate.py"], ["tests/test_simulate.py"]),
    "diffusion/analysis": (
        ["simtheory/diffusion/analysis.py", "simtheory/diffusion/claims.py"],
        ["tests/test_diffusion_analysis.py"],
    ),
}  # fmt: skip

#: cosmic-ray operators left out: bit operations and shifts on the float code here are type errors or
#: equivalent, and variable insertion/replacement makes mostly unparseable code; the rest are realistic slips
SKIP = ("BitOr", "BitAnd", "BitXor", "LShift", "RShift", "Invert", "VariableReplacer", "VariableInserter")


EQUIVALENTS = ROOT / ".ci" / "mutation_equivalents.json"


def equivalents() -> list[dict]:
    """The mutants argued equivalent: ``{"path", "before", "after", "reason"}`` (lines stripped)."""
    return json.loads(EQUIVALENTS.read_text()) if EQUIVALENTS.exists() else []


def changed_lines(diff: str) -> tuple[str, str]:
    """The removed and the added line of a one-line mutation's diff, stripped and with runs of spaces
    collapsed (the mutation tool may leave a doubled space)."""

    def norm(lines):
        return " ".join(" ".join(x[1:].split()) for x in lines)

    rows = diff.splitlines()
    return norm(r for r in rows if r.startswith("-")), norm(r for r in rows if r.startswith("+"))


def equivalent_reason(result: dict, known: list[dict]) -> str | None:
    before, after = changed_lines(result["diff"])
    for e in known:
        if (
            e["path"] == result["module"]
            and " ".join(e["before"].split()) == before
            and (" ".join(e["after"].split()) == after)
        ):
            return e["reason"]
    return None


def mutations(paths: list[str], root: Path) -> list:
    """Every (path, operator name, operator, occurrence, line) cosmic-ray can make in ``paths``."""
    import cosmic_ray.plugins as plugins
    from cosmic_ray.ast import ast_nodes, get_ast_from_path

    ops = [(n, plugins.get_operator(n)) for n in plugins.operator_names() if not any(s in n for s in SKIP)]
    ops = [(n, cls()) for n, cls in ops if not cls.arguments()]
    out = []
    for rel in paths:
        tree = get_ast_from_path(root / rel)
        for name, op in ops:
            positions = [
                (node, start) for node in ast_nodes(tree) for start, _ in op.mutation_positions(node)
            ]
            out += [(rel, name, op, k, start[0]) for k, (_, start) in enumerate(positions)]
    return out


def run_tests(clone: Path, tests: list[str], timeout: float) -> str:
    env = {**os.environ, "PYTHONPATH": str(clone), "OMP_NUM_THREADS": "1", "HYPOTHESIS_PROFILE": "ci"}
    cmd = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *tests]
    try:
        res = subprocess.run(cmd, cwd=clone, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return "killed (timeout)"
    return "survived" if res.returncode == 0 else "killed"


_CLONE: list[Path] = []  # this worker process's clone (set by _init)


def _init(clones, counter) -> None:
    with counter.get_lock():
        _CLONE.append(clones[counter.value])
        counter.value += 1


def _one(args) -> dict:
    """Apply one mutation in this worker's clone, run the tests, restore the file."""
    import cosmic_ray.plugins as plugins
    from cosmic_ray.mutating import use_mutation

    rel, op_name, occurrence, line, tests, timeout = args
    clone, start = _CLONE[0], time.perf_counter()
    op = plugins.get_operator(op_name)()
    with use_mutation(clone / rel, op, occurrence) as (before, after):
        if after is None:
            return {}
        outcome = run_tests(clone, tests, timeout)
        diff = _diff(before, after, rel)
    seconds = round(time.perf_counter() - start, 1)
    return {"module": rel, "operator": op_name, "occurrence": occurrence, "line": line, "outcome": outcome,
            "seconds": seconds, "diff": diff if outcome == "survived" else ""}  # fmt: skip


def score(name: str, paths, tests, n: int, seed: int, pool, clone: Path, timeout: float) -> dict:
    if run_tests(clone, tests, timeout) != "survived":  # the unmutated code must pass its tests
        return {"baseline": "fails", "tests": tests, "results": []}
    every = mutations(paths, clone)
    sample = random.Random(f"{seed}:{name}").sample(every, min(n, len(every)))
    jobs = [(rel, op_name, occurrence, line, tests, timeout) for rel, op_name, _, occurrence, line in sample]
    results = []
    for r in pool.imap(_one, jobs):
        if r:
            results.append(r)
            print(f"  {name}: {r['operator']} at {r['module']}:{r['line']} -> {r['outcome']}", flush=True)
    known = equivalents()
    for r in results:
        if r["outcome"] == "survived":
            r["equivalent"] = equivalent_reason(r, known)
    killed = sum(r["outcome"].startswith("killed") for r in results)
    equiv = sum(bool(r.get("equivalent")) for r in results)
    scored = len(results) - equiv
    lo, hi = wilson(killed, scored)
    return {"baseline": "passes", "mutants": len(every), "sampled": len(results), "killed": killed,
            "equivalent": equiv, "kill_rate": killed / max(scored, 1),
            "raw_kill_rate": killed / max(len(results), 1), "ci95": [lo, hi], "tests": tests,
            "results": results}  # fmt: skip


def _diff(before: str, after: str, rel: str) -> str:
    import difflib

    lines = difflib.unified_diff(before.splitlines(), after.splitlines(), rel, rel, n=0, lineterm="")
    return "\n".join(list(lines)[2:])


def summary_line(name: str, m: dict) -> str:
    if m.get("baseline") == "fails":
        return f"{name}: NOT SCORED -- its tests fail on the unmutated code ({', '.join(m['tests'])})"
    ci = f"{m['ci95'][0]:.0%}-{m['ci95'][1]:.0%}"
    scored = m["sampled"] - m["equivalent"]
    return (f"{name}: killed {m['killed']}/{scored} ({m['kill_rate']:.0%}, 95% CI {ci}; {m['equivalent']} "
            f"equivalent; raw {m['raw_kill_rate']:.0%}) of {m['mutants']} mutants")  # fmt: skip


def markdown_table(report: dict) -> str:
    """Per module: the kill rate (killed / non-equivalent sampled) with its interval, the raw rate, the
    equivalents and the module's mutants; the README and docs/testing.md quote it."""
    rows = [
        "| module | killed | kill rate (95% CI) | equivalent | raw rate | mutants |",
        "|---|---|---|---|---|---|",
    ]
    for name, m in report["modules"].items():
        if m.get("baseline") == "fails":
            rows.append(f"| {name} | not scored: its tests fail unmutated | | | | |")
            continue
        lo, hi = m["ci95"]
        scored = m["sampled"] - m["equivalent"]
        rate = f"{m['kill_rate']:.0%} ({lo:.0%}-{hi:.0%})"
        rows.append(
            f"| `{name}` | {m['killed']}/{scored} | {rate} | {m['equivalent']} | {m['raw_kill_rate']:.0%} "
            f"| {m['mutants']} |"
        )
    return "\n".join(rows)


def survivors_markdown(report: dict) -> str:
    """Every survivor of the last pass with its diff and disposition (equivalent and why, or not argued)."""
    out = [
        "# Surviving mutants of the generated pass",
        "",
        f"`python .ci/mutation_score.py --per-module {report['per_module']} --seed {report['seed']}` at "
        f"commit `{report['commit'][:12]}` ({report['date']}); written by the script. A survivor is either "
        "equivalent (reason from `.ci/mutation_equivalents.json`) or NOT ARGUED (to be killed by a test).",
        "",
    ]
    for name, m in report["modules"].items():
        out += [f"## {name}", "", summary_line(name, m), ""]
        for r in m["results"]:
            if r["outcome"] != "survived":
                continue
            why = f"equivalent: {r['equivalent']}" if r.get("equivalent") else "**NOT ARGUED**"
            out += [f"* `{r['module']}:{r['line']}` {r['operator']} -- {why}", "", "  ```diff"]
            out += [f"  {line}" for line in r["diff"].splitlines()] + ["  ```", ""]
    return "\n".join(out) + "\n"


def rescore(report: dict) -> dict:
    """``report`` with its survivors' dispositions and scores recomputed from the current equivalents."""
    known = equivalents()
    for m in report["modules"].values():
        if m.get("baseline") == "fails":
            continue
        for r in m["results"]:
            if r["outcome"] == "survived":
                r["equivalent"] = equivalent_reason(r, known)
        killed, equiv = m["killed"], sum(bool(r.get("equivalent")) for r in m["results"])
        scored = m["sampled"] - equiv
        m.update(equivalent=equiv, kill_rate=killed / max(scored, 1), ci95=list(wilson(killed, scored)))
        m["raw_kill_rate"] = killed / max(m["sampled"], 1)
    return report


def _parser():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--per-module", type=int, default=40)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modules", nargs="+", choices=sorted(MODULES), default=sorted(MODULES))
    p.add_argument("--timeout", type=float, default=300.0, help="seconds per mutant's test run")
    p.add_argument("--out", default=str(ROOT / ".ci" / "mutation_results.json"))
    p.add_argument("--survivors", default=str(ROOT / ".ci" / "mutation_survivors.md"),
                   help="where the survivors and their dispositions are listed ('' for nowhere)")  # fmt: skip
    p.add_argument("--jobs", type=int, default=1, help="mutants tested at once, each in a clone of its own")
    p.add_argument(
        "--retest",
        metavar="FILE",
        help="run only the survivors of an earlier result FILE against HEAD's tests",
    )
    p.add_argument(
        "--rescore",
        metavar="FILE",
        help="re-read the equivalents for FILE's survivors; rewrite it and --survivors",
    )
    return p


def _run(a, pool, clones) -> None:
    """The sampled pass over ``a.modules``; the report is written after each module."""
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout
    report = {"commit": commit.strip(), "date": time.strftime("%Y-%m-%d"), "seed": a.seed,
              "per_module": a.per_module, "modules": {}}  # fmt: skip
    for name in a.modules:
        paths, tests = MODULES[name]
        print(f"{name}: {', '.join(paths)} against {', '.join(tests)}", flush=True)
        m = score(name, paths, tests, a.per_module, a.seed, pool, clones[0], a.timeout)
        report["modules"][name] = m
        print(summary_line(name, m), flush=True)
        Path(a.out).write_text(json.dumps(report, indent=2))
        if a.survivors:
            Path(a.survivors).write_text(survivors_markdown(report))


def _retest(a, pool) -> None:
    """The survivors of an earlier pass, again, against the tests at HEAD (the modules' sources unchanged)."""
    old = json.loads(Path(a.retest).read_text())
    for name, m in old["modules"].items():
        if name not in a.modules:
            continue
        tests = MODULES[name][1]
        todo = [r for r in m["results"] if r["outcome"] == "survived"]
        jobs = [(r["module"], r["operator"], r["occurrence"], r["line"], tests, a.timeout) for r in todo]
        left = 0
        for was, now in zip(todo, pool.imap(_one, jobs)):
            same = now and changed_lines(now.get("diff") or was["diff"]) == changed_lines(was["diff"])
            outcome = now.get("outcome", "not applied") if same or not now.get("diff") else "source changed"
            left += outcome == "survived"
            print(f"  {name}: {was['operator']} at {was['module']}:{was['line']} -> {outcome}", flush=True)
        print(f"{name}: {left} of {len(todo)} survivors still survive", flush=True)


def main(argv=None) -> int:
    a = _parser().parse_args(argv)
    if a.rescore:
        report = rescore(json.loads(Path(a.rescore).read_text()))
        Path(a.rescore).write_text(json.dumps(report, indent=2))
        if a.survivors:
            Path(a.survivors).write_text(survivors_markdown(report))
        print(markdown_table(report))
        return 0
    import multiprocessing

    with tempfile.TemporaryDirectory(prefix="simtheory-mutation-") as tmp:
        clones = [Path(tmp) / f"repo{k}" for k in range(a.jobs)]
        for clone in clones:
            subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        ctx = multiprocessing.get_context("spawn")
        counter = ctx.Value("i", 0)
        with ctx.Pool(a.jobs, initializer=_init, initargs=(clones, counter)) as pool:
            _retest(a, pool) if a.retest else _run(a, pool, clones)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
