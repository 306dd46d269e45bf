"""simtheory: learning dynamics of the Structured Identity Mapping (SIM) task.

SymPy derives the closed forms (``derivations/``, each verified), they compile to NumPy
predictors (:mod:`simtheory.theory`), and results travel as frozen :class:`Curves`.

Importing ``simtheory`` is cheap: SymPy, SciPy, matplotlib and torch are imported only by the
functions that need them.
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata

from .task import SIMTask, empirical_second_moment

try:  # one place for the version: the package metadata (pyproject.toml)
    __version__ = _metadata.version("simtheory")
except _metadata.PackageNotFoundError:  # a checkout on sys.path, not installed
    __version__ = "0+unknown"

# public name -> submodule that defines it (loaded on first access)
_LAZY = {
    "linear_flow": "theory",
    "linear_gd": "theory",
    "linear_ood_loss": "theory",
    "symmetric_flow": "theory",
    "symmetric_approx": "theory",
    "symmetric_approx_ood_loss": "theory",
    "symmetric_init": "theory",
    "untied_flow": "theory",
    "deep_flow": "theory",
    "field_flow": "theory",
    "train_loss": "theory",
    "ood_loss": "theory",
    "ood_output": "theory",
    "CONVENTIONS": "theory",
    "solver_log": "_solvers",
    "threads": "_threads",
    "SolverStats": "_solvers",
    "compiled": "_compile",
    "clear_caches": "_compile",
    "Curves": "curves",
    "predict": "curves",
    "turning_points": "measures",
    "classify": "measures",
    "predict_swingby": "swingby",
}

__all__ = ["SIMTask", "empirical_second_moment", "__version__", *_LAZY]


_SUBMODULES = (
    "theory",
    "curves",
    "swingby",
    "measures",
    "claims",
    "models",
    "paper",
    "simulate",
    "sweep",
    "testing",
    "plotting",
    "export",
    "symbolic",
    "cli",
    "diffusion",
)


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _LAZY:
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = getattr(module, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'simtheory' has no attribute {name!r}")


def __dir__():
    return sorted({*__all__, *_SUBMODULES})
