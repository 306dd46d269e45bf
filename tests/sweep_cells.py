"""Cell functions for tests/test_sweep.py: a module outside the package, as a user's would be (the Dask
workers and the killed subprocess import it through PYTHONPATH)."""

import time

import numpy as np

from simtheory import sweep


@sweep.cell
def slow_cell(x: float, delay: float = 0.0) -> dict:
    """Arrays that depend on x, after ``delay`` seconds (so a sweep can be killed between cells)."""
    time.sleep(delay)
    rng = np.random.default_rng(int(x * 1000))
    return {"y": np.arange(4) * x, "noise": rng.standard_normal(3)}


@sweep.cell
def failing_cell(x: float) -> dict:
    if x > 1:
        raise ValueError("x must be <= 1 for this cell")
    return {"y": np.array([x])}


@sweep.cell
def threads_cell(x: float) -> dict:
    """The thread counts simtheory's policy and torch use inside a cell."""
    import torch

    from simtheory import _threads

    return {"policy": np.array([_threads.for_work(1e12)]), "torch": np.array([torch.get_num_threads()])}


def registered(name: str) -> bool:
    """Whether this process's model registry holds ``name`` (asked of Dask workers)."""
    from simtheory import models

    return name in models.names()


def unmarked(x: float) -> dict:
    """Not a sweep cell: a sweep file naming it is refused."""
    return {"y": np.array([x])}


@sweep.cell(torch=False)
def counted_cell(x: float, log: str, delay: float = 0.2, barrier: str = "") -> dict:
    """Appends "start <x> <pid>" to ``log`` when it starts (after its claim), waits for the file ``barrier``
    (if given: a test opens it once every process holds a cell), then works ``delay`` seconds: a concurrency
    test counts who computed what."""
    import os
    from pathlib import Path

    with open(log, "a") as fh:
        fh.write(f"start {x} {os.getpid()}\n")
    deadline = time.time() + 120
    while barrier and not Path(barrier).exists():
        if time.time() > deadline:
            raise TimeoutError(f"barrier {barrier} never opened")
        time.sleep(0.01)
    time.sleep(delay)
    return {"y": np.arange(3) * x}


@sweep.cell(torch=False)
def shaped_cell(x: float, kind: str = "arrays"):
    """Results of several kinds for the sweep's checks: ``int(x)`` values (with ``kind="extra"`` a second
    variable), an empty dict, a list, or a record holding a NaN."""
    if kind == "empty":
        return {}
    if kind == "list":
        return [x]
    if kind == "nan":
        return sweep.Record({"x": x, "v": float("nan")})
    y = np.arange(int(x), dtype=float)
    return {"y": y, "z": -y} if kind == "extra" else {"y": y}


@sweep.cell(torch=False)
def rendezvous_cell(x: float, folder: str) -> dict:
    """Writes ``<folder>/<x>`` and waits (up to 60 s) until two such files exist: it completes only where two
    cells run at the same time. Returns its process id."""
    import os
    from pathlib import Path

    Path(folder, str(x)).write_text(str(os.getpid()))
    deadline = time.time() + 60
    while len(list(Path(folder).iterdir())) < 2:
        if time.time() > deadline:
            raise TimeoutError("the other cell never started: cells ran one at a time")
        time.sleep(0.01)
    return {"pid": np.array([os.getpid()])}
