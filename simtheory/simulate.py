"""Gradient-descent training on SIM data with PyTorch, as batched ensembles.

Many independent models (over seeds and settings) are trained at once: every parameter has a
leading ensemble axis ``E`` and each member sees its own data, so one forward/backward pass serves
the whole ensemble (the members' losses are summed; their gradients do not interact).

Conventions (see the design reference):

* Loss ``"sim"``: ``L = 1/2 mean_n ||f(x_n) - x_n||^2`` (sum over coordinates). Gradient-flow time is
  ``t = lr x steps``. Loss ``"mse"`` is ``F.mse_loss`` (mean over samples *and* coordinates), as the
  paper's published code: it equals ``(2/d) L``, so ``t = lr x steps x 2/d``.
* Models: ``linear`` (W), ``symmetric`` (U U^T), ``untied`` (W2 W1), ``deep`` (W_L ... W_1, any
  widths), ``mlp`` (ReLU between layers, optional biases).
* Initialisations: ``gaussian`` (entries N(0, scale^2)), ``uniform`` (uniform[0, 1) x scale;
  ``scale = 1/5`` is the paper's Figure 5), ``default`` (PyTorch's nn.Linear default:
  U(-1/sqrt(fan_in), 1/sqrt(fan_in)) for weights and biases), ``given`` (arrays).
* Records at chosen steps: the input-output Jacobian W (for the MLP at the OOD point), outputs at
  all 2^s compositions, the training loss and the OOD loss, as :class:`~simtheory.Curves`.

torch is imported when this module is imported; ``import simtheory`` alone does not import it.
"""

from __future__ import annotations

import contextlib
import contextvars
from dataclasses import dataclass, field

import numpy as np
import torch

from . import _checks, _threads
from .curves import Curves, frozen
from .models import get as _model_get, names as _model_names
from .task import SIMTask, empirical_second_moment
from .theory import identity_loss

MODELS = _model_names(simulate=True)  # the built-in simulated kinds (Model checks the registry as it is now)
INITS = ("gaussian", "uniform", "default", "given")
LOSSES = ("sim", "mse")


@dataclass(frozen=True)
class Model:
    """Architecture: ``kind`` is any entry of the model registry with a network (:mod:`simtheory.models`;
    the built-in ones and every model a user has registered). ``widths``: hidden widths (symmetric: (h,)
    for U of shape d x h, default d; untied: (h,); deep/mlp: one per hidden layer, so L layers have L - 1
    widths). ``bias``: biases on every layer, for networks that take them (the built-in mlp)."""

    kind: str
    widths: tuple[int, ...] = ()
    bias: bool = False

    def __post_init__(self):
        _checks.choice(self.kind, "model kind", _model_names(simulate=True))
        if not isinstance(self.widths, (tuple, list)):
            raise ValueError(
                f"widths must be a tuple of hidden widths, e.g. ({self.widths!r},); got {self.widths!r}"
            )
        widths = tuple(_checks.positive_int(w, "widths", maximum=_checks.MAX_D) for w in self.widths)
        object.__setattr__(self, "widths", widths)
        self.network.check_widths(self.kind, widths)
        if self.bias and not self.network.bias:
            raise ValueError(
                f"bias is only available for networks that take it (the mlp model), not {self.kind}"
            )

    @property
    def network(self):
        """The registry's :class:`~simtheory.models.Network` of this kind."""
        return _model_get(self.kind).network

    def shapes(self, d: int) -> list[tuple[int, int]]:
        """(out, in) of every weight matrix, first layer first (symmetric: the single U, d x h)."""
        return [tuple(int(n) for n in shape) for shape in self.network.shapes(d, self.widths)]


@dataclass(frozen=True)
class Init:
    """Initialisation (see the module docstring). ``arrays``: for ``given``, one array per weight
    matrix, shape (out, in) or (E, out, in); biases (if any) start at zero."""

    kind: str = "gaussian"
    scale: float = 1e-3
    arrays: tuple = field(default=(), compare=False)

    def __post_init__(self):
        _checks.choice(self.kind, "init kind", INITS)
        _checks.real_number(self.scale, "init scale", low=0.0, low_open=True)
        if self.kind == "given" and not self.arrays:
            raise ValueError("init kind 'given' needs arrays (one per weight matrix)")


@dataclass(frozen=True)
class Run:
    """Result of :func:`train`: curves (batch axis = ensemble member), the training inputs
    (E, N, d), their exact second moments A_n (E, d, d), the final parameters and the initial
    weight matrices (each (E, out, in), first layer first)."""

    curves: Curves
    inputs: np.ndarray
    A_n: np.ndarray
    params: tuple
    initial: tuple = ()


def _dtype(dtype) -> torch.dtype:
    table = {
        "float64": torch.float64,
        "float32": torch.float32,
        torch.float64: torch.float64,
        torch.float32: torch.float32,
    }
    if not isinstance(dtype, (str, torch.dtype)) or dtype not in table:
        raise ValueError(f"dtype must be 'float32' or 'float64', got {dtype!r}")
    return table[dtype]


def init_params(model: Model, init: Init, d: int, seeds, dtype=torch.float64, device="cpu"):
    """Weights (E, out, in) and biases (E, out) for members seeded by ``seeds`` (one int each)."""
    seeds = [_checks.seed_value(s, "seeds") for s in seeds]
    E = len(seeds)
    shapes = model.shapes(d)
    weights, biases = [], []
    if init.kind == "given":
        if len(init.arrays) != len(shapes):
            raise ValueError(
                f"init arrays must hold {len(shapes)} matrices for {model.kind}, got {len(init.arrays)}"
            )
        for k, (arr, shp) in enumerate(zip(init.arrays, shapes)):
            a = _checks.as_float_array(arr, f"init.arrays[{k}]")
            if a.shape[-2:] != shp or a.ndim not in (2, 3) or (a.ndim == 3 and a.shape[0] != E):
                raise ValueError(f"init.arrays[{k}] must have shape {shp} or {(E, *shp)}, got {a.shape}")
            weights.append(torch.as_tensor(np.broadcast_to(a, (E, *shp)).copy(), dtype=dtype, device=device))
    else:
        per_member = []
        for s in seeds:
            g = torch.Generator().manual_seed(s)
            mats = []
            for out_, in_ in shapes:
                if init.kind == "gaussian":
                    mats.append(torch.randn(out_, in_, generator=g, dtype=torch.float64) * init.scale)
                elif init.kind == "uniform":
                    mats.append(torch.rand(out_, in_, generator=g, dtype=torch.float64) * init.scale)
                else:  # PyTorch nn.Linear default
                    bound = 1.0 / np.sqrt(in_)
                    mats.append((torch.rand(out_, in_, generator=g, dtype=torch.float64) * 2 - 1) * bound)
            per_member.append(mats)
        weights = [
            torch.stack([m[k] for m in per_member]).to(dtype=dtype, device=device) for k in range(len(shapes))
        ]
    if model.bias:
        for k, (out_, in_) in enumerate(shapes):
            if init.kind == "default":
                g = [torch.Generator().manual_seed(s + 7919 * (k + 1)) for s in seeds]
                b = torch.stack(
                    [(torch.rand(out_, generator=gi, dtype=torch.float64) * 2 - 1) / np.sqrt(in_) for gi in g]
                )
            else:
                b = torch.zeros(E, out_, dtype=torch.float64)
            biases.append(b.to(dtype=dtype, device=device))
    return weights, biases


def forward(model: Model, weights, biases, X: torch.Tensor) -> torch.Tensor:
    """Batched forward pass: X (E, N, d) -> (E, N, d), by the model's network."""
    return model.network.forward(weights, biases, X)


def jacobian(model: Model, weights, biases, x: torch.Tensor) -> torch.Tensor:
    """Input-output Jacobian at points x (E, d): (E, d, d), by the model's network (the built-in models give
    it exactly: they are piecewise linear); a network without one gets it by autograd through its forward
    pass (exact, one backward pass per output coordinate)."""
    net = model.network
    if net.jacobian is not None:
        return net.jacobian(weights, biases, x)
    with torch.enable_grad():
        xs = x.detach().clone().requires_grad_(True)
        y = net.forward(weights, biases, xs[:, None, :])[:, 0, :]  # (E, d); members are independent
        rows = [torch.autograd.grad(y[:, i].sum(), xs, retain_graph=True)[0] for i in range(y.shape[1])]
    return torch.stack(rows, dim=1)


def _loss(Y, X, kind):
    sq = (Y - X) ** 2
    if kind == "sim":
        return 0.5 * sq.sum(dim=-1).mean(dim=-1)  # (E,)
    return sq.mean(dim=(-2, -1))


@dataclass(frozen=True)
class _Setup:
    """A validated training problem: the members' tasks, data (numpy and torch), steps to run and to
    record."""

    tasks: list
    shared_task: bool
    seeds: list
    lr: float
    steps: int
    record: np.ndarray
    X_np: np.ndarray
    X: torch.Tensor
    batch_size: int | None
    loss: str
    dtype: str
    tdtype: torch.dtype
    device: str
    weight_decay: float = 0.0
    penalty: object = None
    model_penalty: object = None  # the model's own loss term (its Network.penalty), in gradient-flow units

    @property
    def penalised(self) -> bool:
        return bool(self.weight_decay) or self.penalty is not None or self.model_penalty is not None

    @property
    def time_factor(self) -> float:
        """Gradient-flow time per (lr x step): 1 for the "sim" loss, 2/d for "mse" (mean over coordinates)."""
        return 2.0 / self.d if self.loss == "mse" else 1.0

    def penalty_value(self, weights) -> torch.Tensor | float:
        """The loss terms beyond the data: ``weight_decay/2 sum_k ||W_k||_F^2`` (weights, not biases) plus
        the user's ``penalty(weights)``, per member (E,), in the units of the training loss; plus the model's
        own penalty, which is in gradient-flow units (so times ``time_factor``)."""
        total = 0.0
        if self.weight_decay:
            total = 0.5 * self.weight_decay * sum((W * W).sum(dim=(-2, -1)) for W in weights)
        if self.penalty is not None:
            total = total + self.penalty(weights)
        if self.model_penalty is not None:
            total = total + self.time_factor * self.model_penalty(weights)
        return total

    @property
    def d(self) -> int:
        return self.tasks[0].d


def _penalty(penalty):
    if penalty is not None and not callable(penalty):
        raise ValueError(
            "penalty must be a function of the list of weight tensors (each (E, out, in)) returning one "
            f"value per member (E,), or None; got {penalty!r}"
        )
    return penalty


def _setup(
    tasks,
    *,
    lr,
    steps,
    record,
    n,
    seeds,
    data_seeds,
    inputs,
    batch_size,
    loss,
    dtype,
    device,
    weight_decay=0.0,
    penalty=None,
    model_penalty=None,
) -> _Setup:
    """Check every argument of :func:`train` and build the training data (before any side effect)."""
    _checks.choice(loss, "loss", LOSSES)
    tdtype = _dtype(dtype)
    device = _checks.torch_device(device)
    seeds, task_list = _members(tasks, seeds)
    lr = _checks.real_number(lr, "lr", low=0.0, low_open=True)
    steps = _checks.positive_int(steps, "steps", minimum=0, maximum=10**9)
    record = _record_steps(record, steps)
    X_np = _training_inputs(inputs, n, task_list, seeds, data_seeds)
    N = X_np.shape[1]
    if batch_size is not None:
        batch_size = _checks.positive_int(batch_size, "batch_size")
        if batch_size > N:
            raise ValueError(f"batch_size must be <= N = {N}, got {batch_size}")
    X = torch.as_tensor(np.array(X_np, dtype=np.float64), dtype=tdtype, device=device)
    return _Setup(
        task_list,
        isinstance(tasks, SIMTask),
        seeds,
        lr,
        steps,
        record,
        X_np,
        X,
        batch_size,
        loss,
        str(dtype),
        tdtype,
        device,
        _checks.real_number(weight_decay, "weight_decay", low=0.0),
        _penalty(penalty),
        model_penalty,
    )


def _members(tasks, seeds) -> tuple[list, list]:
    """The ensemble's seeds and one task per member (a single task is shared)."""
    if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__"):
        raise ValueError(f"seeds must be a list of integer seeds (one per ensemble member), got {seeds!r}")
    seeds = [_checks.seed_value(x, "seeds") for x in seeds]
    E = len(seeds)
    if E == 0:
        raise ValueError("seeds must hold at least one seed (one per ensemble member)")
    task_list = [tasks] * E if isinstance(tasks, SIMTask) else list(tasks)
    if len(task_list) != E or not all(isinstance(t, SIMTask) for t in task_list):
        raise ValueError(f"tasks must be a SIMTask or a list of {E} SIMTasks (one per seed)")
    ref = task_list[0]
    if any((t.s, t.d, t.origin) != (ref.s, ref.d, ref.origin) for t in task_list):
        raise ValueError("all tasks of an ensemble must share s, d and origin")
    return seeds, task_list


def _record_steps(record, steps: int) -> np.ndarray:
    """The steps to record (default: 0, 60 log-spaced steps and the last), checked."""
    if record is None:
        grid = np.geomspace(1, steps, 60).astype(np.int64) if steps else np.zeros(0, np.int64)
        record = np.unique(np.concatenate([[0], grid, [steps]]))
    record = np.unique(np.asarray(record))
    if (
        record.size == 0
        or not np.issubdtype(record.dtype, np.integer)
        or record.min() < 0
        or record.max() > steps
    ):
        raise ValueError(f"record must be integer steps in [0, steps = {steps}], got {record!r}")
    return record


def _training_inputs(inputs, n, task_list, seeds, data_seeds) -> np.ndarray:
    """The members' training inputs ``(E, N, d)``: given (shared or per member), or sampled from the tasks."""
    E, d = len(task_list), task_list[0].d
    if inputs is not None:
        X_np = _checks.as_float_array(inputs, "inputs")
        if X_np.ndim == 2:
            X_np = np.broadcast_to(X_np, (E, *X_np.shape))
        if X_np.ndim != 3 or X_np.shape[0] != E or X_np.shape[2] != d or X_np.shape[1] == 0:
            raise ValueError(f"inputs must have shape (N, {d}) or ({E}, N, {d}), got {np.shape(inputs)}")
        return X_np
    n = _checks.positive_int(n, "n")
    dseeds = seeds if data_seeds is None else list(data_seeds)
    if len(dseeds) != E:
        raise ValueError(f"data_seeds must hold {E} seeds, got {len(dseeds)}")
    return np.stack([t.sample(n, seed=s).inputs for t, s in zip(task_list, dseeds)])


def _name(fn) -> str | None:
    return None if fn is None else getattr(fn, "__qualname__", repr(fn))


class _Recorder:
    """The recorded curves of a run: the Jacobian at the OOD point, the outputs at every composition and the
    training loss, at the steps of ``setup.record``; :meth:`curves` makes the :class:`Curves`."""

    def __init__(self, setup: _Setup, model: Model):
        self.setup, self.model = setup, model
        tasks, dev, dt = setup.tasks, setup.device, setup.tdtype
        self.x_ood = np.stack([t.test_point() for t in tasks])
        self.ood = torch.as_tensor(self.x_ood, dtype=dt, device=dev)
        self.comps = torch.as_tensor(np.stack([t.test_points() for t in tasks]), dtype=dt, device=dev)
        E, T, d = len(setup.seeds), setup.record.size, setup.d
        self.W = np.empty((E, T, d, d))
        self.out = np.empty((E, T, self.comps.shape[1], d))
        self.train = np.empty((E, T))

    def __call__(self, r: int, weights, biases) -> None:
        m, X = self.model, self.setup.X
        with torch.no_grad():
            self.W[:, r] = jacobian(m, weights, biases, self.ood).detach().double().cpu().numpy()
            self.out[:, r] = forward(m, weights, biases, self.comps).detach().double().cpu().numpy()
            data = _loss(forward(m, weights, biases, X), X, "sim")
            extra = self.setup.penalty_value(weights)  # in the training loss's units: to flow units
            self.train[:, r] = (data + extra / self.setup.time_factor).detach().double().cpu().numpy()

    def curves(self, init: Init) -> Curves:
        st, model = self.setup, self.model
        factor = st.time_factor
        times = st.record.astype(np.float64) * st.lr * factor
        ood_out = self.out[:, :, -1, :]  # the last composition is the all-ones OOD point
        return Curves(
            times=frozen(times),
            W=frozen(self.W),
            ood_output=frozen(ood_out),
            ood_loss=frozen(identity_loss(ood_out, self.x_ood[:, None, :])),
            train_loss=frozen(self.train),
            convention="gradient-flow",
            model=f"gd-{model.kind}",
            task=st.tasks[0],
            latex={},
            composition_outputs=frozen(self.out),
            meta={
                "lr": st.lr,
                "steps": st.record.tolist(),
                "loss": st.loss,
                "batch_size": st.batch_size,
                "dtype": st.dtype,
                "seeds": [int(s) for s in st.seeds],
                "model": {"kind": model.kind, "widths": list(model.widths), "bias": model.bias},
                "init": {"kind": init.kind, "scale": init.scale},
                "time_factor": factor,
                "weight_decay": st.weight_decay,
                "penalty": _name(st.penalty),
                "model_penalty": _name(st.model_penalty),
                "tasks": None if st.shared_task else [t.to_dict() for t in st.tasks],
            },
        )


#: steps between two checks of the divergence guard (each check synchronises with the device and costs a few
#: tensor operations; a diverging loss grows geometrically, and a NaN or inf stays, so it is still caught)
GUARD_EVERY = 32


class _Batches:
    """Minibatches of every member at once: at the start of each epoch one random permutation of the N
    points per member (all members in one ``argsort`` of uniform draws, from the run's generator) reorders
    the data, and the epoch's steps take consecutive slices of it, the last one holding the N mod
    batch_size remaining points (as a ``DataLoader(shuffle=True)`` per model does)."""

    def __init__(self, setup: _Setup, gen: torch.Generator):
        self.setup, self.gen = setup, gen
        N = setup.X.shape[1]
        self.size = setup.batch_size
        self.per_epoch = -(-N // self.size)
        self.shuffled = setup.X

    def __call__(self, k: int) -> torch.Tensor:
        st, j = self.setup, k % self.per_epoch
        if j == 0:
            E, N, d = st.X.shape
            perm = torch.argsort(torch.rand(E, N, generator=self.gen, dtype=torch.float64), dim=1)
            self.shuffled = torch.gather(st.X, 1, perm.to(st.device)[..., None].expand(-1, -1, d))
        return self.shuffled[:, j * self.size : (j + 1) * self.size]


def _check(setup: _Setup, L: torch.Tensor, initial: torch.Tensor, k: int, max_growth: float) -> None:
    """Raise ``RuntimeError`` naming the member and step when a member's loss is not finite or has grown
    past ``max_growth`` times its first value (plus one)."""
    bad = ~torch.isfinite(L) | (L > max_growth * (initial + 1.0))
    if bool(bad.any()):
        e = int(torch.nonzero(bad)[0])
        raise RuntimeError(
            f"training diverged: member {e} (seed {setup.seeds[e]}) has loss {float(L[e].detach()):.3g} "
            f"at step {k} with lr = {setup.lr}; lower lr (GD on a quadratic is stable only for "
            f"lr < 2 / curvature)"
        )


_PROGRESS = contextvars.ContextVar("simtheory_train_progress", default=False)


@contextlib.contextmanager
def progress_bars(on: bool = True):
    """Within the block, every :func:`train` call that does not say otherwise shows a (transient) progress
    bar over its steps: how the validations and the report show progress per run without a parameter in
    each of them."""
    token = _PROGRESS.set(bool(on))
    try:
        yield
    finally:
        _PROGRESS.reset(token)


def _loop(setup: _Setup, model: Model, weights, biases, params, recorder, it, max_growth: float) -> None:
    """The step loop (the hot path: plain Python ints and locals, nothing but the step between checks)."""
    gen = torch.Generator(device="cpu").manual_seed(int(setup.seeds[0]) * 1_000_003 + 17)
    batches = _Batches(setup, gen) if setup.batch_size is not None else None
    record, r, initial = [int(x) for x in setup.record], 0, None
    X, kind, lr, last = setup.X, setup.loss, setup.lr, setup.steps
    penalised = setup.penalised
    for k in it:
        if r < len(record) and record[r] == k:
            recorder(r, weights, biases)
            r += 1
        if k == last:
            break
        Xb = X if batches is None else batches(k)
        L = _loss(forward(model, weights, biases, Xb), Xb, kind)
        if penalised:
            L = L + setup.penalty_value(weights)
        if initial is None:
            initial = L.detach().clone()
        if k % GUARD_EVERY == 0 or k == last - 1:
            _check(setup, L.detach(), initial, k, max_growth)
        grads = torch.autograd.grad(L.sum(), params)
        with torch.no_grad():
            for p, g in zip(params, grads):
                p.add_(g, alpha=-lr)  # as torch.optim.SGD updates


def train(
    tasks,
    model: Model,
    init: Init,
    *,
    lr: float,
    steps: int,
    record=None,
    n: int = 100,
    seeds=(0,),
    data_seeds=None,
    inputs=None,
    batch_size: int | None = None,
    loss: str = "sim",
    dtype="float64",
    device="cpu",
    progress: bool | None = None,
    max_growth: float = 1e6,
    weight_decay: float = 0.0,
    penalty=None,
) -> Run:
    """Train an ensemble and record its curves.

    ``tasks``: one :class:`SIMTask` or a list (one per member; same s, d and origin). ``seeds``:
    one init seed per member (its length is the ensemble size E; a single task is shared).
    ``data_seeds``: seeds of each member's training set (default: the init seeds); ``n`` points per
    cluster; or ``inputs`` (E, N, d) / (N, d) to train on given data. ``batch_size=None`` is
    full-batch GD, an int is minibatch SGD (each epoch a fresh seeded shuffle of every member's data, cut into
    consecutive batches; the last batch of an epoch holds the remainder).
    ``record``: step indices to record (default 60 log-spaced steps and 0). ``progress``: a progress bar
    over the steps (default: as :func:`progress_bars` says, off outside it). Raises ``ValueError``
    for bad input and ``RuntimeError`` naming the member and step when the loss diverges (checked every
    :data:`GUARD_EVERY` steps).

    ``weight_decay`` lambda adds ``lambda/2 sum_k ||W_k||_F^2`` over the weight matrices (not biases) to
    the loss, as ``torch.optim.SGD(weight_decay=lambda)`` would; ``penalty(weights)`` adds any other term
    (a function of the list of weight tensors, each (E, out, in), returning (E,); differentiable by
    torch). Both are in the recorded training loss (in gradient-flow units) and in ``curves.meta``
    (``weight_decay``; ``penalty`` by its name). :func:`flow_limit` predicts weight decay on the
    one-layer model (``linear_flow(weight_decay=...)``).
    """
    max_growth = _check_model(model, init, max_growth)
    setup = _setup(
        tasks, lr=lr, steps=steps, record=record, n=n, seeds=seeds, data_seeds=data_seeds, inputs=inputs,
        batch_size=batch_size, loss=loss, dtype=dtype, device=device, weight_decay=weight_decay,
        penalty=penalty, model_penalty=model.network.penalty,
    )  # fmt: skip
    weights, biases = init_params(model, init, setup.d, setup.seeds, setup.tdtype, device)
    _check_network(model, weights, biases, setup.X)  # before any step: a wrong shape names the function
    start = tuple(w.detach().double().cpu().numpy().copy() for w in weights)
    params = [p.requires_grad_(True) for p in (*weights, *biases)]
    recorder = _Recorder(setup, model)
    it = _step_range(setup, model, progress)
    with _threads.for_size(_step_flops(setup, model), torch=True):
        _loop(setup, model, weights, biases, params, recorder, it, max_growth)
    A_n = np.stack([empirical_second_moment(x) for x in setup.X_np])
    final = tuple(p.detach().cpu().numpy().copy() for p in params)
    return Run(recorder.curves(init), np.asarray(setup.X_np), A_n, final, start)


def _step_flops(setup: _Setup, model: Model) -> float:
    """The size of one matmul of a step; threads go by it (one for small models: simtheory._threads)."""
    N_b = setup.batch_size or setup.X.shape[1]
    return 2.0 * len(setup.seeds) * N_b * max(max(s) for s in model.shapes(setup.d)) ** 2


def _check_network(model: Model, weights, biases, X) -> None:
    """The network's contract, checked once before training on a probe of the data: ``forward`` maps
    (E, N, d) to (E, N, d) and ``jacobian`` gives (E, d, d); a wrong shape names the function and the shapes
    (a product of the wrong shape would otherwise broadcast and train silently)."""
    net, (E, _, d) = model.network, X.shape
    with torch.no_grad():
        out = net.forward(weights, biases, X[:, :2])
        if tuple(out.shape) != (E, min(2, X.shape[1]), d):
            raise ValueError(
                f"the {model.kind} network's forward returned shape {tuple(out.shape)} for inputs "
                f"{tuple(X[:, :2].shape)}; it must return (E, N, d) = {(E, min(2, X.shape[1]), d)} "
                f"(weights of shapes {[tuple(w.shape) for w in weights]})"
            )
        if net.jacobian is not None:
            J = net.jacobian(weights, biases, X[:, 0])
            if tuple(J.shape) != (E, d, d):
                raise ValueError(
                    f"the {model.kind} network's jacobian (for a linear network: its product) returned shape "
                    f"{tuple(J.shape)}; it must return (E, d, d) = {(E, d, d)} (weights of shapes "
                    f"{[tuple(w.shape) for w in weights]})"
                )


def _check_model(model, init, max_growth) -> float:
    if not isinstance(model, Model):
        raise ValueError(f"model must be a simulate.Model, e.g. Model('linear'); got {model!r}")
    if not isinstance(init, Init):
        raise ValueError(f"init must be a simulate.Init, e.g. Init('gaussian', 1e-3); got {init!r}")
    return _checks.real_number(max_growth, "max_growth", low=1.0, low_open=True)


def _step_range(setup: _Setup, model: Model, progress: bool | None):
    """Steps 0..steps, with a progress bar where asked (or, by default, where :func:`progress_bars` is on)."""
    it = range(setup.steps + 1)
    if not (_PROGRESS.get() if progress is None else progress):
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=f"train {model.kind} x{len(setup.seeds)}", unit="step", leave=progress is not None)


def flow_limit(
    run: Run, t=None, *, population: bool = False, members=None, rtol: float = 1e-10, atol: float = 1e-12
) -> np.ndarray:
    """The gradient-flow prediction for every member of a GD run, from its own initial weights.

    Returns ``W(t)`` of shape (E, len(t), d, d) at the run's recorded times (default) or at ``t``
    (gradient-flow time). Uses each member's exact training second moment ``A_n`` (``population``:
    the task's population A instead). The predictor is the theory's for the model: ``linear_flow``,
    ``symmetric_flow``, ``untied_flow`` or ``deep_flow``; ReLU networks have none (``ValueError``).
    Full-batch GD approaches it with an error proportional to lr; SGD adds minibatch noise.
    ``members``: indices of the members to predict (default all); ``rtol``/``atol``: the ODE solver's
    tolerances where the flow is integrated numerically.
    """
    from . import models

    meta = run.curves.meta
    kind = meta["model"]["kind"]
    spec = models.get(kind)
    if not spec.predictable:
        raise ValueError(f"flow_limit: the {kind} model has no gradient-flow prediction ({spec.description})")
    if not run.initial:
        raise ValueError(
            "flow_limit: this Run carries no initial weights (made by an older version of train)"
        )
    t = run.curves.times if t is None else _checks.times(t)
    idx = _member_indices(members, run.A_n.shape[0])
    if population:
        tasks = meta.get("tasks")
        A = np.stack([SIMTask.from_dict(tasks[i]).A for i in idx]) if tasks else run.curves.task.A
    else:
        A = run.A_n[idx]
    start = [w[idx] for w in run.initial]
    if meta.get("penalty"):
        raise ValueError(f"flow_limit: no prediction for the run's own penalty {meta['penalty']!r}")
    wd = float(meta.get("weight_decay") or 0.0)
    if wd:
        if kind != "linear":
            raise ValueError(
                "flow_limit: weight decay is predicted for the linear model only (linear_flow(weight_decay=))"
                f"; this run trained {kind!r} with weight_decay = {wd:g}"
            )
        from .theory import linear_flow

        # the penalty is on the loss as trained: in gradient-flow time (lr x steps x time_factor) its lambda
        # is weight_decay / time_factor
        return linear_flow(A, start[0], t, weight_decay=wd / float(meta.get("time_factor", 1.0)))
    W = spec.flow(A, spec.init_from_factors(start), t, rtol=rtol, atol=atol)
    expected = (idx.size, t.size, run.curves.W.shape[-1], run.curves.W.shape[-1])
    if np.shape(W) != expected:
        raise ValueError(
            f"flow_limit: the {kind} model's flow gave shape {np.shape(W)} for {idx.size} members, expected "
            f"{expected}; check its init_from_factors (it takes the list of weight arrays, each (E, out, "
            "in), first layer first) and its flow (it must keep the batch axis)"
        )
    return W


def _member_indices(members, E: int) -> np.ndarray:
    try:
        idx = np.arange(E) if members is None else np.asarray(members, dtype=np.int64).reshape(-1)
    except (TypeError, ValueError):
        raise ValueError(
            f"members must be integer indices of the {E} ensemble members, got {members!r}"
        ) from None
    if idx.size == 0 or idx.min() < -E or idx.max() >= E:
        raise ValueError(f"members must index the {E} ensemble members, got {members!r}")
    return idx


def epoch_steps(n_points: int, batch_size: int, epochs: int) -> int:
    """Steps of minibatch SGD that make ``epochs`` passes over ``n_points`` (ceil per epoch)."""
    n_points = _checks.positive_int(n_points, "n_points")
    batch_size = _checks.positive_int(batch_size, "batch_size")
    return _checks.positive_int(epochs, "epochs") * -(-n_points // batch_size)
