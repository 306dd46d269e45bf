"""Command line: ``simtheory derive | predict | reproduce | sweep | export``."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np


def _user_derivations(module_name: str) -> dict:
    """The :class:`~simtheory.symbolic.Derivation` objects a user's module defines, by name."""
    from . import models
    from .symbolic import Derivation

    module = models.load_module(module_name, "--module")
    found = {v.name: v for v in vars(module).values() if isinstance(v, Derivation)}
    if not found:
        raise ValueError(f"--module {module_name!r} defines no simtheory.symbolic.Derivation object")
    return found


def _cmd_derive(args) -> int:
    from simtheory import derivations

    table = _user_derivations(args.module) if args.module else None
    names = [args.name] if args.name else list(table or derivations.names())
    ok = True
    for name in names:
        if table is not None and name not in table:
            raise ValueError(f"--module {args.module!r} has no derivation {name!r}; it has {sorted(table)}")
        deriv = table[name] if table is not None else derivations.get(name)
        print(f"== {deriv.name}: {deriv.title}")
        print(f"   reference: {deriv.reference}")
        for a in deriv.assumptions:
            print(f"   assumes: {a}")
        for key, formula in deriv.formulas.items():
            print(f"   [{key}] {formula.latex()}")
            if formula.description:
                print(f"        ({formula.description})")
        if args.no_verify:
            print("   verification: skipped")
        else:
            v = deriv.verify()
            ok &= v.passed
            print("   " + str(v).replace("\n", "\n   "))
        print()
    return 0 if ok else 1


def _initial(args, d: int):
    if args.init_file:
        path = Path(args.init_file)
        if not path.is_file():
            raise ValueError(f"--init-file {str(path)!r}: no such file")
        try:
            W0 = np.load(path, allow_pickle=False)
        except ValueError as exc:
            is_npy = path.read_bytes()[:6] == b"\x93NUMPY"
            if is_npy and "pickle" in str(exc).lower():  # an object array: loading it would run pickle
                raise ValueError(
                    f"--init-file {str(path)!r} holds a pickled object array, which is not loaded (it could "
                    "run code); save a numeric array: np.save(path, np.asarray(W0, dtype=float))"
                ) from None
            raise ValueError(f"--init-file {str(path)!r} is not a .npy array of numbers ({exc})") from None
        except Exception as exc:  # not a .npy at all: numpy's errors
            raise ValueError(
                f"--init-file {str(path)!r} is not a .npy array of numbers ({type(exc).__name__})"
            ) from None
        if not isinstance(W0, np.ndarray) or W0.dtype.kind not in "fiu":
            raise ValueError(f"--init-file {str(path)!r} must hold one numeric array (a .npy file)")
        return W0
    from .models import initial_state

    return initial_state(
        args.model, d, init=args.init, scale=args.init_scale, seed=args.seed, layers=args.layers
    )


def _cmd_predict(args) -> int:
    from . import models
    from .curves import predict
    from .swingby import classify, time_grid
    from .task import SIMTask

    if args.model_module:  # a user's module of models, imported by its dotted name (nothing evaluated)
        models.load_module(args.model_module, "--model-module")
    try:
        spec = models.get(args.model)
    except ValueError as exc:
        raise ValueError(f"--model: {exc}") from None
    if not spec.predictable:
        raise ValueError(f"--model {args.model!r} has no gradient-flow prediction")

    task = SIMTask(
        args.mu, args.sigma if len(args.sigma) > 1 else args.sigma[0], d=args.d, origin=args.origin
    )
    out = _check_predict_args(args)
    if args.log_times:
        t = time_grid(args.t_max, args.n_times)
    else:
        t = np.linspace(0.0, args.t_max, args.n_times)
    curves = predict(task, _initial(args, task.d), t, model=args.model, convention=args.convention)
    if out.suffix == ".npz":
        paths = curves.to_npz(out)
    else:
        paths = (curves.to_csv(out),)
    print(f"{args.model} ({args.convention}) on {task}: wrote {', '.join(str(p) for p in paths)}")
    if curves.W.ndim == 3:
        print("OOD loss: " + classify(curves.times, curves.ood_loss).summary())
    return 0


def _check_predict_args(args) -> Path:
    """The numeric flags of ``predict`` in range, and the output path; returns the path."""
    if not 2 <= args.n_times <= 1_000_000:
        raise ValueError(f"--n-times must be in [2, 1000000], got {args.n_times}")
    if not 2 <= args.layers <= 64:
        raise ValueError(f"--layers must be in [2, 64] (factors of the deep model), got {args.layers}")
    if not (np.isfinite(args.t_max) and args.t_max > 0):
        raise ValueError(f"--t-max must be a finite number > 0, got {args.t_max}")
    if not (np.isfinite(args.init_scale) and 0 < args.init_scale <= 1e3):
        raise ValueError(
            f"--init-scale must be a number in (0, 1000] (W0 = (scale U)(scale U)^T; larger starts leave the "
            f"range the flows resolve), got {args.init_scale}"
        )
    if not 0 <= args.seed < 2**32:
        raise ValueError(f"--seed must be in [0, 2**32 - 1], got {args.seed}")
    out = Path(args.out)
    if out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a directory; give a .csv or .npz file")
    if out.suffix not in (".csv", ".npz"):
        raise ValueError(f"--out must end in .csv or .npz, got {str(out)!r}")
    return out


def _cmd_reproduce(args) -> int:
    from simtheory.validation.report import (  # the application layer, reached lazily
        Config,
        reproduce,
    )

    out = Path(args.out) if args.out else Path("runs") / time.strftime("reproduce-%Y%m%d-%H%M%S")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {str(out)!r} is a file; give a directory")
    if args.diffusion_run is not None and not Path(args.diffusion_run).is_dir():
        raise ValueError(f"--diffusion-run {args.diffusion_run!r}: no such directory")
    cfg = Config(
        out=out,
        seed=args.seed,
        n_seeds=args.n_seeds,
        n_agreement=args.n_agreement,
        verify=not args.no_verify,
        gd=not args.no_gd,
        full=args.full,
        diffusion=args.diffusion or args.diffusion_run is not None,
        diffusion_run=Path(args.diffusion_run) if args.diffusion_run else None,
        executor=args.executor,
        workers=args.workers,  # validation.suite keeps each where it applies
        scheduler=args.scheduler,
    )
    if min(cfg.n_seeds, cfg.n_agreement) < 1:
        raise ValueError("--n-seeds and --n-agreement must be >= 1")
    path = reproduce(cfg, progress=not args.quiet)
    print(f"report: {path}")
    return 0


def _read_sweep_config(path: Path) -> dict:
    """A sweep configuration: JSON (or TOML where Python has tomllib) with ``function``, exactly one of
    ``grid`` (axis -> list of values) and ``settings`` (list of parameter dicts), and optional ``fixed``."""
    import json

    if not path.is_file():
        raise ValueError(f"CONFIG {str(path)!r}: no such file")
    text = path.read_text()
    try:
        if path.suffix == ".toml":
            import tomllib  # Python >= 3.11

            doc = tomllib.loads(text)
        else:
            doc = json.loads(text)
    except ImportError:
        raise ValueError(
            f"CONFIG {str(path)!r}: TOML needs Python >= 3.11; write the config as JSON"
        ) from None
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError are ValueErrors
        raise ValueError(f"CONFIG {str(path)!r} does not parse: {exc}") from None
    if not isinstance(doc, dict):
        raise ValueError(f"CONFIG {str(path)!r} must hold an object (function, grid or settings, fixed)")
    unknown = sorted(set(doc) - {"function", "grid", "settings", "fixed"})
    if unknown:
        raise ValueError(
            f"CONFIG {str(path)!r}: unknown keys {unknown} (known: function, grid, settings, fixed)"
        )
    if "function" not in doc or ("grid" in doc) == ("settings" in doc):
        raise ValueError(f"CONFIG {str(path)!r} needs 'function' and exactly one of 'grid' and 'settings'")
    if "grid" in doc and not isinstance(doc["grid"], dict):
        raise ValueError(f"CONFIG {str(path)!r}: 'grid' must map axis names to lists of values")
    if not isinstance(doc.get("fixed", {}), dict):
        raise ValueError(f"CONFIG {str(path)!r}: 'fixed' must map parameter names to values")
    return doc


def _trusted_modules(args, config: Path, doc: dict) -> list[str]:
    """The modules a sweep file may use: those named with --module, found from the file's directory or the
    current one. A ``model_module`` inside the file must be one of them (checked before anything runs)."""
    import sys

    allowed = list(args.module or [])
    for folder in (str(config.resolve().parent), str(Path.cwd())):
        if allowed and folder not in sys.path:
            sys.path.insert(0, folder)
    named = [doc.get("fixed", {}).get("model_module")]
    named += list(doc.get("grid", {}).get("model_module", []))
    named += [s.get("model_module") for s in doc.get("settings", []) if isinstance(s, dict)]
    for module in filter(None, named):
        if module not in allowed:
            raise ValueError(
                f"CONFIG {str(config)!r} names model_module {module!r}: a sweep file may import only modules "
                f"you allow on the command line (--module {module})"
            )
    return allowed


def _cmd_sweep(args) -> int:
    from . import sweep

    config = Path(args.config)
    doc = _read_sweep_config(config)
    fn = sweep.resolve(doc["function"], modules=_trusted_modules(args, config, doc))
    cells = sweep.grid(**doc["grid"]) if "grid" in doc else doc["settings"]
    out = Path(args.out) if args.out else Path("runs") / f"sweep-{config.stem}"
    start = time.perf_counter()
    try:
        result = sweep.run(
            fn,
            cells,
            out,
            fixed=doc.get("fixed"),
            progress=not args.quiet,
            **sweep.executor_options(args.executor, args.workers, args.scheduler, args.threads),
        )
    except KeyboardInterrupt:
        print(
            f"simtheory sweep: interrupted; the cells written so far are kept: rerun to resume {out}",
            file=sys.stderr,
        )
        return 130
    seconds = time.perf_counter() - start
    print(
        f"{out}: {len(result)} cells, {len(result.computed)} computed and {len(result.skipped)} already done "
        f"({args.executor}, {seconds:.1f} s)"
    )
    if args.netcdf:
        from .files import atomic_write_bytes

        print(f"wrote {atomic_write_bytes(args.netcdf, bytes(result.to_xarray().to_netcdf(engine='scipy')))}")
    if args.csv:
        from .files import atomic_write_text

        print(f"wrote {atomic_write_text(args.csv, result.to_pandas().to_csv(index=False))}")
    return 0


def _cmd_export(args) -> int:
    from .export import export

    if args.model_module:  # a user's module: its registered models' formulas go into derivations.tex
        from . import models

        models.load_module(args.model_module, "--model-module")
    paths = export(args.run_dir, args.out)
    print(f"wrote {len(paths)} files to {paths[0].parent}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="simtheory", description="Learning dynamics of the SIM task (Yang et al., ICLR 2025)."
    )
    sub = p.add_subparsers(dest="command", required=True)
    for add in (_add_derive, _add_predict, _add_reproduce, _add_sweep, _add_export):
        add(sub)
    return p


def _add_derive(sub) -> None:
    d = sub.add_parser("derive", help="show each derivation's LaTeX and verify it")
    d.add_argument("name", nargs="?", help="one derivation (default: all)")
    d.add_argument("--no-verify", action="store_true", help="print the formulas only")
    d.add_argument(
        "--module",
        help="a module of yours (dotted name, found on sys.path or in the current directory): its Derivation "
        "objects instead of the package's",
    )
    d.set_defaults(func=_cmd_derive)


def _add_predict(sub) -> None:
    from . import models
    from .theory import CONVENTIONS

    q = sub.add_parser("predict", help="predicted curves for one setting, to CSV or NPZ (+ JSON sidecar)")
    q.add_argument("--mu", type=float, nargs="+", required=True, help="concept means (length s, > 0)")
    q.add_argument(
        "--sigma", type=float, nargs="+", default=[0.05], help="standard deviation(s): scalar, length s or d"
    )
    q.add_argument("--d", type=int, default=None, help="dimension (default s)")
    q.add_argument("--origin", action="store_true", help="add a cluster at the origin")
    q.add_argument(
        "--model",
        default="symmetric",
        help="a predictable model of the registry (simtheory.models): "
        f"{', '.join([*models.names(predictable=True), 'linear-flow'])} (linear-flow = linear), or one that "
        "--model-module registers",
    )
    q.add_argument(
        "--model-module",
        help="import this module first (yours: it registers models with simtheory.models.register); found "
        "on sys.path or in the current directory",
    )
    q.add_argument("--convention", choices=sorted(CONVENTIONS), default="gradient-flow")
    q.add_argument(
        "--init",
        choices=list(models.INIT_FAMILIES),
        default="rand",
        help="U0 = scale * rand / normal / identity; W0 = U0 U0^T (symmetric), U0 (linear), (U0, U0^T) "
        "(untied), U0, U0^T, U0, ... (deep, --layers factors)",
    )
    q.add_argument("--layers", type=int, default=3, help="number of factors of the deep model (>= 2)")
    q.add_argument("--init-scale", type=float, default=0.2)
    q.add_argument("--init-file", help="a .npy file holding W0 (overrides --init)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument(
        "--t-max", type=float, default=50.0, help="last time (gradient-flow time unless --convention)"
    )
    q.add_argument("--n-times", type=int, default=500)
    q.add_argument("--log-times", action="store_true", help="log-spaced times (plus t = 0)")
    q.add_argument("--out", default="curves.csv", help=".csv or .npz")
    q.set_defaults(func=_cmd_predict)


def _add_reproduce(sub) -> None:
    r = sub.add_parser("reproduce", help="the reproduction report: Markdown, PNG/PDF figures, CSV curves")
    r.add_argument("--out", help="run directory (default runs/reproduce-TIMESTAMP)")
    r.add_argument("--seed", type=int, default=2, help="U0 seed of the Figure 5 analogue")
    r.add_argument("--n-seeds", type=int, default=200, help="random initialisations per setting")
    r.add_argument(
        "--n-agreement", type=int, default=200, help="random settings in the swing-by agreement study"
    )
    r.add_argument("--no-verify", action="store_true", help="skip the derivations' verification")
    r.add_argument(
        "--no-gd", action="store_true", help="skip section 6 (PyTorch gradient-descent validations)"
    )
    r.add_argument("--full", action="store_true", help="full-size validations (the paper's sizes; slow)")
    r.add_argument(
        "--diffusion",
        action="store_true",
        help="add section 7, the text-conditioned diffusion model (quick ~1 min; with --full ~25 min on 2 "
        "CPU cores)",
    )
    r.add_argument(
        "--diffusion-run",
        metavar="DIR",
        help="analyse an existing diffusion run directory (e.g. a GPU sweep) in section 7",
    )
    r.add_argument(
        "--executor",
        choices=["processes", "local", "dask"],
        default="processes",
        help="section 6's validation modules: in worker processes, one thread each, as many as cores are "
        "free (default; re-checked between modules), in this process, or on a Dask cluster (one cell each)",
    )
    r.add_argument(
        "--workers", type=int, help="worker processes at most (processes, local Dask cluster; default: cores)"
    )
    r.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler (tcp://host:8786)")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=_cmd_reproduce)


def _add_sweep(sub) -> None:
    w = sub.add_parser(
        "sweep",
        help="run a grid of settings, one result per cell (resumable), in-process or on Dask",
        description='CONFIG (JSON, or TOML on Python >= 3.11): {"function": "predict" | "train" | '
        '"package.module:function", "grid": {axis: [values]} or "settings": [{...}], "fixed": {...}}. '
        "Rerunning a sweep computes only the cells it has no result for; several processes on one "
        "directory split the cells. A function from a module must be marked @simtheory.sweep.cell and its "
        "module allowed with --module.",
    )
    w.add_argument("config", help="the sweep's configuration file")
    w.add_argument(
        "--module",
        action="append",
        metavar="MODULE",
        help="a module of yours the sweep file may use (its @sweep.cell functions, model_module); found from "
        "the file's directory or the current one. A sweep file alone runs only the built-in cells",
    )
    w.add_argument("--out", help="run directory (default runs/sweep-CONFIG_STEM)")
    w.add_argument(
        "--executor",
        choices=["local", "processes", "dask"],
        default="local",
        help="cells in this process, in worker processes of this machine (as many as cores are free), or on "
        "Dask",
    )
    w.add_argument("--scheduler", metavar="ADDRESS", help="an existing Dask scheduler (tcp://host:8786)")
    w.add_argument("--workers", type=int, help="worker processes at most (processes, local Dask cluster)")
    w.add_argument("--threads", type=int, default=1, help="BLAS/torch threads per cell (default 1)")
    w.add_argument("--netcdf", metavar="FILE", help="also write the results as one netCDF file (xarray)")
    w.add_argument("--csv", metavar="FILE", help="also write the results as one tidy CSV (pandas)")
    w.add_argument("--quiet", action="store_true", help="no progress bar")
    w.set_defaults(func=_cmd_sweep)


def _add_export(sub) -> None:
    e = sub.add_parser("export", help="tidy CSV, pgfplots .dat and derivations.tex from a run directory")
    e.add_argument(
        "run_dir",
        help="a directory written by `simtheory reproduce` or `simtheory sweep` (or holding .npz curves)",
    )
    e.add_argument("--out", help="output directory (default RUN_DIR/export)")
    e.add_argument(
        "--model-module",
        help="import this module of yours first: the formulas of the models it registers go into "
        "derivations.tex",
    )
    e.set_defaults(func=_cmd_export)


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from .files import WriteError

    try:
        return args.func(args)
    except (ValueError, WriteError) as exc:
        print(f"simtheory {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
