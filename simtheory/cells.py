"""The built-in cells of :mod:`simtheory.sweep` for the SIM task: one prediction (:func:`predict_cell`) or
one GD ensemble (:func:`train_cell`) per cell, with flat JSON parameters (``mu_1, mu_2, ...``)."""

from __future__ import annotations

import numpy as np

from . import _checks
from .curves import Curves
from .sweep import cell


def _vector(kwargs: dict, name: str, default=None):
    """``name`` as a list, or ``name_1, name_2, ...`` collected from the cell's parameters."""
    numbered = sorted(
        (int(k[len(name) + 1 :]), k)
        for k in kwargs
        if k.startswith(f"{name}_") and k[len(name) + 1 :].isdigit()
    )
    if name in kwargs and numbered:
        raise ValueError(f"give {name} as a list or as {name}_1, {name}_2, ..., not both")
    if numbered:
        if [i for i, _ in numbered] != list(range(1, len(numbered) + 1)):
            raise ValueError(
                f"{name}_k parameters must be numbered 1, 2, ..., got {[k for _, k in numbered]}"
            )
        return [kwargs.pop(k) for _, k in numbered]
    if name in kwargs:
        return kwargs.pop(name)
    if default is None:
        raise ValueError(f"the cell needs {name} (a list) or {name}_1, {name}_2, ...")
    return default


def _task(kwargs: dict):
    from .task import SIMTask

    mu = _vector(kwargs, "mu")
    sigma = _vector(kwargs, "sigma", 0.05)
    return SIMTask(mu, sigma, d=kwargs.pop("d", None), origin=kwargs.pop("origin", False))


def _user_models(kwargs: dict) -> None:
    """Import the cell's ``model_module`` (a user's module of models) where the cell runs: a Dask worker is
    a process of its own, whose registry holds only what it imported."""
    from .models import load_module

    module = kwargs.pop("model_module", None)
    if module is not None:
        load_module(module, "model_module")


def _leftover(kwargs: dict, cell: str) -> None:
    if kwargs:
        raise ValueError(f"{cell} got unknown parameters {sorted(kwargs)}")


@cell(torch=False)
def predict_cell(**params) -> Curves:
    """A built-in cell: :func:`simtheory.predict` for one setting.

    Parameters: ``mu`` (list) or ``mu_1, mu_2, ...``; ``sigma`` (scalar or list) or ``sigma_1, ...``
    (default 0.05); ``d``, ``origin``; ``model`` (default "symmetric"; a user's model with ``model_module``,
    the dotted name of the module that registers it, imported where the cell runs), ``convention``; the start
    :func:`simtheory.models.initial_state` makes from ``init`` ("rand"), ``init_scale`` (0.2), ``seed`` (0),
    ``layers`` (3); times ``t_max`` (50), ``n_times`` (200), ``log_times`` (False); solver ``rtol``/``atol``.
    """
    from .curves import predict
    from .models import initial_state
    from .swingby import time_grid

    kw = dict(params)
    _user_models(kw)
    task = _task(kw)
    model = kw.pop("model", "symmetric")
    W0 = initial_state(
        model,
        task.d,
        init=kw.pop("init", "rand"),
        scale=kw.pop("init_scale", 0.2),
        seed=kw.pop("seed", 0),
        layers=kw.pop("layers", 3),
    )
    t_max = _checks.real_number(kw.pop("t_max", 50.0), "t_max", low=0.0, low_open=True)
    n_times = _checks.positive_int(kw.pop("n_times", 200), "n_times", minimum=2, maximum=1_000_000)
    t = time_grid(t_max, n_times) if kw.pop("log_times", False) else np.linspace(0.0, t_max, n_times)
    convention = kw.pop("convention", "gradient-flow")
    solver = {k: kw.pop(k) for k in ("rtol", "atol", "method") if k in kw}
    _leftover(kw, "predict_cell")
    return predict(task, W0, t, model=model, convention=convention, **solver)


@cell(torch=True)
def train_cell(**params) -> Curves:
    """A built-in cell: :func:`simtheory.simulate.train` for one setting (an ensemble of ``members`` runs).

    Parameters: the task as in :func:`predict_cell`; ``model`` (a simulator kind, default "symmetric"; a
    user's with ``model_module`` as in :func:`predict_cell`),
    ``widths`` (list), ``bias``; ``init`` (an :class:`~simtheory.simulate.Init` kind, default "gaussian"),
    ``init_scale`` (1e-2); ``lr`` (0.05), ``steps`` (2000), ``n`` points per cluster (100), ``batch_size``
    (None: full batch), ``seed`` (first init seed, 0) and ``members`` (1: seeds ``seed, seed + 1, ...``),
    ``loss`` ("sim"), ``dtype`` ("float64").
    """
    from . import simulate

    kw = dict(params)
    _user_models(kw)
    task = _task(kw)
    model = simulate.Model(
        kw.pop("model", "symmetric"), tuple(kw.pop("widths", ())), bias=kw.pop("bias", False)
    )
    init = simulate.Init(kw.pop("init", "gaussian"), kw.pop("init_scale", 1e-2))
    seed = _checks.seed_value(kw.pop("seed", 0))
    members = _checks.positive_int(kw.pop("members", 1), "members", maximum=100_000)
    train_kw = {k: kw.pop(k) for k in ("n", "batch_size", "loss", "dtype") if k in kw}
    lr, steps = kw.pop("lr", 0.05), kw.pop("steps", 2000)
    _leftover(kw, "train_cell")
    seeds = tuple(seed + m for m in range(members))
    return simulate.train(task, model, init, lr=lr, steps=steps, seeds=seeds, **train_kw).curves


#: the cells a sweep file names by a short name
BUILTIN = {"predict": predict_cell, "train": train_cell}
