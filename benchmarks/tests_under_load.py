"""The test suite (or part of it) alone and next to one CPU-bound process, in fresh pytest processes.

    python benchmarks/tests_under_load.py                                  # the default suite (~25 min)
    python benchmarks/tests_under_load.py tests/test_theory.py tests/test_simulate.py

Prints the wall time of each run and the ratio; the goal of the thread policy is <= 1.5x.
"""

from __future__ import annotations

import subprocess
import sys
import time

from _load import busy


def run(args) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args])
    if proc.returncode != 0:
        raise SystemExit(f"pytest failed ({proc.returncode})")
    return time.perf_counter() - t0


def main(argv=None):
    args = list(sys.argv[1:] if argv is None else argv)
    alone = run(args)
    with busy(1):
        loaded = run(args)
    what = " ".join(args) or "the default suite"
    print(
        f"pytest {what}: alone {alone:.0f} s, next to a busy process {loaded:.0f} s, "
        f"ratio {loaded / alone:.2f}"
    )


if __name__ == "__main__":
    main()
