"""pytest plugin for property tests against simulations (loaded automatically via the ``pytest11``
entry point once simtheory is installed).

Fixtures:

* ``sim_runs``: ``sim_runs(task, model, init, **train_kwargs)`` trains with
  :func:`simtheory.simulate.train` and caches the result for the whole test session, so several
  tests can share one GD run (the key is the full set of arguments; runs are seeded, so a cached
  run is the run you would get again).
* ``compare_curves``: ``compare_curves(actual, desired, rtol=None, atol=None)`` is
  :func:`simtheory.testing.assert_curves_close`; when it fails, it writes a figure of both curves
  (and their difference) to ``<pytest basetemp>/simtheory-failures/<test>.png`` and names the file
  in the failure message.
"""

from __future__ import annotations

import re

import numpy as np
import pytest


def _key(value):
    if isinstance(value, np.ndarray):
        return ("ndarray", value.shape, value.tobytes())
    if isinstance(value, (list, tuple)):
        return tuple(_key(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _key(v)) for k, v in value.items()))
    return value


@pytest.fixture(scope="session")
def sim_runs():
    from simtheory.simulate import train

    cache = {}

    def run(task, model, init, **kwargs):
        key = (
            _key(task.to_dict()),
            model,
            _key(init.kind),
            init.scale,
            _key(list(init.arrays)),
            _key(kwargs),
        )
        if key not in cache:
            cache[key] = train(task, model, init, **kwargs)
        return cache[key]

    run.cache = cache
    return run


def _figure(actual, desired, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from simtheory.curves import Curves

    t = actual.times if isinstance(actual, Curves) else None
    a = np.asarray(actual.W if isinstance(actual, Curves) else actual, dtype=float)
    d = np.asarray(desired.W if isinstance(desired, Curves) else desired, dtype=float)
    if t is None and isinstance(desired, Curves):
        t = desired.times
    # the time axis: (..., T, d, d) for matrices, (..., T) for scalar curves; batch axes become more lines
    axis = -3 if a.ndim >= 3 else -1
    d = np.broadcast_to(d, np.broadcast_shapes(a.shape, d.shape))
    a2 = np.moveaxis(a, axis, 0).reshape(a.shape[axis], -1)
    d2 = np.moveaxis(d, axis, 0).reshape(d.shape[axis], -1)
    x = np.arange(a2.shape[0]) if t is None else t
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(7.0, 2.8))
    for k in range(a2.shape[1]):
        ax1.plot(x, d2[:, k], color="0.6", lw=2)
        ax1.plot(x, a2[:, k], "--", lw=1)
    ax1.set_title("desired (grey) vs actual (dashed)", fontsize=9)
    gap = np.abs(a2 - d2).max(axis=1)
    floor = max(gap.max() * 1e-12, np.finfo(float).tiny * 1e10)  # readable axes: 12 decades at most
    ax2.semilogy(x, np.maximum(gap, floor))
    ax2.set_ylim(bottom=floor)
    ax2.set_title("max |actual - desired| per time", fontsize=9)
    for ax in (ax1, ax2):
        ax.set_xlabel("t" if t is not None else "time index")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


@pytest.fixture
def compare_curves(request, tmp_path_factory):
    from simtheory.testing import assert_curves_close

    def compare(actual, desired, rtol=None, atol=None, err_msg=""):
        try:
            assert_curves_close(actual, desired, rtol=rtol, atol=atol, err_msg=err_msg)
        except AssertionError as exc:
            name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.name)
            path = tmp_path_factory.getbasetemp() / "simtheory-failures" / f"{name}.png"
            try:
                _figure(actual, desired, path)
                where = f"comparison figure: {path}"
            except Exception as fig_exc:  # the figure must never hide the assertion itself
                where = f"(no comparison figure: {type(fig_exc).__name__}: {fig_exc})"
            raise AssertionError(f"{exc}\n{where}") from None

    return compare
