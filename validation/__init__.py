"""Validation of the theory against PyTorch gradient-descent runs: one module per claim.

Each module has ``run(quick=True, out=None) -> Report`` (pass/fail against stated tolerances,
metrics, figures) and runs from the command line: ``python -m validation.<name> [--full] [--out DIR]``.
Tests call the quick versions.
"""

MODULES = (
    "linear",
    "symmetric",
    "finite_samples",
    "learning_order",
    "swingby_practice",
    "topological",
    "conventions",
    "multiple_descent",
    "truncated",
)
