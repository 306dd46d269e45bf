"""Sweeps: a grid of settings, one task per cell, one result file per cell; resumable, in-process or on Dask.

::

    from simtheory import sweep

    cells = sweep.grid(mu_2=[0.5, 1.0, 2.0], init_scale=[0.01, 0.1], seed=[0, 1])
    result = sweep.run(sweep.predict_cell, cells, "runs/my-sweep", fixed={"mu_1": 2.0, "t_max": 40.0})
    result.to_xarray()   # one Dataset, the grid's parameters as coordinates
    result.to_pandas()   # tidy: parameter columns, t, quantity, value

How it works:

* A **cell** is one dict of parameters (JSON scalars). Its key is a hash of the function's name, the fixed
  arguments and the cell's parameters, so a cell's file is found again whatever the grid's order, the
  executor or the number of workers.
* The function is called as ``fn(**fixed, **params)`` and returns :class:`~simtheory.Curves`, a mapping
  of names to numeric arrays, or a :class:`Record` (JSON: a validation's report, a run's summary).
  Results come back to the calling process, which writes each cell atomically (``cells/<key>.npz`` and
  its ``.json`` sidecar holding the arrays' hash) as soon as it arrives; the run directory's
  ``manifest.json`` lists the grid. Cells whose files exist and verify are skipped, so an interrupted
  sweep resumes where it stopped and loses only the cells that were running.
* Each cell runs with one BLAS/OpenMP thread and one torch thread (``threads``): the same grid gives
  bit-identical arrays in-process, on a local Dask cluster or on a remote scheduler, and workers sharing a
  machine do not oversubscribe its cores.

Executors: ``"local"`` (in this process, nothing to start), ``"dask"`` (a ``distributed.LocalCluster`` of
``workers`` processes with one thread each, started and closed here; or an existing scheduler given by
``scheduler="tcp://host:8786"``, which is how dask-jobqueue and Kubernetes set-ups are used; or a
``distributed.Client`` passed as ``client``). Dask is optional: ``pip install 'simtheory[distributed]'``.
"""

from __future__ import annotations

import hashlib
import importlib
import io
import itertools
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from . import _checks
from .curves import Curves, atomic_write_bytes, atomic_write_text, provenance

EXECUTORS = ("local", "dask")
_MANIFEST = "manifest.json"
_SCALARS = (bool, int, float, str, type(None))


# -- cells ----------------------------------------------------------------------------------------------


def _scalar(value, name: str):
    """A JSON scalar (numpy scalars converted), finite if a number."""
    if isinstance(value, np.generic):
        value = value.item()
    if not isinstance(value, _SCALARS):
        raise ValueError(
            f"{name} must be a number, a string, a bool or None (a JSON scalar), got {type(value).__name__} "
            f"{value!r}; give vector parameters one axis per entry (mu_1, mu_2, ...)"
        )
    if isinstance(value, float) and not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _jsonable(value, name: str):
    """A JSON value built of scalars, lists and string-keyed dicts (for ``fixed`` arguments)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return [_jsonable(v, f"{name}[{k}]") for k, v in enumerate(list(value))]
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, f"{name}[{k!r}]") for k, v in value.items()}
    return _scalar(value, name)


def grid(**axes) -> list[dict]:
    """The Cartesian product of ``axes`` (name -> list of values), first axis slowest, as a list of cells.

    The axes are remembered (:attr:`SweepResult.axes`) so that :meth:`SweepResult.to_xarray` gives one
    dimension per axis."""
    if not axes:
        raise ValueError("grid needs at least one axis, e.g. grid(seed=[0, 1, 2])")
    clean = {}
    for name, values in axes.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ValueError(f"axis {name!r} must be a list of values, got {values!r}")
        vals = [_scalar(v, f"axis {name!r}") for v in values]
        if not vals:
            raise ValueError(f"axis {name!r} has no values")
        if len(set(map(repr, vals))) != len(vals):
            raise ValueError(f"axis {name!r} repeats a value: {vals}")
        clean[name] = vals
    return _Grid(dict(zip(clean, combo)) for combo in itertools.product(*clean.values())).with_axes(clean)


class _Grid(list):
    """A list of cells that remembers the axes it was built from."""

    axes: dict | None = None

    def with_axes(self, axes: dict) -> "_Grid":
        self.axes = axes
        return self


def _function_name(fn) -> str:
    if not callable(fn):
        raise ValueError(f"fn must be a function, got {fn!r}")
    module = getattr(fn, "__module__", None)
    qualname = getattr(fn, "__qualname__", None)
    if not module or not qualname or "<" in qualname:
        raise ValueError(
            f"fn must be a named, module-level function (a resumed sweep checks it is the same function by "
            f"its name), got {fn!r}"
        )
    return f"{module}:{qualname}"


def resolve(name: str) -> Callable:
    """The function ``"package.module:function"`` (or a built-in cell: ``"predict"``, ``"train"``).

    The module is imported by name, as ``python -m`` would; no code is evaluated from the string."""
    if name in BUILTIN:
        return BUILTIN[name]
    if not isinstance(name, str) or name.count(":") != 1:
        raise ValueError(f"function must be 'predict', 'train' or 'package.module:function', got {name!r}")
    module, attr = name.split(":")
    if not all(part.isidentifier() for part in module.split(".") + attr.split(".")):
        raise ValueError(f"function {name!r}: module and function must be dotted Python names")
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"function {name!r}: cannot import {module!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"function {name!r}: {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"function {name!r} is not callable")
    return obj


@dataclass(frozen=True)
class Cell:
    """One cell: its key (the file stem under ``cells/``) and its parameters."""

    key: str
    params: dict


def _cells(function: str, settings, fixed: dict) -> list[Cell]:
    if isinstance(settings, Mapping) or not isinstance(settings, Iterable):
        raise ValueError("settings must be a list of parameter dicts (sweep.grid(...) makes one)")
    cells, seen = [], {}
    for k, params in enumerate(settings):
        if not isinstance(params, Mapping):
            raise ValueError(f"settings[{k}] must be a dict of parameters, got {params!r}")
        clean = {str(n): _scalar(v, f"settings[{k}][{n!r}]") for n, v in params.items()}
        clash = sorted(set(clean) & set(fixed))
        if clash:
            raise ValueError(f"settings[{k}] sets {clash}, which fixed also sets; give each parameter once")
        blob = json.dumps({"function": function, "fixed": fixed, "params": clean}, sort_keys=True)
        key = hashlib.sha256(blob.encode()).hexdigest()[:20]
        if key in seen:
            raise ValueError(f"settings[{k}] repeats settings[{seen[key]}] ({clean})")
        seen[key] = k
        cells.append(Cell(key, clean))
    if not cells:
        raise ValueError("settings is empty: a sweep needs at least one cell")
    return cells


# -- one cell's result on disk ---------------------------------------------------------------------------


def _paths(run_dir: Path, key: str) -> tuple[Path, Path]:
    base = run_dir / "cells" / key
    return base.with_suffix(".npz"), base.with_suffix(".json")


class Record(dict):
    """A cell result that is a JSON record (numbers, strings, lists, dicts), not arrays: a validation's
    report, a run's summary. Stored in the cell's sidecar; :meth:`SweepResult.to_pandas` gives one row per
    cell with the record's scalar fields as columns."""


def _arrays_of(value, key: str) -> dict:
    if not isinstance(value, Mapping) or not value:
        raise ValueError(
            f"cell {key}: the function must return Curves, sweep.Record or a non-empty dict of numeric "
            "arrays, got "
            f"{type(value).__name__}"
        )
    out = {}
    for name, arr in value.items():
        if not (isinstance(name, str) and name.isidentifier()):
            raise ValueError(f"cell {key}: result names must be identifiers, got {name!r}")
        a = np.asarray(arr)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"cell {key}: result {name!r} must be numeric, got dtype {a.dtype}")
        out[name] = a
    return out


def _write(run_dir: Path, cell: Cell, function: str, fixed: dict, value, seconds: float) -> None:
    npz, side = _paths(run_dir, cell.key)
    record = {"function": function, "params": cell.params, "fixed": fixed, "seconds": round(seconds, 6)}
    if isinstance(value, Curves):
        replace(value, meta={**value.meta, "sweep": record}).to_npz(npz)
        return
    if isinstance(value, Record):
        kind, arrays = "record", {}
        try:
            extra = {"record": json.loads(json.dumps(value, allow_nan=True))}
        except (TypeError, ValueError) as exc:
            raise ValueError(f"cell {cell.key}: the Record must be JSON-serialisable ({exc})") from None
    else:
        kind, arrays, extra = "arrays", _arrays_of(value, cell.key), {}
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    data = buf.getvalue()
    atomic_write_bytes(npz, data)
    meta = {"kind": kind, **extra, "sweep": record, "provenance": provenance()}
    meta["arrays_sha256"] = hashlib.sha256(data).hexdigest()
    atomic_write_text(side, json.dumps(meta, indent=2))


def _done(run_dir: Path, key: str) -> bool:
    """The cell's pair exists and belongs together (the sidecar's hash of the arrays)."""
    npz, side = _paths(run_dir, key)
    if not (npz.is_file() and side.is_file()):
        return False
    try:
        want = json.loads(side.read_text()).get("arrays_sha256")
    except (OSError, ValueError, AttributeError):
        return False
    return want == hashlib.sha256(npz.read_bytes()).hexdigest()


def _load(run_dir: Path, key: str):
    npz, side = _paths(run_dir, key)
    if not _done(run_dir, key):
        raise ValueError(f"{npz}: cell {key} is missing or torn (rerun the sweep to compute it)")
    meta = json.loads(side.read_text())
    if meta.get("kind") == "record":
        return Record(meta["record"])
    if meta.get("kind") == "arrays":
        with np.load(npz, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    return Curves.load(npz)


# -- running --------------------------------------------------------------------------------------------


def _call(fn, kwargs: dict, threads: int):
    """Run one cell on ``threads`` threads; returns (value, seconds). Module level: Dask pickles it.

    torch is imported first (and pinned) for every function but the torch-free built-in ``predict_cell``: a
    function that imported it itself would run its first cell on torch's default thread count."""
    from ._threads import limited, threads as override

    start = time.perf_counter()
    # the count is also the policy's override: simtheory's own calls in the cell (train, the flows) use it too
    with override(threads), limited(threads, torch=fn is not predict_cell):
        value = fn(**kwargs)
    return value, time.perf_counter() - start


def _manifest(run_dir: Path, function: str, fixed: dict, cells: list[Cell], axes) -> None:
    path = run_dir / _MANIFEST
    if path.is_file():
        try:
            old = json.loads(path.read_text())
        except ValueError:
            raise ValueError(f"{path}: not a sweep manifest; give another run directory") from None
        if not isinstance(old, dict) or "function" not in old:
            raise ValueError(f"{path}: not a sweep manifest; give another run directory")
        if old["function"] != function or old.get("fixed") != fixed:
            raise ValueError(
                f"{run_dir} holds a sweep of {old['function']} with fixed {old.get('fixed')}; this one is "
                f"{function} with fixed {fixed}: give another run directory"
            )
    doc = {
        "function": function,
        "fixed": fixed,
        "axes": axes,
        "cells": [{"key": c.key, "params": c.params} for c in cells],
        "provenance": provenance(),
    }
    atomic_write_text(path, json.dumps(doc, indent=2))


def executor_options(executor: str = "local", workers=None, scheduler=None, threads=None) -> dict:
    """:func:`run`'s executor keywords from command-line style options, which may all be given:
    ``workers`` counts only for a local Dask cluster, ``scheduler`` only with ``executor="dask"``, and
    ``threads`` per cell defaults to every core in this process and one per Dask worker (for cells that
    are whole programs: a validation module, a diffusion seed). Torch's reductions round differently on
    another thread count, so under this default the two executors agree to rounding, not bit for bit."""
    from ._threads import cores

    dask = executor == "dask"
    if threads is None:
        threads = 1 if dask else cores()
    return {
        "executor": executor,
        "workers": workers if dask and scheduler is None else None,
        "scheduler": scheduler if dask else None,
        "threads": threads,
    }


def run(
    fn,
    settings,
    out,
    *,
    fixed: Mapping | None = None,
    executor: str = "local",
    scheduler: str | None = None,
    workers: int | None = None,
    client=None,
    threads: int = 1,
    progress: bool = False,
) -> "SweepResult":
    """Compute every cell of ``settings`` not yet in run directory ``out``; returns a :class:`SweepResult`.

    ``fn``: a module-level function (or a name for :func:`resolve`) called as ``fn(**fixed, **params)``,
    returning :class:`~simtheory.Curves`, a dict of numeric arrays or a :class:`Record`. ``settings``: a
    list of parameter dicts (:func:`grid` builds a Cartesian one). ``executor``: ``"local"`` or ``"dask"``
    (a local cluster of ``workers`` processes, default one per core; or ``scheduler``'s address; or a given
    ``client``).
    ``threads``: BLAS/torch threads per cell. A cell that raises stops the sweep with the cell's parameters
    in the error; the cells written so far stay on disk and a rerun resumes from them.
    """
    if isinstance(fn, str):
        fn = resolve(fn)
    function = _function_name(fn)
    fixed = _jsonable(dict(fixed or {}), "fixed")
    executor = _checks.choice(executor, "executor", EXECUTORS)
    threads = _checks.positive_int(threads, "threads", maximum=4096)
    if executor == "local" and (scheduler is not None or client is not None or workers is not None):
        raise ValueError("scheduler, workers and client apply to executor='dask' only")
    if scheduler is not None and client is not None:
        raise ValueError("give a scheduler address or a client, not both")
    if workers is not None:
        workers = _checks.positive_int(workers, "workers", maximum=4096)
    cells = _cells(function, settings, fixed)
    axes = getattr(settings, "axes", None)
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"out {str(run_dir)!r} is a file; give a run directory")
    (run_dir / "cells").mkdir(parents=True, exist_ok=True)
    _manifest(run_dir, function, fixed, cells, axes)
    done = {c.key for c in cells if _done(run_dir, c.key)}
    todo = [c for c in cells if c.key not in done]
    skipped = [c.key for c in cells if c.key in done]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(cells), initial=len(skipped), desc=f"sweep {fn.__name__}", unit="cell")
    computed: list[str] = []
    try:
        if executor == "local":
            for cell in todo:
                value, seconds = _attempt(lambda: _call(fn, {**fixed, **cell.params}, threads), cell)
                _write(run_dir, cell, function, fixed, value, seconds)
                computed.append(cell.key)
                if bar is not None:
                    bar.update()
        elif todo:
            _run_dask(fn, fixed, todo, threads, run_dir, function, scheduler, workers, client, bar, computed)
    finally:
        if bar is not None:
            bar.close()
    return SweepResult(run_dir, cells, axes, computed=computed, skipped=skipped)


def _attempt(call, cell: Cell):
    """``call()``, its error naming the cell: a ``ValueError`` (bad parameters) stays one."""
    try:
        return call()
    except ValueError as exc:
        raise ValueError(f"sweep cell {cell.key} {cell.params}: {exc}") from exc
    except Exception as exc:
        raise RuntimeError(
            f"sweep cell {cell.key} {cell.params} failed: {type(exc).__name__}: {exc}"
        ) from exc


def _run_dask(fn, fixed, todo, threads, run_dir, function, scheduler, workers, client, bar, computed):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError:
        raise ImportError(
            "executor='dask' needs dask.distributed: pip install 'simtheory[distributed]'"
        ) from None
    import logging
    import os

    cluster = own = None
    if client is None:
        if scheduler is not None:
            own = Client(scheduler, timeout="30s")
        else:
            import dask

            # Dask starts workers with MALLOC_TRIM_THRESHOLD_=65536, which made torch cells 2.4x slower here
            # (glibc returns memory to the OS after every step; benchmarks in the README): unset it
            with dask.config.set({"distributed.nanny.pre-spawn-environ.MALLOC_TRIM_THRESHOLD_": None}):
                cluster = LocalCluster(
                    n_workers=workers or os.cpu_count() or 1,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.WARNING,
                )
            own = Client(cluster)
        client = own
    futures = {}
    try:
        for cell in todo:
            fut = client.submit(
                _call, fn, {**fixed, **cell.params}, threads, key=f"simtheory-cell-{cell.key}", pure=False
            )
            futures[fut] = cell
        for fut in as_completed(list(futures)):
            cell = futures[fut]
            value, seconds = _attempt(fut.result, cell)
            _write(run_dir, cell, function, fixed, value, seconds)
            computed.append(cell.key)
            if bar is not None:
                bar.update()
    finally:
        for fut in futures:
            fut.cancel()
        if own is not None:
            own.close()
        if cluster is not None:
            cluster.close()


# -- results --------------------------------------------------------------------------------------------


@dataclass
class SweepResult:
    """A sweep's run directory: its cells (in grid order), the grid's axes (or ``None`` for a list of
    settings), and which cells this call computed or found done."""

    run_dir: Path
    cells: list[Cell]
    axes: dict | None = None
    computed: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.cells)

    def missing(self) -> list[Cell]:
        """Cells without a verified result file."""
        return [c for c in self.cells if not _done(self.run_dir, c.key)]

    def load(self, cell: Cell | str):
        """One cell's result (Curves or a dict of arrays), by cell or key."""
        key = cell.key if isinstance(cell, Cell) else cell
        if key not in {c.key for c in self.cells}:
            raise ValueError(f"{key!r} is not a cell of the sweep in {self.run_dir}")
        return _load(self.run_dir, key)

    def __iter__(self):
        """``(params, result)`` per cell, in grid order."""
        for c in self.cells:
            yield c.params, _load(self.run_dir, c.key)

    def _complete(self) -> None:
        missing = self.missing()
        if missing:
            raise ValueError(
                f"{len(missing)} of {len(self.cells)} cells of {self.run_dir} have no result yet (first: "
                f"{missing[0].params}); rerun the sweep to compute them"
            )

    def to_xarray(self):
        """One ``xarray.Dataset``: the cells' variables stacked over the grid (one dimension per axis, with
        the axis values as coordinates; a ``cell`` dimension with the parameters as coordinates for a list
        of settings). Every cell must have the same shapes (and, for curves, the same times)."""
        import xarray as xr

        self._complete()
        parts = [_cell_dataset(r) for _, r in self]
        first = parts[0]
        for k, ds in enumerate(parts[1:], 1):
            if set(ds.data_vars) != set(first.data_vars) or any(
                ds[v].shape != first[v].shape for v in first.data_vars
            ):
                raise ValueError(
                    f"cell {self.cells[k].params} has other variables or shapes than {self.cells[0].params}: "
                    "to_xarray stacks equal shapes only (to_pandas takes any)"
                )
            for name, coord in first.coords.items():
                if not np.array_equal(ds[name].values, coord.values):
                    raise ValueError(
                        f"cell {self.cells[k].params} has other {name!r} values than {self.cells[0].params}: "
                        "to_xarray stacks cells on one grid (to_pandas takes any)"
                    )
        if self.axes:
            lead_dims = list(self.axes)
            lead_shape = tuple(len(v) for v in self.axes.values())
            coords = {name: np.asarray(vals) for name, vals in self.axes.items()}
        else:
            lead_dims, lead_shape = ["cell"], (len(self.cells),)
            names = list(dict.fromkeys(n for c in self.cells for n in c.params))
            coords = {n: ("cell", np.asarray([c.params.get(n, np.nan) for c in self.cells])) for n in names}
        data = {
            v: (
                lead_dims + list(first[v].dims),
                np.stack([ds[v].values for ds in parts]).reshape(lead_shape + first[v].shape),
            )
            for v in first.data_vars
        }
        coords.update({n: c for n, c in first.coords.items()})
        # per-cell records (meta, and the task where it varies) do not describe the whole Dataset
        drop = {"meta", "simtheory_curves"}
        if len({ds.attrs.get("task") for ds in parts}) > 1:
            drop.add("task")
        attrs = {k: v for k, v in first.attrs.items() if k not in drop}
        attrs["simtheory_sweep"] = 1
        attrs["sweep_run_dir"] = str(self.run_dir)
        return xr.Dataset(data, coords=coords, attrs=attrs)

    def to_pandas(self):
        """Tidy ``pandas.DataFrame``: the cells' parameters as columns, then each cell's tidy rows
        (:meth:`Curves.to_pandas`, or ``name``, ``index``, ``value`` for arrays)."""
        import pandas as pd

        self._complete()
        frames = []
        for params, r in self:
            if isinstance(r, Record):
                df = pd.json_normalize(dict(r), sep=".")
            else:
                df = r.to_pandas() if isinstance(r, Curves) else _arrays_frame(r)
            for k, (name, value) in enumerate(params.items()):
                df.insert(k, name, value)
            frames.append(df)
        return pd.concat(frames, ignore_index=True)


def _cell_dataset(result):
    import xarray as xr

    if isinstance(result, Record):
        raise ValueError("the cells hold records (sweep.Record), not arrays: use to_pandas or iterate")
    if isinstance(result, Curves):
        return result.to_xarray()
    return xr.Dataset({n: ([f"{n}_{k}" for k in range(a.ndim)], a) for n, a in result.items()})


def _arrays_frame(arrays: dict):
    import pandas as pd

    rows = []
    for name, a in arrays.items():
        flat = np.asarray(a, dtype=np.float64).ravel()
        rows.append(pd.DataFrame({"name": name, "index": np.arange(flat.size), "value": flat}))
    return pd.concat(rows, ignore_index=True)


def open_run(run_dir) -> SweepResult:
    """The :class:`SweepResult` of an existing run directory (from its manifest)."""
    run_dir = Path(run_dir)
    path = run_dir / _MANIFEST
    if not path.is_file():
        raise ValueError(f"{run_dir}: no {_MANIFEST} (not a sweep run directory)")
    try:
        doc = json.loads(path.read_text())
        cells = [Cell(c["key"], dict(c["params"])) for c in doc["cells"]]
    except (ValueError, KeyError, TypeError):
        raise ValueError(f"{path}: not a sweep manifest") from None
    return SweepResult(run_dir, cells, doc.get("axes"))


# -- built-in cells -------------------------------------------------------------------------------------


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


BUILTIN = {"predict": predict_cell, "train": train_cell}
