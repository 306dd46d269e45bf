"""The default test suite under each OpenBLAS kernel this CPU can run (a script you run by hand; the tests'
and CI's environment is not changed).

    python .ci/openblas_kernels.py [--kernels Haswell SkylakeX Zen Sandybridge] [--out FILE]

NumPy's and SciPy's OpenBLAS pick a kernel for the CPU at start-up; ``OPENBLAS_CORETYPE`` forces one. The
kernels round differently (a different blocking of the same products), so a test that asserts an internal
path a solver takes -- not what users rely on -- can pass under one and fail under another. For every
kernel this prints the architecture OpenBLAS reports (threadpoolctl: it must be the one asked for) and
pytest's summary line, and writes them to ``--out`` (default ``.ci/openblas_kernels.txt``) with the commit.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
KERNELS = ("Haswell", "SkylakeX", "Zen", "Sandybridge")


def architecture(kernel: str) -> str:
    probe = (
        "import numpy, scipy.linalg; from threadpoolctl import threadpool_info; "
        "print(sorted({i.get('architecture') for i in threadpool_info() "
        "if i.get('internal_api') == 'openblas'}))"
    )
    env = {**os.environ, "OPENBLAS_CORETYPE": kernel}
    return subprocess.run(
        [sys.executable, "-c", probe], env=env, capture_output=True, text=True
    ).stdout.strip()


def run(kernel: str) -> tuple[int, str, float]:
    env = {**os.environ, "OPENBLAS_CORETYPE": kernel, "HYPOTHESIS_PROFILE": "ci"}
    start = time.perf_counter()
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    summary = [line for line in res.stdout.splitlines() if " passed" in line or " failed" in line]
    failed = [line for line in res.stdout.splitlines() if line.startswith("FAILED")]
    return res.returncode, "\n".join(failed + summary[-1:]), time.perf_counter() - start


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kernels", nargs="+", default=list(KERNELS))
    p.add_argument("--out", default=str(ROOT / ".ci" / "openblas_kernels.txt"))
    a = p.parse_args(argv)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True
    ).stdout.strip()
    lines = [f"# the default suite under each OpenBLAS kernel, commit {commit}, {time.strftime('%Y-%m-%d')}"]
    worst = 0
    for kernel in a.kernels:
        arch = architecture(kernel)
        code, summary, seconds = run(kernel)
        worst = max(worst, code)
        lines.append(f"OPENBLAS_CORETYPE={kernel} (OpenBLAS reports {arch}), {seconds:.0f} s: {summary}")
        print(lines[-1], flush=True)
        Path(a.out).write_text("\n".join(lines) + "\n")
    return worst


if __name__ == "__main__":
    raise SystemExit(main())
