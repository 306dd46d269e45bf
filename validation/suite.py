"""Every validation module as one sweep: one cell per module, resumable, in-process or on Dask.

``python -m validation.suite [--full] [--out DIR] [--executor dask --workers N | --scheduler ADDRESS]``
runs the nine modules of :data:`validation.MODULES`; a killed run resumes at the first module without a
result. The report's section 6 (``simtheory reproduce``) runs through the same function.

A cell's result is the module's report (claims, metrics, notes, figure paths), kept in the run directory:
delete the directory (or give another ``--run-dir``) after changing the code, or the old reports are read
back. Figures are written by whichever process runs the module, so a remote scheduler needs ``--out`` on a
file system its workers share.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from simtheory import sweep

from . import MODULES
from ._report import Report


@sweep.cell(torch=True)
def module_cell(name: str, quick: bool = True, out: str | None = None) -> sweep.Record:
    """Run ``validation.<name>`` and return its report as a record (a sweep cell)."""
    if name not in MODULES:
        raise ValueError(f"name must be one of {MODULES}, got {name!r}")
    module = importlib.import_module(f"{__package__}.{name}")
    rep = module.run(quick=quick, out=Path(out) if out else None)
    return sweep.Record(json.loads(json.dumps(rep.to_dict(), default=float)))


def run_all(
    quick: bool = True,
    out=None,
    *,
    run_dir=None,
    names=MODULES,
    executor: str = "processes",
    workers: int | None = None,
    scheduler: str | None = None,
    threads: int | None = None,
    progress: bool = False,
) -> dict[str, Report]:
    """The reports of ``names`` (default all), computed as the cells of a sweep in ``run_dir`` (default
    ``out/validation-cells``, or ``runs/validation-quick|full`` without ``out``).

    ``executor``: ``"processes"`` (default) runs the modules in worker processes of this machine with one
    thread each, as many at once as cores are free (re-checked before each module: a machine someone else
    is using gets fewer workers, never more threads than free cores); ``"local"`` in this process on
    ``threads`` (default every core); ``"dask"`` one per worker. A module gives the same numbers in a worker
    process as in this process on one thread (:func:`simtheory.sweep.executor_options`)."""
    if run_dir is None:
        run_dir = (
            Path(out) / "validation-cells"
            if out is not None
            else Path("runs") / (f"validation-{'quick' if quick else 'full'}")
        )
    from simtheory.simulate import progress_bars

    with progress_bars(progress and executor == "local"):  # in this process: a bar per GD run in each module
        result = sweep.run(
            module_cell,
            [{"name": n} for n in names],
            run_dir,
            fixed={"quick": bool(quick), "out": str(out) if out is not None else None},
            progress=progress,
            **sweep.executor_options(executor, workers, scheduler, threads),
        )
    return {params["name"]: Report.from_dict(rec) for params, rec in result}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="every validation module, as one resumable sweep")
    p.add_argument("--full", action="store_true", help="the full-size versions (slow)")
    p.add_argument("--out", help="directory for figures and the reports' JSON")
    p.add_argument("--run-dir", help="the sweep's run directory (default OUT/validation-cells)")
    p.add_argument("--only", nargs="+", choices=MODULES, help="a subset of the modules")
    p.add_argument("--executor", choices=sweep.EXECUTORS, default="processes")
    p.add_argument("--workers", type=int, help="worker processes at most (processes, local Dask cluster)")
    p.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler")
    p.add_argument(
        "--threads", type=int, help="threads per module (default: 1 per worker, all cores locally)"
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    args = p.parse_args(argv)
    try:
        reports = run_all(
            quick=not args.full,
            out=Path(args.out) if args.out else None,
            run_dir=args.run_dir,
            names=tuple(args.only or MODULES),
            executor=args.executor,
            workers=args.workers,
            scheduler=args.scheduler,
            threads=args.threads,
            progress=not args.quiet,
        )
    except ValueError as exc:
        print(f"validation.suite: error: {exc}", file=sys.stderr)
        return 2
    for rep in reports.values():
        print(rep, end="\n\n")
    failed = [n for n, rep in reports.items() if not rep.passed]
    print(
        f"{len(reports) - len(failed)} of {len(reports)} validations pass"
        + (f"; failed: {failed}" if failed else "")
    )
    return 0 if not failed else 1


if __name__ == "__main__":
    raise SystemExit(main())
