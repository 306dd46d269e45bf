"""The paper's settings as data: one frozen configuration per figure of Yang et al. (ICLR 2025).

Validations, the reproduction report, the command line and captions read these instead of retyping
them; :meth:`Setting.describe` writes the parameters of a caption from the configuration itself.

>>> from simtheory import paper
>>> fig5 = paper.figure5()
>>> fig5.task().a.round(4).tolist()
[0.5025, 1.1275, 0.0025]
>>> fig5.describe()
'symmetric model U U^T, d = 3, mu = (1, 1.5), sigma = 0.05, U0 = rand(3, 3)/5'

Sizes that differ between the quick and the full versions of a validation (learning rates, points per
cluster) live in :class:`Sizes`: ``figure5().sizes(quick=True)``.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from .task import SIMTask

#: the short words a caption uses for a model (its registry entry's ``description`` is the long form)
_MODEL_WORDS = {
    "symmetric": "symmetric model U U^T",
    "linear": "one-layer linear model",
    "untied": "two-layer W2 W1",
    "deep": "deep linear network",
    "mlp": "ReLU MLP",
}


@dataclass(frozen=True)
class Sizes:
    """Run sizes of one validation (a quick and a full variant each): learning rates, points per cluster
    ``n``, ensemble size ``E``, dimension ``d`` where it changes, and the training length: ``steps`` of
    full-batch
    GD, or ``epochs`` of SGD at ``batch`` (``steps=None``)."""

    lrs: tuple[float, ...] = ()
    n: int = 100
    E: int = 1
    d: int | None = None
    batch: int | None = None
    steps: int | None = None
    epochs: int = 40

    def n_steps(self, n_points: int) -> int:
        """Training steps: ``steps``, or ``epochs`` passes of SGD at ``batch`` over ``n_points`` points."""
        if self.steps is not None:
            return self.steps
        from .simulate import epoch_steps

        return epoch_steps(n_points, self.batch, self.epochs)


@dataclass(frozen=True)
class Setting:
    """One figure's setting: the data (``mu``, ``sigma`` as a standard deviation, ``d``), the model, the
    initialisation ``U0 = rand(d, d) / init_divisor`` (the paper's ``rand/5``) and the training budget
    (``lr`` x ``steps`` of the paper's runs). ``quick`` and ``full`` are the sizes of the GD validation of
    it."""

    figure: str
    mu: tuple[float, ...]
    sigma: float = 0.05
    d: int | None = None
    model: str = "symmetric"
    init_divisor: float = 5.0
    lr: float = 0.01
    steps: int = 2000
    quick: Sizes = field(default_factory=lambda: Sizes((0.0025,), 200))
    full: Sizes = field(default_factory=lambda: Sizes((0.000625,), 5000))

    def task(self, **changes) -> SIMTask:
        """The :class:`SIMTask` of the figure (``changes`` override ``sigma``, ``d``, ...)."""
        kw = {"sigma": self.sigma, "d": self.d, **changes}
        return SIMTask(self.mu, kw.pop("sigma"), **kw)

    @property
    def dim(self) -> int:
        return self.d if self.d is not None else len(self.mu)

    def U0(self, seed: int | np.random.Generator, shape=()) -> np.ndarray:
        """``rand(*shape, d, d) / init_divisor`` from ``seed`` (an int or a Generator)."""
        rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
        return rng.random((*shape, self.dim, self.dim)) / self.init_divisor

    def W0(self, seed, shape=()) -> np.ndarray:
        """``U0 U0^T`` for :meth:`U0`."""
        U0 = self.U0(seed, shape)
        return U0 @ np.swapaxes(U0, -1, -2)

    @property
    def budget(self) -> float:
        """The paper's training time ``lr x steps`` (in the paper's time unit)."""
        return self.lr * self.steps

    def sizes(self, quick: bool) -> Sizes:
        return self.quick if quick else self.full

    def describe(self) -> str:
        """The parameters of a caption, written from the configuration."""
        mu = ", ".join(f"{m:g}" for m in self.mu)
        return (
            f"{_MODEL_WORDS.get(self.model, self.model)}, d = {self.dim}, mu = ({mu}), sigma = "
            f"{self.sigma:g}, "
            f"U0 = rand({self.dim}, {self.dim})/{self.init_divisor:g}"
        )

    def with_(self, **changes) -> Setting:
        return replace(self, **changes)


def figure5() -> Setting:
    """Figure 5: swing-by of the symmetric model, d = 3, mu = (1, 1.5), sigma = 0.05, U0 = rand/5, lr 0.01,
    2000 steps. The GD validation runs lr 0.04 ... 0.005 (quick) or down to 0.00125 (full)."""
    return Setting(
        "5",
        (1.0, 1.5),
        d=3,
        quick=Sizes((0.04, 0.02, 0.01, 0.005), 200),
        full=Sizes((0.04, 0.02, 0.01, 0.005, 0.0025, 0.00125), 2000),
    )


def figure8() -> Setting:
    """Figure 8: triple descent, mu = (1, 1.5, 2.2)."""
    return Setting("8", (1.0, 1.5, 2.2))


def figure9() -> Setting:
    """Figure 9: quadruple descent, mu = (1, 1.5, 2.2, 2.7)."""
    return Setting("9", (1.0, 1.5, 2.2, 2.7))


def figure10() -> Setting:
    """Figure 10: the failure mode, mu = (0.7, 1.7, 3): the weak concept is suppressed and the OOD loss sits
    on a plateau near 1/2 mu_1^2 within the paper's budget (lr 0.01 x 2000 steps)."""
    return Setting("10", (0.7, 1.7, 3.0))


def figure2c() -> Setting:
    """Figures 2c/3: a four-layer linear network (widths d) from PyTorch's default initialisation, mu = (1,
    2), sigma = 0.05, at d = 2 (swing-by) and d = 64 (none). Full: the paper's 5000 points per cluster, SGD at
    batch 128 for 40 epochs, lr 0.05, 32 seeds; quick: full-batch GD, 64 points, 4000 steps, 16 seeds."""
    return Setting(
        "2c",
        (1.0, 2.0),
        d=2,
        model="deep",
        lr=0.05,
        quick=Sizes((0.05,), 64, E=16, steps=4000),
        full=Sizes((0.05,), 5000, E=32, batch=128),
    )


def figure15() -> Setting:
    """Figures 15/16 (our reading: the paper gives no setting): Figure 2c's four-layer network and sizes on
    clusters with sigma = 0.3, Gaussian or truncated at one standard deviation, d = 2."""
    return figure2c().with_(figure="15/16", sigma=0.3)


def figure7() -> Setting:
    """Figure 7: losses at every composition of the hypercube, mu = (1, 2, 3, 4), sigma = 0.05 (quick: lr 0.01
    on
    64 points per cluster; full: lr 0.002 on 1000)."""
    return Setting("7", (1.0, 2.0, 3.0, 4.0), quick=Sizes((0.01,), 64), full=Sizes((0.002,), 1000))


def figure2ab() -> Setting:
    """Figures 2a/2b under the published code's conventions: a ReLU MLP (hidden 64, biases, PyTorch's default
    initialisation), lr 0.1, mse loss; full: d = 64, 5000 points per cluster, SGD at batch 128 for 40 epochs,
    16 seeds; quick: d = 16, full-batch GD on 64 points, 1500 steps, 8 seeds (the conventions validation)."""
    return Setting(
        "2a/2b",
        (1.0, 2.0),
        model="mlp",
        lr=0.1,
        quick=Sizes((0.1,), 64, E=8, d=16, steps=1500),
        full=Sizes((0.1,), 5000, E=16, d=64, batch=128),
    )


def multiple_descent() -> dict[str, Setting]:
    """Figures 8-10 by name: ``triple``, ``quadruple``, ``failure``."""
    return {"triple": figure8(), "quadruple": figure9(), "failure": figure10()}
