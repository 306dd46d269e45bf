"""Thread counts of the numerical libraries: a policy by size, a user override, scoped and restored.

Small-matrix work gains nothing from threads and collapses when two thread pools share the cores (the
batched ``symmetric_flow`` took 2.2 s instead of 0.25 s next to one busy process on 2 cores, with
OpenBLAS's default threads), and a reduction split over a different number of threads can round
differently. So simtheory's predictors and :func:`~simtheory.simulate.train` run their work with the
threads its size warrants (:func:`for_work`): one thread below :data:`PARALLEL_FLOPS` per operation, more
only for work that large. :func:`threads` overrides the policy for a block; :func:`limited` pins BLAS /
OpenMP (through threadpoolctl) and torch's intra-op pool for a block and restores them after.
"""

from __future__ import annotations

import contextvars
import glob
import importlib.util
import os
import sys
import time
from contextlib import contextmanager

from . import _checks

#: flops per elementary operation (one matmul of the hot loop) from which a second thread pays, measured on
#: 2 cores with ``benchmarks/threads.py`` (200 SGD steps of symmetric ensembles, float32): 2 threads vs 1
#: alone: 1.0x at 4e3 flops per matmul (d = 2, 16 members), 1.1x at 1.3e5, 1.4-1.7x at 5.2e5 (d = 8, 64
#: members), 1.3-1.4x at 1.7e7 (d = 64), 1.9x at 1.3e8; next to one busy process 2 threads were 1.5-4.6x
#: slower than 1 at every size. Hence: threads only from this size, and only on cores no other process
#: runs on.
PARALLEL_FLOPS = 3e5

_OVERRIDE: contextvars.ContextVar = contextvars.ContextVar("simtheory_threads", default=None)
_CONTROLLER = {"modules": -1, "controller": None}


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # platforms without affinity (macOS, Windows)
        return os.cpu_count() or 1


@contextmanager
def threads(n: int | None):
    """Run simtheory's numerical work in the block on ``n`` threads (``None``: the size-based policy).

    >>> with sim.threads(2):  # doctest: +SKIP
    ...     run = train(task, model, init, lr=0.01, steps=1000, seeds=range(64))
    """
    if n is not None:
        n = _checks.positive_int(n, "threads", maximum=4096)
    token = _OVERRIDE.set(n)
    try:
        yield
    finally:
        _OVERRIDE.reset(token)


def _own_running() -> int:
    """Threads of this process in the running state (OpenMP workers spin for a while after a parallel
    region, and count as running in ``/proc/loadavg``)."""
    n = 0
    for stat in glob.glob("/proc/self/task/*/stat"):
        try:
            with open(stat) as fh:
                n += fh.read().rsplit(")", 1)[1].split()[0] == "R"
        except (OSError, IndexError):
            continue
    return max(n, 1)


def free_cores(own: int = 0) -> int:
    """Cores not taken by other processes' running threads right now (Linux: ``/proc/loadavg``'s count of
    running tasks, less this process's own and ``own`` more of ours, e.g. worker processes this process
    started); :func:`cores` where that count is not available."""
    n = cores()
    others = []
    for _ in range(3):  # the least of three looks a millisecond apart: short-lived processes come and go
        running = _running_tasks()
        if running is None:
            return n
        others.append(running - _own_running() - own)
        time.sleep(0.001)
    return max(1, min(n, n - max(0, min(others))))


def _running_tasks() -> int | None:
    """Tasks running on the machine now (``/proc/loadavg``'s fourth field), or None where unavailable."""
    try:
        with open("/proc/loadavg") as fh:
            return int(fh.read().split()[3].split("/")[0])
    except (OSError, ValueError, IndexError):
        return None


def for_work(flops: float) -> int:
    """Threads for work whose elementary operations cost ``flops`` each: the :func:`threads` override if
    one is active, else 1 below :data:`PARALLEL_FLOPS` and one more per multiple of it, up to the
    :func:`free_cores` (next to a busy process two threads were 1.7-2.2x slower than one, at every size)."""
    override = _OVERRIDE.get()
    if override is not None:
        return override
    if flops < PARALLEL_FLOPS:
        return 1
    return int(max(1, min(free_cores(), 1 + flops // PARALLEL_FLOPS)))


def _controller():
    """A cached threadpoolctl controller (building one scans the loaded libraries: 1-2 ms; using it costs
    ~15 us), rebuilt when modules were imported since (they may have loaded another native pool)."""
    if _CONTROLLER["modules"] != len(sys.modules):
        from threadpoolctl import ThreadpoolController

        _CONTROLLER["controller"] = ThreadpoolController()
        _CONTROLLER["modules"] = len(sys.modules)
    return _CONTROLLER["controller"]


@contextmanager
def limited(n: int = 1, *, torch: bool | None = None):
    """Run the block with ``n`` BLAS/OpenMP threads and ``n`` torch intra-op threads; restore both after.

    ``torch``: also pin torch (imported here if it is installed and not yet imported, so that a block that
    imports it first still runs on ``n`` threads); ``None`` pins it only when it is already imported.
    """
    n = _checks.positive_int(n, "threads", maximum=4096)
    if torch and "torch" not in sys.modules and importlib.util.find_spec("torch") is not None:
        import torch as _torch  # noqa: F401  (imported so that its pool is pinned below)
    tmod = sys.modules.get("torch") if torch is not False else None
    before = tmod.get_num_threads() if tmod is not None else None
    if tmod is not None and before != n:
        tmod.set_num_threads(n)
    limits = _controller().limit(limits=n)
    try:
        yield
    finally:
        limits.restore_original_limits()
        if tmod is not None and before != n:
            tmod.set_num_threads(before)


@contextmanager
def for_size(flops: float, *, torch: bool | None = None):
    """:func:`limited` to :func:`for_work` ``(flops)`` threads; yields the count."""
    n = for_work(flops)
    with limited(n, torch=torch):
        yield n
