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

#: families of :func:`initial_state`
INIT_FAMILIES = ("rand", "normal", "diag")


def initial_state(
    name: str, d: int, *, init: str = "rand", scale: float = 0.2, seed: int = 0, layers: int = 3
):
    """The initial condition ``predict`` takes for model ``name`` from one seeded factor
    ``U0 = scale * rand / standard normal / identity`` (d x d): ``W0 = U0 U0^T`` (symmetric), ``U0`` (linear),
    ``(U0, U0^T)`` (untied), ``[U0, U0^T, U0, ...]`` (deep, ``layers`` factors, first layer first).
    Used by ``simtheory predict`` and the sweep cells, so the two give the same start from the same seed."""
    import numpy as np

    from . import _checks

    spec = get(name)
    if not spec.predictable:
        raise ValueError(f"model {name!r} has no gradient-flow prediction (so no initial state for it)")
    d = _checks.positive_int(d, "d", maximum=_checks.MAX_D)
    init = _checks.choice(init, "init", INIT_FAMILIES)
    scale = _checks.real_number(scale, "init scale", low=0.0, low_open=True)
    rng = np.random.default_rng(_checks.seed_value(seed))
    if init == "rand":
        U0 = rng.random((d, d)) * scale
    elif init == "normal":
        U0 = rng.standard_normal((d, d)) * scale
    else:
        U0 = np.eye(d) * scale
    if spec.name in ("untied", "deep"):
        n = 2 if spec.name == "untied" else _checks.positive_int(layers, "layers", minimum=2, maximum=64)
        return spec.init_from_factors([U0 if k % 2 == 0 else U0.T.copy() for k in range(n)])
    return spec.init_from_factors([U0])
