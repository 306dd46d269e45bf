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
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from . import _checks
from .curves import Curves
from .files import HOST, atomic_write_bytes, atomic_write_text, provenance

EXECUTORS = ("local", "processes", "dask")
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


def cell(fn=None, *, torch: bool = True):
    """Mark ``fn`` as a sweep cell: a function a sweep *file* may name (``"module:function"``), declaring what
    it needs (``torch``: whether it uses torch, so its thread count is pinned there too). A sweep file can
    make simtheory run only the built-in cells and functions marked this way, in modules the user names on
    the command line; a Python caller may pass any function to :func:`run`.

    Use as ``@sweep.cell`` or ``@sweep.cell(torch=False)``."""

    def mark(f):
        if not callable(f):
            raise ValueError(f"sweep.cell marks a function, got {f!r}")
        f.__simtheory_cell__ = {"torch": bool(torch)}
        return f

    return mark if fn is None else mark(fn)


def is_cell(fn) -> bool:
    """Whether ``fn`` is marked with :func:`cell`."""
    return isinstance(getattr(fn, "__simtheory_cell__", None), dict)


def _builtin() -> dict:
    from .cells import BUILTIN

    return BUILTIN


def resolve(name: str, *, modules=None) -> Callable:
    """The cell ``"package.module:function"`` (or a built-in cell: ``"predict"``, ``"train"``).

    The function must be marked with :func:`cell` (anything else is refused: a name alone must not run an
    arbitrary callable such as ``subprocess:run``). ``modules``: where the name comes from a file, the
    modules the user allowed (on the command line); a module outside them is refused before it is imported.
    The module is imported by name, as ``python -m`` would; no code is evaluated from the string."""
    if isinstance(name, str) and name in _builtin():
        return _builtin()[name]
    if not isinstance(name, str) or name.count(":") != 1:
        raise ValueError(f"function must be 'predict', 'train' or 'package.module:function', got {name!r}")
    module, attr = name.split(":")
    if not all(part.isidentifier() for part in module.split(".") + attr.split(".")):
        raise ValueError(f"function {name!r}: module and function must be dotted Python names")
    if modules is not None and module not in modules:
        raise ValueError(
            f"function {name!r}: a sweep file may name only the built-in cells ({', '.join(_builtin())}) or "
            f"a cell of a module you allow on the command line (--module {module}); {module!r} is not allowed"
        )
    try:
        obj = importlib.import_module(module)
    except ImportError as exc:
        raise ValueError(f"function {name!r}: cannot import {module!r} ({exc})") from None
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"function {name!r}: {module!r} has no attribute {attr!r}")
        obj = getattr(obj, part)
    if not is_cell(obj):
        raise ValueError(
            f"function {name!r} is not a sweep cell: mark it with @simtheory.sweep.cell in its module to "
            "let a sweep run it"
        )
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


class Arrays(dict):
    """A cell result of named numeric arrays that names their dimensions: ``dims`` maps an array's name to
    one name per axis, so :meth:`SweepResult.to_xarray` gives named dimensions; a 1-d array whose
    dimension has its own name (``dims={"t": ("t",), "loss": ("t",)}``) is a coordinate the cells share
    (a common time axis). Arrays without an entry get ``name_0, name_1, ...``."""

    def __init__(self, arrays, dims=None):
        super().__init__(arrays)
        self.dims = {str(k): tuple(str(x) for x in v) for k, v in (dims or {}).items()}
        for name, axes in self.dims.items():
            if name not in self:
                raise ValueError(f"dims names {name!r}, which is not one of the arrays {sorted(self)}")
            if len(axes) != np.ndim(self[name]):
                raise ValueError(f"dims of {name!r} must name its {np.ndim(self[name])} axes, got {axes}")


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
    record = {
        "function": function,
        "params": cell.params,
        "fixed": fixed,
        "seconds": round(seconds, 6),
        "computed_by": {"pid": os.getpid(), "host": HOST},
    }
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
        kind, arrays = "arrays", _arrays_of(value, cell.key)
        extra = {"dims": value.dims} if isinstance(value, Arrays) else {}
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
            arrays = {k: z[k] for k in z.files}
        return Arrays(arrays, meta["dims"]) if "dims" in meta else arrays
    return Curves.load(npz)


# -- running --------------------------------------------------------------------------------------------


def _call(fn, kwargs: dict, threads: int):
    """Run one cell on ``threads`` threads; returns (value, seconds). Module level: Dask pickles it.

    torch is imported first (and pinned) unless the cell declares it does not use torch (:func:`cell`): a
    function that imported it itself would run its first cell on torch's default thread count."""
    from ._threads import limited, threads as override

    start = time.perf_counter()
    # the count is also the policy's override: simtheory's own calls in the cell (train, the flows) use it too
    uses_torch = getattr(fn, "__simtheory_cell__", {}).get("torch", True)
    with override(threads), limited(threads, torch=uses_torch):
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
    ``workers`` counts for a local Dask cluster and for ``"processes"`` (at most that many at once),
    ``scheduler`` only with ``executor="dask"``, and ``threads`` per cell defaults to every core in this
    process and one per worker process (for cells that are whole programs: a validation module, a diffusion
    seed). Torch's reductions round differently on another thread count, so under this default the
    in-process executor agrees with the others to rounding, not bit for bit (the same ``threads`` agree bit
    for bit)."""
    from ._threads import cores

    dask = executor == "dask"
    if threads is None:
        threads = cores() if executor == "local" else 1
    return {
        "executor": executor,
        "workers": workers if (dask and scheduler is None) or executor == "processes" else None,
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
    wait: bool = True,
    notify: Callable[[str], None] | None = None,
) -> "SweepResult":
    """Compute every cell of ``settings`` not yet in run directory ``out``; returns a :class:`SweepResult`.

    ``fn``: a module-level function (or the name of a cell for :func:`resolve`) called as
    ``fn(**fixed, **params)``, returning :class:`~simtheory.Curves`, a dict of numeric arrays or a
    :class:`Record`. ``settings``: a list of parameter dicts (:func:`grid` builds a Cartesian one).
    ``executor``: ``"local"`` or ``"dask"`` (a local cluster of ``workers`` processes, default one per core;
    or ``scheduler``'s address; or a given ``client``). ``threads``: BLAS/torch threads per cell. A cell that
    raises stops the sweep with the cell's parameters in the error; the cells written so far stay on disk and
    a rerun resumes from them.

    Several processes may run the same sweep on one directory (two terminals, a resubmitted job, array
    tasks): each cell is claimed just before it is computed (:func:`simtheory.files.claim`; on a Dask cluster
    when the cells are sent), so processes that start at different times split the work and compute each
    missing cell once; a claim dies with its process (also a SIGKILL), and a
    cell whose claimant died is computed by the next process that finds it. With ``wait`` a process with
    nothing left to claim waits for the cells others are computing (``notify``, default standard error, is
    told "cell K is being computed by PID N on HOST") and returns the whole sweep.
    """
    fn = resolve(fn) if isinstance(fn, str) else fn
    function = _function_name(fn)
    fixed = _jsonable(dict(fixed or {}), "fixed")
    executor, workers = _executor(executor, scheduler, workers, client)
    threads = _checks.positive_int(threads, "threads", maximum=4096)
    cells = _cells(function, settings, fixed)
    axes = getattr(settings, "axes", None)
    run_dir = _run_dir(out)
    _manifest(run_dir, function, fixed, cells, axes)
    skipped = [c.key for c in cells if _done(run_dir, c.key)]
    pending = [c for c in cells if c.key not in set(skipped)]
    bar = _bar(fn, len(cells), len(skipped)) if progress else None
    computed: list[str] = []
    job = _Job(fn, fixed, threads, run_dir, function, bar, computed)
    try:
        while pending:
            claims = _Claims(run_dir, pending, skipped, bar)
            _execute(executor, job, claims, scheduler, workers, client)
            if not claims.busy or not wait:
                break
            pending = _wait_for(run_dir, claims.busy, notify or _to_stderr)
    finally:
        if bar is not None:
            bar.close()
    return SweepResult(run_dir, cells, axes, computed=computed, skipped=skipped)


@dataclass
class _Job:
    """What every cell of one :func:`run` shares."""

    fn: Callable
    fixed: dict
    threads: int
    run_dir: Path
    function: str
    bar: object
    computed: list

    def write(self, cell: Cell, value, seconds: float) -> None:
        _write(self.run_dir, cell, self.function, self.fixed, value, seconds)
        self.computed.append(cell.key)
        if self.bar is not None:
            self.bar.update()


def _run_dir(out) -> Path:
    run_dir = Path(out)
    if run_dir.exists() and not run_dir.is_dir():
        raise ValueError(f"out {str(run_dir)!r} is a file; give a run directory")
    (run_dir / "cells").mkdir(parents=True, exist_ok=True)
    return run_dir


def _bar(fn, total: int, done: int):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc=f"sweep {fn.__name__}", unit="cell")


class _Claims:
    """The pending cells of one pass, claimed one at a time as they are about to run, so that a process that
    starts later still finds cells to take; the cells other processes hold are collected in ``busy``, and the
    ones finished meanwhile join ``skipped``."""

    def __init__(self, run_dir: Path, pending: list, skipped: list, bar):
        self.run_dir, self.queue, self.skipped, self.bar = run_dir, list(pending), skipped, bar
        self.busy: list = []

    def __len__(self) -> int:
        return len(self.queue)

    def _skip(self, c) -> None:
        self.skipped.append(c.key)
        if self.bar is not None:
            self.bar.update()

    def next(self):
        """``(cell, claim)`` of the next cell this process now holds, or None when none is left to claim."""
        from .files import claim

        while self.queue:
            c = self.queue.pop(0)
            if _done(self.run_dir, c.key):
                self._skip(c)
                continue
            held = claim(self.run_dir / "cells" / c.key)
            if not held.acquire():
                self.busy.append((c, held))
            elif _done(self.run_dir, c.key):  # finished between our listing and our claim
                held.release()
                self._skip(c)
            else:
                return c, held
        return None

    def all(self) -> list:
        """Claim every cell that can be claimed now (for executors that dispatch them all at once)."""
        mine = []
        while (nxt := self.next()) is not None:
            mine.append(nxt)
        return mine


def _wait_for(run_dir: Path, busy: list, notify) -> list:
    """Wait until the cells others are computing are done or free again (their claimant died); returns the
    ones still to do here (none when the others finished them)."""
    for c, held in busy:
        notify(f"cell {c.key} ({c.params}) is being computed by {held.holder()}: waiting for it")
    delay = 0.2
    while True:
        time.sleep(delay)
        delay = min(2 * delay, 5.0)
        left = [(c, held) for c, held in busy if not _done(run_dir, c.key)]
        if not left:
            return []
        for c, held in left:
            if held.acquire():  # its claimant is gone: ours now (released again before computing)
                held.release()
                return [c for c, _ in left]


def _to_stderr(message: str) -> None:
    import sys

    print(message, file=sys.stderr, flush=True)


def _executor(executor: str, scheduler, workers, client) -> tuple[str, int | None]:
    executor = _checks.choice(executor, "executor", EXECUTORS)
    if executor != "dask" and (scheduler is not None or client is not None):
        raise ValueError("scheduler and client apply to executor='dask' only")
    if executor == "local" and workers is not None:
        raise ValueError("workers apply to executor='processes' or 'dask' only")
    if scheduler is not None and client is not None:
        raise ValueError("give a scheduler address or a client, not both")
    if workers is not None:
        workers = _checks.positive_int(workers, "workers", maximum=4096)
    return executor, workers


def _execute(executor: str, job: "_Job", claims: _Claims, scheduler, workers, client) -> None:
    if executor == "local":
        _run_local(job, claims)
    elif executor == "processes":
        _run_processes(job, claims, workers)
    else:  # a cluster gets every cell at once: they are claimed up front
        mine = claims.all()
        if mine:
            _run_dask(job, mine, scheduler, workers, client)


def _run_local(job: _Job, claims: _Claims) -> None:
    """The cells one after another in this process, each claimed just before it is computed, written as soon
    as it is, and its claim released then."""
    while (nxt := claims.next()) is not None:
        c, held = nxt
        try:
            value, seconds = _attempt(lambda: _call(job.fn, {**job.fixed, **c.params}, job.threads), c)
            job.write(c, value, seconds)
        finally:
            held.release()


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


def _run_processes(job: _Job, claims: _Claims, workers: int | None) -> None:
    """The cells in worker processes of this machine, as many at once as cores are free: before each cell
    starts (and is claimed), the cores other processes are running on are looked up again
    (:func:`_threads.free_cores`, the workers running here not counted against it), so a sweep that shares
    the machine shrinks to what is free and grows back. Each cell runs on ``job.threads`` threads; results
    come back here and are written as they arrive (the same numbers as in this process on as many
    threads)."""
    import concurrent.futures as cf
    import multiprocessing

    from ._threads import cores, free_cores

    if not len(claims):
        return
    most = min(workers or cores(), len(claims))
    running, exhausted = {}, False
    with cf.ProcessPoolExecutor(most, mp_context=multiprocessing.get_context("spawn")) as pool:
        try:
            while True:
                room = min(most, max(1, free_cores(own=len(running)) // job.threads))
                while not exhausted and len(running) < room:
                    nxt = claims.next()  # claimed only when a worker is free for it
                    if nxt is None:
                        exhausted = True
                    else:
                        c = nxt[0]
                        running[pool.submit(_call, job.fn, {**job.fixed, **c.params}, job.threads)] = nxt
                if not running:
                    break
                done, _ = cf.wait(running, timeout=2.0, return_when=cf.FIRST_COMPLETED)
                for fut in done:
                    c, held = running.pop(fut)
                    try:
                        value, seconds = _attempt(fut.result, c)
                        job.write(c, value, seconds)
                    finally:  # given back also when the cell failed (it is no longer in running)
                        held.release()
        finally:
            for fut in running:
                fut.cancel()
            for _, held in running.values():
                held.release()


def _run_dask(job: _Job, mine: list, scheduler, workers, client) -> None:
    """The claimed cells on a Dask cluster; this process holds their claims and writes each result as it
    arrives (the workers need no shared file system for built-in cells)."""
    try:
        from distributed import as_completed
    except ImportError:
        raise ImportError(
            "executor='dask' needs dask.distributed: pip install 'simtheory[distributed]'"
        ) from None
    client, own, cluster = _client(scheduler, workers, client)
    futures = {}
    try:
        for c, held in mine:
            fut = client.submit(
                _call,
                job.fn,
                {**job.fixed, **c.params},
                job.threads,
                key=f"simtheory-cell-{c.key}",
                pure=False,
            )
            futures[fut] = (c, held)
        for fut in as_completed(list(futures)):
            c, held = futures[fut]
            value, seconds = _attempt(fut.result, c)
            job.write(c, value, seconds)
            held.release()
    finally:
        for fut, (_, held) in futures.items():
            fut.cancel()
            held.release()
        if own is not None:
            own.close()
        if cluster is not None:
            cluster.close()


def _client(scheduler, workers, client):
    """``(client, the client this made or None, the cluster this started or None)``."""
    import logging
    import os

    from distributed import Client, LocalCluster

    if client is not None:
        return client, None, None
    if scheduler is not None:
        own = Client(scheduler, timeout="30s")
        return own, own, None
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
    return own, own, cluster


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
    dims = getattr(result, "dims", {})
    axes = {n: dims.get(n, tuple(f"{n}_{k}" for k in range(np.ndim(a)))) for n, a in result.items()}
    coords = {n: result[n] for n, ax in axes.items() if ax == (n,)}  # a shared axis, e.g. the times
    data = {n: (list(ax), a) for n, a in result.items() if n not in coords for ax in [axes[n]]}
    return xr.Dataset(data, coords=coords)


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


def __getattr__(name: str):  # the built-in SIM cells live in simtheory.cells
    if name in ("predict_cell", "train_cell", "BUILTIN"):
        from . import cells

        return getattr(cells, name)
    raise AttributeError(f"module 'simtheory.sweep' has no attribute {name!r}")
