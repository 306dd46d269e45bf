"""The model registry: one entry per model, read by :func:`simtheory.predict`,
:func:`simtheory.simulate.flow_limit`, :class:`simtheory.simulate.Model`, the command line's ``--model``
choices and the LaTeX record of curves.

An entry says how the model's gradient flow is predicted (``flow``, or ``None`` for a network the theory does
not cover), how a simulator's initial factor matrices become the flow's initial condition
(``init_from_factors``), which time conventions apply, and which derivations the prediction comes from.
Prediction names and simulator kinds are the same names; ``"linear-flow"`` is the prediction-side alias of
``"linear"`` kept for existing scripts and files.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class ModelSpec:
    """One model.

    ``flow(task_or_A, init, t, *, convention, **solver)`` returns ``W(t)`` (``(*batch, len(t), d, d)``), where
    ``init`` is what :func:`simtheory.predict` takes as ``W0`` for this model (a matrix, a pair of factors, or
    a list of factors); ``init_from_factors(factors)`` makes that from the weight matrices a simulator starts
    from (first layer first). ``formulas`` are ``(derivation, formula)`` pairs whose LaTeX is recorded with
    the curves.
    """

    name: str
    description: str
    flow: Callable | None = None
    init_from_factors: Callable | None = None
    conventions: tuple[str, ...] = ("gradient-flow",)
    formulas: tuple[tuple[str, str], ...] = ()
    simulate: bool = True  # a simulate.Model kind exists for it

    @property
    def predictable(self) -> bool:
        return self.flow is not None


_REGISTRY: dict[str, ModelSpec] = {}
_ALIASES = {"linear-flow": "linear"}


def register(spec: ModelSpec) -> ModelSpec:
    """Add (or replace) a model; returns it."""
    if not isinstance(spec, ModelSpec):
        raise TypeError(f"register takes a ModelSpec, got {type(spec).__name__}")
    _REGISTRY[spec.name] = spec
    return spec


def get(name: str) -> ModelSpec:
    """The entry of ``name`` (or of its alias), with a clear error listing the known models."""
    key = _ALIASES.get(name, name) if isinstance(name, str) else name
    if key not in _REGISTRY:
        raise ValueError(f"model must be one of {sorted(names()) + sorted(_ALIASES)}; got {name!r}")
    return _REGISTRY[key]


def names(*, predictable: bool | None = None, simulate: bool | None = None) -> tuple[str, ...]:
    """Registered model names, optionally only those with a prediction and/or a simulator."""
    return tuple(
        n
        for n, s in _REGISTRY.items()
        if (predictable is None or s.predictable == predictable)
        and (simulate is None or s.simulate == simulate)
    )


# --- built-in models
# -----------------------------------------------------------------------------------------------


def _linear(task, W0, t, *, convention="gradient-flow", **solver):
    from . import theory

    return theory.linear_flow(task, W0, t)  # closed form: solver options do not apply


def _symmetric(task, W0, t, *, convention="gradient-flow", **solver):
    from . import theory

    return theory.symmetric_flow(task, W0, t, convention=convention, **solver)


def _pair(init, name):
    if not (isinstance(init, (tuple, list)) and len(init) == 2):
        raise ValueError(f"W0 must be a pair (W1_0, W2_0) for the {name} model")
    return init


def _untied(task, W0, t, *, convention="gradient-flow", **solver):
    from . import theory

    W1, W2 = _pair(W0, "untied")
    return theory.untied_flow(task, W1, W2, t, **solver).W


def _deep(task, W0, t, *, convention="gradient-flow", **solver):
    from . import theory

    if not isinstance(W0, (tuple, list)):
        raise ValueError("W0 must be a list of factor matrices (first layer first) for the deep model")
    return theory.deep_flow(task, list(W0), t, **solver).W


def _symmetric_init(factors):
    from . import theory

    return theory.symmetric_init(factors[0])


register(
    ModelSpec(
        "linear",
        "one layer, f = W x (Theorem 4.1; closed form)",
        _linear,
        lambda f: f[0],
        formulas=(("one_layer_flow", "matrix"), ("one_layer_flow", "entry")),
    )
)
register(
    ModelSpec(
        "symmetric",
        "factorised U U^T (closed form when W0 commutes with A, else the ODE)",
        _symmetric,
        _symmetric_init,
        conventions=("gradient-flow", "paper", "paper-code"),
        formulas=(("symmetric", "V"), ("symmetric", "logistic")),
    )
)
register(
    ModelSpec(
        "untied",
        "two layers W2 W1 (mode-wise sigmoid for balanced starts, else the ODE)",
        _untied,
        lambda f: (f[0], f[1]),
        formulas=(("untied", "flow_W1"), ("untied", "flow_W2"), ("untied", "mode")),
    )
)
register(ModelSpec("deep", "deep linear W_L ... W_1 (the ODE of every factor; no closed form)", _deep, list))
register(ModelSpec("mlp", "a ReLU MLP, simulated only: the theory covers linear models"))
