"""Thread counts of the numerical libraries, scoped and restored.

Small-matrix work gains nothing from threads and collapses when two thread pools share the cores, and a
reduction split over a different number of threads can round differently. :func:`limited` pins BLAS /
OpenMP (through threadpoolctl) and torch's intra-op pool for the duration of a block.
"""

from __future__ import annotations

import importlib.util
import sys
from contextlib import contextmanager

from . import _checks


@contextmanager
def limited(n: int = 1, *, torch: bool | None = None):
    """Run the block with ``n`` BLAS/OpenMP threads and ``n`` torch intra-op threads; restore both after.

    ``torch``: also pin torch (imported here if it is installed and not yet imported, so that a block that
    imports it first still runs on ``n`` threads); ``None`` pins it only when it is already imported.
    """
    from threadpoolctl import threadpool_limits

    n = _checks.positive_int(n, "threads", maximum=4096)
    if torch and "torch" not in sys.modules and importlib.util.find_spec("torch") is not None:
        import torch as _torch  # noqa: F401  (imported so that its pool is pinned below)
    tmod = sys.modules.get("torch") if torch is not False else None
    before = tmod.get_num_threads() if tmod is not None else None
    if tmod is not None:
        tmod.set_num_threads(n)
    try:
        with threadpool_limits(limits=n):
            yield
    finally:
        if tmod is not None:
            tmod.set_num_threads(before)
