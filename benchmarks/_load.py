"""Timing helpers shared by the benchmarks: best-of timing, and the same measurement alone and next to
one CPU-bound process (the situation of a shared machine).

``busy()`` starts a separate Python process that spins on one core and stops it by its own PID when
the block ends (also on an exception or Ctrl-C), so a benchmark never leaves a spinner behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time

import numpy as np


def best_of(fn, repeat: int = 3):
    """(best wall time over ``repeat`` calls, the last result)."""
    best, out = np.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


@contextlib.contextmanager
def busy(n: int = 1):
    """Run the block next to ``n`` processes that each keep one core busy (pure-Python spin loops)."""
    procs = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"], stdin=subprocess.DEVNULL)
        for _ in range(n)
    ]
    try:
        time.sleep(0.3)  # let them start spinning
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"busy process {p.pid} exited with {p.returncode}")
        yield [p.pid for p in procs]
    finally:
        for p in procs:
            with contextlib.suppress(ProcessLookupError):
                os.kill(p.pid, signal.SIGTERM)
            p.wait(timeout=10)


def alone_and_loaded(measure, loaded: bool = True):
    """``measure()`` (which returns a dict of numbers) alone and, if ``loaded``, next to one busy process:
    ``{"alone": ..., "loaded": ...}``."""
    out = {"alone": measure()}
    if loaded:
        with busy(1):
            out["loaded"] = measure()
    return out


def show(label: str, runs: dict, fmt) -> None:
    """Print one line per condition: ``label [alone]: fmt(numbers)``."""
    for cond, numbers in runs.items():
        print(f"{label} [{cond}]: {fmt(numbers)}", flush=True)
