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

_MODEL_WORDS = {
    "symmetric": "symmetric model U U^T",
    "linear": "one-layer linear model",
    "untied": "two-layer W2 W1",
    "deep": "deep linear network",
    "mlp": "ReLU MLP",
}


@dataclass(frozen=True)
class Sizes:
    """Run sizes of one validation: learning rates and points per cluster (quick and full variants)."""

    lrs: tuple[float, ...]
    n: int


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
    on a
    plateau near 1/2 mu_1^2 within the paper's budget (lr 0.01 x 2000 steps)."""
    return Setting("10", (0.7, 1.7, 3.0))


def multiple_descent() -> dict[str, Setting]:
    """Figures 8-10 by name: ``triple``, ``quadruple``, ``failure``."""
    return {"triple": figure8(), "quadruple": figure9(), "failure": figure10()}
