"""The model registry: one entry per model, read by :func:`simtheory.predict`,
:func:`simtheory.simulate.flow_limit`, :class:`simtheory.simulate.Model` and :func:`simtheory.simulate.train`,
the command line's ``--model`` and the LaTeX record of curves.

An entry says how the model's gradient flow is predicted (``flow``, or ``None`` for a network the theory does
not cover), how a simulator's initial factor matrices become the flow's initial condition
(``init_from_factors``), how :func:`simtheory.simulate.train` builds and runs it (``network``, a
:class:`Network`), which time conventions apply, and which derivations the prediction comes from.
Prediction names and simulator kinds are the same names; ``"linear-flow"`` is the prediction-side alias of
``"linear"`` kept for existing scripts and files.

The built-in models are ordinary entries: a user's model is one :func:`register` call in the user's own
module (see ``docs/tutorial_user_model.md``), after which ``predict``, ``simtheory predict --model-module M
--model NAME``, ``simulate.Model(NAME)``, ``train``, ``flow_limit``, the pytest fixtures and the exports take
it by name. This module does not import torch: the built-in networks import it when they are called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Network:
    """How :func:`simtheory.simulate.train` builds and runs a model; every tensor has a leading ensemble
    axis E (each member its own weights and data).

    ``shapes(d, widths)`` -> the (out, in) shape of every weight matrix, first layer first; ``widths`` is
    :class:`simtheory.simulate.Model`'s tuple of hidden widths and must have between ``n_widths[0]`` and
    ``n_widths[1]`` entries (``None``: no upper bound). ``forward(weights, biases, X)`` maps inputs
    (E, N, d) to outputs (E, N, d) (``weights[k]`` is (E, out, in), ``biases`` empty unless ``bias``).
    ``jacobian(weights, biases, x)`` is the input-output Jacobian (E, d, d) at points x (E, d); ``None``
    takes it from ``forward`` by autograd (exact, d backward passes). ``penalty(weights)`` -> (E,) is a
    loss term that belongs to the model (weight decay of its definition, say), in gradient-flow units (the
    "sim" loss's): ``train`` adds it to the data loss (times 2/d under the "mse" loss, so that the flow in
    gradient-flow time is the model's own) and to the recorded training loss, and the model's ``flow`` must
    include it. For a linear network, :func:`linear_network` makes ``forward`` and ``jacobian`` from the
    end-to-end matrix.
    """

    shapes: Callable
    forward: Callable
    jacobian: Callable | None = None
    penalty: Callable | None = None
    n_widths: tuple = (0, None)
    bias: bool = False

    def check_widths(self, kind: str, widths: tuple) -> None:
        lo, hi = self.n_widths
        if len(widths) < lo or (hi is not None and len(widths) > hi):
            if hi == 0:
                raise ValueError(f"widths must be empty for the {kind} model, got {widths}")
            words = {1: "one", 2: "two", 3: "three"}
            if len(widths) < lo:
                raise ValueError(
                    f"{kind} needs at least {words.get(lo, lo)} hidden width{'s' if lo > 1 else ''} "
                    f"(L layers have L - 1 widths), got {widths}"
                )
            raise ValueError(
                f"{kind} takes at most {words.get(hi, hi)} width{'s' if hi > 1 else ''} "
                f"(the hidden size{'s' if hi > 1 else ''}), got {widths}"
            )


def linear_network(
    shapes: Callable, product: Callable, *, penalty: Callable | None = None, n_widths=(0, None)
):
    """A :class:`Network` for a linear model ``f(x) = W x`` whose end-to-end matrix is ``product(weights)``
    ((E, d, d) from the list of weight tensors, e.g. ``lambda ws: ws[0] @ ws[0].mT`` for U U^T): the
    forward pass is ``X @ W^T`` and the Jacobian is ``W``."""
    if not callable(shapes) or not callable(product):
        raise ValueError("shapes and product must be functions (see simtheory.models.Network)")

    def forward(weights, biases, X):
        return X @ product(weights).mT

    def jacobian(weights, biases, x):
        return product(weights)

    return Network(shapes, forward, jacobian, penalty, tuple(n_widths))


@dataclass(frozen=True)
class ModelSpec:
    """One model.

    ``flow(task_or_A, init, t, *, convention, **solver)`` returns ``W(t)`` (``(*batch, len(t), d, d)``), where
    ``init`` is what :func:`simtheory.predict` takes as ``W0`` for this model (a matrix, a pair of factors, or
    a list of factors); ``init_from_factors(factors)`` makes that from the weight matrices a simulator starts
    from (first layer first). ``formulas`` are ``(derivation, formula)`` pairs whose LaTeX is recorded with
    the curves: a derivation of the ``derivations`` package by name, or a user's
    :class:`~simtheory.symbolic.Derivation` object (one that lives outside the package).
    ``network`` (a :class:`Network`): how ``simulate.train`` runs the model (``None``: predicted only).
    ``penalty_of_W(W)`` -> (...,): the model's own loss terms as a function of the end-to-end matrix (NumPy,
    (..., d, d) -> (...,), gradient-flow units), added to the predicted curves' training loss (``None``: the
    training loss is the data term alone). ``start(d, *, init, scale, seed, layers)``: the model's own initial
    condition for :func:`initial_state` (``None``: one draw of every weight matrix the network declares,
    ``network.shapes(d, ())``, from the init family and scale, made into the flow's start by
    ``init_from_factors``; models without a network start from one d x d factor).
    """

    name: str
    description: str
    flow: Callable | None = None
    init_from_factors: Callable | None = None
    conventions: tuple[str, ...] = ("gradient-flow",)
    formulas: tuple = ()
    network: Network | None = None
    penalty_of_W: Callable | None = None
    start: Callable | None = None

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name or self.name != self.name.strip():
            raise ValueError(f"name must be a non-empty string without surrounding spaces, got {self.name!r}")
        for attr in ("flow", "init_from_factors", "penalty_of_W", "start"):
            value = getattr(self, attr)
            if value is not None and not callable(value):
                raise ValueError(f"{attr} must be a function or None, got {value!r}")
        if self.flow is not None and self.init_from_factors is None and self.network is not None:
            raise ValueError(
                "init_from_factors must be given when a model has both a flow and a network (flow_limit "
                "makes the flow's initial condition from the network's initial weights with it)"
            )
        if self.network is not None and not isinstance(self.network, Network):
            raise ValueError(f"network must be a simtheory.models.Network or None, got {self.network!r}")
        object.__setattr__(self, "conventions", tuple(self.conventions))
        object.__setattr__(self, "formulas", tuple(self.formulas))

    @property
    def predictable(self) -> bool:
        return self.flow is not None

    @property
    def simulate(self) -> bool:
        """Whether ``simulate.Model(name)`` exists (the entry has a network)."""
        return self.network is not None


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
        raise ValueError(
            f"model must be one of {sorted(names()) + sorted(_ALIASES)} (the registry, simtheory.models); "
            f"got {name!r}. A model of yours is added by the module that registers it: import it first, or "
            "pass --model-module MODULE (command line) or model_module=MODULE (sweep cells)"
        )
    return _REGISTRY[key]


def load_module(name: str, parameter: str = "model_module"):
    """Import a user's module of models by its dotted name (``mypkg.models``; nothing is evaluated from the
    string), so that its :func:`register` calls run in this process -- the command line's ``--model-module``
    and the sweep cells' ``model_module`` parameter, which each Dask worker process imports for itself.
    The current directory is searched too, as ``python -m`` does. ``parameter`` names the option in errors.
    """
    import importlib
    import os
    import re
    import sys

    if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z_]\w*(\.[A-Za-z_]\w*)*", name):
        raise ValueError(f"{parameter} must be a dotted module name like mypkg.models, got {name!r}")
    if os.getcwd() not in sys.path:
        sys.path.append(os.getcwd())
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise ValueError(f"{parameter} {name!r} cannot be imported: {exc}") from None


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


# the built-in networks (torch is imported when they are called, by which time simulate has imported it)


def _chain_shapes(d, widths):
    sizes = (d, *widths, d)
    return [(sizes[i + 1], sizes[i]) for i in range(len(sizes) - 1)]


def _one_hidden(d, widths):
    return widths[0] if widths else d


def _chain_forward(relu: bool):
    def forward(weights, biases, X):
        import torch

        h, last = X, len(weights) - 1
        for k, W in enumerate(weights):
            h = h @ W.transpose(1, 2)
            if biases:
                h = h + biases[k][:, None, :]
            if relu and k < last:
                h = torch.relu(h)
        return h

    return forward


def _chain_jacobian(relu: bool):
    def jacobian(weights, biases, x):
        import torch

        E, d = x.shape
        J = torch.eye(d, dtype=x.dtype, device=x.device).expand(E, d, d)
        h, last = x[:, None, :], len(weights) - 1
        for k, W in enumerate(weights):
            J = W @ J
            h = h @ W.transpose(1, 2)
            if biases:
                h = h + biases[k][:, None, :]
            if relu and k < last:
                J = J * (h[:, 0, :] > 0).to(x.dtype)[:, :, None]
                h = torch.relu(h)
        return J

    return jacobian


def _symmetric_forward(weights, biases, X):
    U = weights[0]
    return X @ U @ U.transpose(1, 2)


def _symmetric_jacobian(weights, biases, x):
    U = weights[0]
    return U @ U.transpose(1, 2)


_LINEAR_CHAIN = (_chain_forward(False), _chain_jacobian(False))

register(
    ModelSpec(
        "linear",
        "one layer, f = W x (Theorem 4.1; closed form)",
        _linear,
        lambda f: f[0],
        formulas=(("one_layer_flow", "matrix"), ("one_layer_flow", "entry")),
        network=Network(lambda d, w: [(d, d)], *_LINEAR_CHAIN, n_widths=(0, 0)),
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
        network=Network(
            lambda d, w: [(d, _one_hidden(d, w))], _symmetric_forward, _symmetric_jacobian, n_widths=(0, 1)
        ),
    )
)
register(
    ModelSpec(
        "untied",
        "two layers W2 W1 (mode-wise sigmoid for balanced starts, else the ODE)",
        _untied,
        lambda f: (f[0], f[1]),
        formulas=(("untied", "flow_W1"), ("untied", "flow_W2"), ("untied", "mode")),
        network=Network(
            lambda d, w: [(_one_hidden(d, w), d), (d, _one_hidden(d, w))], *_LINEAR_CHAIN, n_widths=(0, 1)
        ),
    )
)
register(
    ModelSpec(
        "deep",
        "deep linear W_L ... W_1 (the ODE of every factor; no closed form)",
        _deep,
        list,
        network=Network(_chain_shapes, *_LINEAR_CHAIN, n_widths=(1, None)),
    )
)
register(
    ModelSpec(
        "mlp",
        "a ReLU MLP, simulated only: the theory covers linear models",
        network=Network(
            _chain_shapes, _chain_forward(True), _chain_jacobian(True), n_widths=(1, None), bias=True
        ),
    )
)

#: families of :func:`initial_state`: entries ``scale x`` uniform[0, 1), standard normal, or the identity
#: (ones for a vector, a matrix with a dimension of 1)
INIT_FAMILIES = ("rand", "normal", "diag")


def draw(rng, family: str, scale: float, shape) -> "np.ndarray":  # noqa: F821
    """One weight array of ``shape`` from an init family (:data:`INIT_FAMILIES`) and scale."""
    import numpy as np

    if family == "rand":
        return rng.random(shape) * scale
    if family == "normal":
        return rng.standard_normal(shape) * scale
    return (np.ones(shape) if 1 in tuple(shape) else np.eye(*shape)) * scale


def initial_state(
    name: str, d: int, *, init: str = "rand", scale: float = 0.2, seed: int = 0, layers: int = 3
):
    """The initial condition ``predict`` takes for model ``name``, from an init family and scale.

    The model's own ``start`` where it has one; else one seeded draw of every weight matrix its network
    declares (:meth:`Network.shapes` at ``d``, no hidden widths: a diagonal network's two (d, 1) vectors,
    say), made into the flow's start by its ``init_from_factors``. The built-in models (and a user's with one
    d x d factor) start from ``U0 = scale * rand / standard normal / identity``: ``W0 = U0 U0^T``
    (symmetric), ``U0`` (linear), ``(U0, U0^T)`` (untied), ``[U0, U0^T, U0, ...]`` (deep, ``layers``
    factors). Used by ``simtheory predict`` and the sweep cells, so the two give the same start from the same
    seed."""
    import numpy as np

    from . import _checks

    spec = get(name)
    if not spec.predictable:
        raise ValueError(f"model {name!r} has no gradient-flow prediction (so no initial state for it)")
    d = _checks.positive_int(d, "d", maximum=_checks.MAX_D)
    init = _checks.choice(init, "init", INIT_FAMILIES)
    scale = _checks.real_number(scale, "init scale", low=0.0, low_open=True)
    if spec.start is not None:
        return spec.start(d, init=init, scale=scale, seed=seed, layers=layers)
    rng = np.random.default_rng(_checks.seed_value(seed))
    shapes = [(d, d)] if spec.network is None else [tuple(x) for x in spec.network.shapes(d, ())]
    if spec.name in ("untied", "deep"):
        U0 = draw(rng, init, scale, (d, d))
        n = 2 if spec.name == "untied" else _checks.positive_int(layers, "layers", minimum=2, maximum=64)
        return spec.init_from_factors([U0 if k % 2 == 0 else U0.T.copy() for k in range(n)])
    return spec.init_from_factors([draw(rng, init, scale, shape) for shape in shapes])
