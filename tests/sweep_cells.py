"""Cell functions for tests/test_sweep.py: a module outside the package, as a user's would be (the Dask
workers and the killed subprocess import it through PYTHONPATH)."""

import time

import numpy as np


def slow_cell(x: float, delay: float = 0.0) -> dict:
    """Arrays that depend on x, after ``delay`` seconds (so a sweep can be killed between cells)."""
    time.sleep(delay)
    rng = np.random.default_rng(int(x * 1000))
    return {"y": np.arange(4) * x, "noise": rng.standard_normal(3)}


def failing_cell(x: float) -> dict:
    if x > 1:
        raise ValueError("x must be <= 1 for this cell")
    return {"y": np.array([x])}


def threads_cell(x: float) -> dict:
    """The thread counts simtheory's policy and torch use inside a cell."""
    import torch

    from simtheory import _threads

    return {"policy": np.array([_threads.for_work(1e12)]), "torch": np.array([torch.get_num_threads()])}


def registered(name: str) -> bool:
    """Whether this process's model registry holds ``name`` (asked of Dask workers)."""
    from simtheory import models

    return name in models.names()
