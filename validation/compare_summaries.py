"""Compare the numbers of two ``simtheory reproduce`` runs.

``python -m validation.compare_summaries OLD NEW``: every number of both ``summary.json`` files is matched by
its path (a validation's checks by their names, stored as ``checks`` or as ``claims`` with ``value``);
prints the paths present on one side only and every number that differs by more than ``--rtol`` (relative) and
``--atol``. Exits 1 when a number differs or is missing. Wall-clock times, file paths and versions are not
numbers of the run and are skipped.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

SKIP = {
    "figures",
    "captions",
    "provenance",
    "versions",
    "git",
    "out",
}  # paths and versions, not numbers of a run


def _skipped(key) -> bool:
    """Keys that are not numbers of the run: the set above and wall-clock times (``*_s``, ``*seconds``)."""
    key = str(key)
    return key in SKIP or key.endswith(("_s", "seconds"))


def _normalise(x):
    """Checks (older reports: ``checks`` with ``value``) and claims (``claims`` with ``value``) become one
    ``checks`` mapping name -> number; keys that are not numbers of the run are dropped."""
    if isinstance(x, list):
        return [_normalise(v) for v in x]
    if not isinstance(x, dict):
        return x
    out = {k: _normalise(v) for k, v in x.items() if k not in ("checks", "claims") and not _skipped(k)}
    checks = {
        c["name"]: c["value"]
        for key in ("checks", "claims")
        for c in x.get(key) or []
        if isinstance(c, dict) and c.get("value") is not None
    }
    if checks:
        out["checks"] = checks
    return out


def _leaves(x, path=""):
    if isinstance(x, dict):
        for k, v in x.items():
            yield from _leaves(v, f"{path}/{k}")
    elif isinstance(x, list):
        for i, v in enumerate(x):
            yield from _leaves(v, f"{path}[{i}]")
    elif isinstance(x, bool) or x is None or isinstance(x, str):
        yield path, x
    elif isinstance(x, (int, float)):
        yield path, float(x)


def numbers(summary: dict) -> dict:
    """Every value of a summary by its path, checks and claims keyed by name."""
    return dict(_leaves(_normalise(summary)))


def compare(old: dict, new: dict, rtol: float, atol: float) -> list[str]:
    a, b = numbers(old), numbers(new)
    problems = [f"only in OLD: {p}" for p in sorted(set(a) - set(b))]
    problems += [f"only in NEW: {p}" for p in sorted(set(b) - set(a))]
    for p in sorted(set(a) & set(b)):
        x, y = a[p], b[p]
        if isinstance(x, float) and isinstance(y, float):
            same = (
                (math.isnan(x) and math.isnan(y)) or x == y or abs(x - y) <= atol + rtol * max(abs(x), abs(y))
            )
        else:
            same = x == y
        if not same:
            problems.append(f"differs: {p}: {x!r} -> {y!r}")
    return problems


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0].rstrip("."))
    p.add_argument("old", help="run directory (or summary.json) before")
    p.add_argument("new", help="run directory (or summary.json) after")
    p.add_argument("--rtol", type=float, default=1e-9)
    p.add_argument("--atol", type=float, default=1e-12)
    a = p.parse_args(argv)
    paths = [Path(x) / "summary.json" if Path(x).is_dir() else Path(x) for x in (a.old, a.new)]
    for path in paths:
        if not path.is_file():
            p.error(f"no summary.json at {path}")
    old, new = (json.loads(path.read_text()) for path in paths)
    problems = compare(old, new, a.rtol, a.atol)
    n = len(numbers(new))
    print(f"{n} values compared; {len(problems)} differences (rtol {a.rtol:g}, atol {a.atol:g})")
    for line in problems:
        print("  " + line)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
