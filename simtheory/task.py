"""The Structured Identity Mapping (SIM) task.

Conventions (see the project's design reference):

* Concepts ``p = 1..s`` live on the first ``s`` coordinate axes of ``R^d`` (``d >= s``).
  Cluster ``p`` is ``N(mu_p e_p, diag(sigma)^2)``; ``sigma`` is a **standard deviation**,
  shared by all clusters. An optional extra cluster sits at the origin.
* The model is trained on the identity map, ``L = 1/2 mean ||f(x) - x||^2``. For an
  input-linear model ``f(x) = W x`` this is ``1/2 tr((W - I) A (W - I)^T)`` with the
  uncentred second moment ``A = E[x x^T] = diag(a)``, ``a_p = mu_p^2 / s + sigma_p^2``
  (``mu_p^2 / (s + 1) + sigma_p^2`` with the origin cluster); ``a_j = sigma_j^2`` on
  coordinates without a concept.
* ``truncate=c`` (optional) bounds every cluster: each coordinate's noise is a normal truncated
  to ``[-c sigma, c sigma]`` (c standard deviations). The variance then shrinks by the factor
  :func:`truncated_variance_factor` ``(c)`` and so does the ``sigma^2`` term of ``a``; the theory
  sees the data only through ``A``.
* Compositional test points are ``x(v) = sum_p v_p mu_p e_p`` for ``v`` in ``{0, 1}^s``;
  the out-of-distribution (OOD) point is ``v = (1, ..., 1)``.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from . import _checks


class Sample(NamedTuple):
    """Training inputs (N, d) and integer cluster labels (N,); label ``s`` is the origin cluster."""

    inputs: np.ndarray
    labels: np.ndarray


def _per_coordinate_sigma(sigma, s: int, d: int) -> np.ndarray:
    """``sigma`` (a scalar, per concept or per coordinate) as ``d`` standard deviations (0 off the concepts
    when given per concept)."""
    sig = _checks.as_float_array(sigma, "sigma", ndim=(0, 1))
    if np.any(sig < 0):
        raise ValueError(f"sigma must be >= 0 (a standard deviation), got {sig.tolist()}")
    if sig.ndim == 0:
        return np.full(d, float(sig))
    if sig.size == s:
        return np.concatenate([sig, np.zeros(d - s)])
    if sig.size != d:
        raise ValueError(f"sigma must have length s = {s} or d = {d}, got length {sig.size}")
    return sig


@dataclass(frozen=True, eq=False)
class SIMTask:
    """A SIM task: concept means ``mu`` (length s) and standard deviations ``sigma``.

    Parameters
    ----------
    mu : sequence of float, length s
        Distance of concept p's cluster from the origin along axis p. Finite, > 0.
    sigma : float or sequence of float, length s or d
        Standard deviation of every cluster, per concept (length s; coordinates
        ``s..d-1`` then have zero variance), per coordinate (length d) or a scalar
        (all d coordinates). Finite, >= 0.
    d : int, optional
        Ambient dimension, ``d >= s`` (default ``s``).
    origin : bool
        Add a cluster at the origin (the paper's published MLP runs do).
    truncate : float, optional
        Truncate every cluster's noise at ``truncate`` standard deviations per coordinate
        (bounded clusters; finite, > 0). ``None`` (default): Gaussian clusters.
    """

    mu: np.ndarray
    sigma: np.ndarray
    d: int
    origin: bool = False
    truncate: float | None = None
    _a: np.ndarray = field(init=False, repr=False)

    def __init__(self, mu, sigma, d=None, origin=False, truncate=None):
        mu = _checks.as_float_array(mu, "mu", ndim=1)
        if mu.size == 0:
            raise ValueError("mu must contain at least one concept (length s >= 1)")
        if np.any(mu <= 0):
            raise ValueError(f"mu must be > 0 for every concept, got {mu.tolist()}")
        s = mu.size
        if d is None:
            d = s
        d = _checks.positive_int(d, "d", minimum=1, maximum=_checks.MAX_D)
        if d < s:
            raise ValueError(f"d must be >= s = {s} (one axis per concept), got d = {d}")
        sig = _per_coordinate_sigma(sigma, s, d)
        if not isinstance(origin, (bool, np.bool_)):
            raise ValueError(f"origin must be True or False, got {origin!r}")
        if truncate is not None:
            truncate = float(_checks.as_float_array(truncate, "truncate", ndim=0))
            if not truncate > 0:
                raise ValueError(f"truncate must be > 0 (standard deviations) or None, got {truncate}")
        n_clusters = s + (1 if origin else 0)
        with np.errstate(over="ignore"):
            a = sig**2 * (1.0 if truncate is None else truncated_variance_factor(truncate))
            a[:s] += mu**2 / n_clusters
        if not np.all(np.isfinite(a)) or np.max(a) > 1e150:
            raise ValueError(
                f"mu and sigma are too large: a_p = mu_p^2 / {n_clusters} + sigma_p^2 must stay below 1e150, "
                f"got max {np.max(a):.3g}"
            )
        for name, value in (
            ("mu", mu),
            ("sigma", sig),
            ("d", d),
            ("origin", bool(origin)),
            ("truncate", truncate),
            ("_a", a),
        ):
            if isinstance(value, np.ndarray):
                value.setflags(write=False)
            object.__setattr__(self, name, value)

    # -- basic properties -------------------------------------------------------------
    @property
    def s(self) -> int:
        """Number of concepts."""
        return int(self.mu.size)

    @property
    def n_clusters(self) -> int:
        return self.s + (1 if self.origin else 0)

    @property
    def a(self) -> np.ndarray:
        """Diagonal of the population second moment ``A = E[x x^T]``, shape (d,)."""
        return self._a.copy()

    @property
    def A(self) -> np.ndarray:
        """Population second moment ``E[x x^T]`` (d x d, diagonal)."""
        return np.diag(self._a)

    def __repr__(self) -> str:
        return (
            f"SIMTask(mu={self.mu.tolist()}, sigma={self.sigma.tolist()}, d={self.d}, "
            f"origin={self.origin}" + ("" if self.truncate is None else f", truncate={self.truncate}") + ")"
        )

    def __eq__(self, other) -> bool:
        if not isinstance(other, SIMTask):
            return NotImplemented
        return (
            self.d == other.d
            and self.origin == other.origin
            and self.truncate == other.truncate
            and np.array_equal(self.mu, other.mu)
            and np.array_equal(self.sigma, other.sigma)
        )

    def __hash__(self) -> int:
        return hash((self.d, self.origin, self.truncate, self.mu.tobytes(), self.sigma.tobytes()))

    def to_dict(self) -> dict:
        """JSON-ready description (round-trips through :meth:`from_dict`)."""
        return {
            "mu": self.mu.tolist(),
            "sigma": self.sigma.tolist(),
            "d": self.d,
            "origin": self.origin,
            "truncate": self.truncate,
            "a": self._a.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "SIMTask":
        if not isinstance(data, dict):
            raise ValueError(f"a task record must be a dict, got {type(data).__name__}")
        missing = [k for k in ("mu", "sigma", "d") if k not in data]
        if missing:
            raise ValueError(f"a task record needs the keys mu, sigma and d; missing {', '.join(missing)}")
        return cls(
            data["mu"],
            data["sigma"],
            d=data["d"],
            origin=data.get("origin", False),
            truncate=data.get("truncate"),
        )

    def learning_order(self) -> np.ndarray:
        """Concept indices (0-based) in the order the theory says they are learned (largest a_p first)."""
        return np.argsort(-self._a[: self.s], kind="stable")

    # -- test points --------------------------------------------------------------------
    def compositions(self) -> np.ndarray:
        """All ``2^s`` binary vectors ``v`` (rows), in lexicographic order; the last is all ones."""
        return np.array(list(itertools.product((0, 1), repeat=self.s)), dtype=np.int64)

    def test_point(self, v=None) -> np.ndarray:
        """``x(v) = sum_p v_p mu_p e_p`` (shape (d,)); default ``v`` = all ones (the OOD point)."""
        if v is None:
            v = np.ones(self.s)
        v = _checks.as_float_array(v, "v", ndim=1)
        if v.size != self.s:
            raise ValueError(f"v must have length s = {self.s}, got {v.size}")
        if not np.all((v == 0) | (v == 1)):
            raise ValueError(f"v must be binary (entries 0 or 1), got {v.tolist()}")
        x = np.zeros(self.d)
        x[: self.s] = v * self.mu
        return x

    def test_points(self) -> np.ndarray:
        """``x(v)`` for every ``v`` of :meth:`compositions`, shape ``(2^s, d)``."""
        x = np.zeros((2**self.s, self.d))
        x[:, : self.s] = self.compositions() * self.mu
        return x

    # -- data -------------------------------------------------------------------------------
    def embedding(self, embed_dim: int, seed: int) -> np.ndarray:
        """Random matrix with orthonormal columns, shape ``(embed_dim, d)``, as :meth:`sample` uses."""
        embed_dim = _checks.positive_int(embed_dim, "embed_dim")
        seed = _checks.seed_value(seed)
        if embed_dim < self.d:
            raise ValueError(f"embed_dim must be >= d = {self.d}, got {embed_dim}")
        rng = np.random.default_rng([seed, 1])
        q, r = np.linalg.qr(rng.standard_normal((embed_dim, self.d)))
        return q * np.sign(np.diag(r))  # unique (Haar-distributed) choice of signs

    def sample(self, n: int, seed: int, embed_dim: int | None = None) -> Sample:
        """Draw ``n`` points per cluster (``N = n * n_clusters`` in all).

        Returns inputs of shape ``(N, d)`` (or ``(N, embed_dim)`` when embedded by
        :meth:`embedding` with the same seed) and labels ``0..s-1`` (``s`` = origin).
        """
        n = _checks.positive_int(n, "n")
        seed = _checks.seed_value(seed)
        rng = np.random.default_rng([seed, 0])
        labels = np.repeat(np.arange(self.n_clusters), n)
        centres = np.zeros((self.n_clusters, self.d))
        centres[np.arange(self.s), np.arange(self.s)] = self.mu
        if self.truncate is None:
            z = rng.standard_normal((labels.size, self.d))
        else:  # inverse-CDF sampling of the normal truncated to [-c, c]
            from scipy.special import ndtr, ndtri

            lo = ndtr(-self.truncate)
            z = ndtri(lo + (1.0 - 2.0 * lo) * rng.random((labels.size, self.d)))
        x = centres[labels] + z * self.sigma
        if embed_dim is not None:
            x = x @ self.embedding(embed_dim, seed).T
        return Sample(x, labels)


def truncated_variance_factor(c: float) -> float:
    """Variance of a standard normal truncated to ``[-c, c]``: ``1 - 2 c phi(c) / (2 Phi(c) - 1)``."""
    from scipy.special import ndtr

    c = _checks.real_number(c, "c", low=0.0, low_open=True)
    if c < 0.1:
        # the closed form cancels catastrophically for small c (36% wrong at c = 1e-5, negative below
        # 1e-8): its Taylor series, whose next term is below 1e-15 relative here
        c2 = c * c
        return float(c2 * (1 / 3 + c2 * (-2 / 45 + c2 * (2 / 945 + c2 * (2 / 14175 - c2 * 2 / 93555)))))
    phi = np.exp(-0.5 * c * c) / np.sqrt(2.0 * np.pi)
    return float(1.0 - 2.0 * c * phi / (2.0 * ndtr(c) - 1.0))


def empirical_second_moment(X) -> np.ndarray:
    """``A_n = X^T X / N`` for inputs ``X`` of shape (N, d): the exact A of a finite training set."""
    X = _checks.as_float_array(X, "X", ndim=2)
    if X.shape[0] == 0:
        raise ValueError("X must contain at least one sample (shape (N, d) with N >= 1)")
    return X.T @ X / X.shape[0]


def second_moment(task_or_A, name: str = "task_or_A") -> np.ndarray:
    """The second-moment matrix of a :class:`SIMTask`, or a validated explicit ``A`` (..., d, d)."""
    if isinstance(task_or_A, SIMTask):
        return task_or_A.A
    arr = _checks.square_batch(task_or_A, name)
    return _checks.psd(arr, name)
