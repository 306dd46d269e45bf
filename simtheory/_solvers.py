"""Batched numerical integration of the matrix flows that have no closed form.

A batch of ``B`` independent systems is integrated as one ODE on the stacked state, so the Python
overhead of the integrator is paid once per step for all systems. ``method="auto"`` takes LSODA
(``scipy.integrate.odeint``: Adams steps while the flow is non-stiff, BDF steps with a Jacobian once
it is stiff, switching by itself), with the block-diagonal Jacobian of the batch passed as a band; large
systems (whose Jacobian blocks would be too big to factor) stay on the explicit DOP853. Every solve
records a :class:`SolverStats` (method, why, steps, right-hand-side and Jacobian evaluations, seconds),
collected by :func:`solver_log`.

Measured (``python benchmarks/predict.py`` items 2 and 2b, rtol = 1e-10): on the paper's Figure 8 (d = 3,
paper-code rates, 10,000 times to t = 100, ~1000 e-folds of the fastest mode) LSODA takes 15 ms with a
W error of 1.7e-9, Radau (the previous rule past 300 e-folds) 301 ms and 5.6e-11, DOP853 41 ms and
1.7e-6 (its step-size control breaks down on long horizons).
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from dataclasses import asdict, dataclass

import numpy as np

from . import _threads

#: largest state (per system) that "auto" integrates with LSODA, whose stiff (BDF) phase factors the
#: system's Jacobian block: d = 20 for the symmetric flow; larger systems stay explicit (DOP853)
MAX_IMPLICIT_STATE = 400
#: longest horizon integrated numerically (past it the solvers' step-size control breaks down)
MAX_HORIZON = 1e12
#: LSODA's limit on internal steps between two output times
MAX_STEPS_PER_OUTPUT = 200_000


@dataclass(frozen=True)
class SolverStats:
    """What one numerical solve (or closed-form evaluation) cost, as :func:`solver_log` records it.

    ``method``: the method used ("LSODA", "DOP853", ..., or "closed-form"); ``reason``: why "auto" chose
    it (or "given"); ``systems``: settings solved together; ``state``: unknowns per setting; ``steps``,
    ``nfev``, ``njev``, ``nlu``: the integrator's counts (right-hand-side calls include those of
    finite-difference Jacobians; ``nlu`` is 0 for LSODA, which does not report its LU factorisations);
    ``stiff_steps``: steps LSODA took with BDF; ``seconds``: wall time.
    """

    method: str
    reason: str
    systems: int
    state: int
    t_end: float
    rtol: float | None
    atol: float | None
    steps: int = 0
    nfev: int = 0
    njev: int = 0
    nlu: int = 0
    stiff_steps: int = 0
    seconds: float = 0.0

    def as_dict(self) -> dict:
        return asdict(self)


_LOG: contextvars.ContextVar = contextvars.ContextVar("simtheory_solver_log", default=None)


@contextlib.contextmanager
def solver_log():
    """Collect the :class:`SolverStats` of every flow evaluated in the block (a list, filled in call order):

    >>> with sim.solver_log() as log:  # doctest: +SKIP
    ...     W = sim.symmetric_flow(task, W0, t)
    >>> log[-1].method, log[-1].nfev
    """
    log: list[SolverStats] = []
    token = _LOG.set(log)
    try:
        yield log
    finally:
        _LOG.reset(token)


def record(stats: SolverStats) -> None:
    """Append ``stats`` to the innermost active :func:`solver_log` (nothing when none is active)."""
    log = _LOG.get()
    if log is not None:
        log.append(stats)


def _eval_grid(t: np.ndarray):
    """Sorted unique evaluation times and the map back to the caller's order."""
    tu, inverse = np.unique(t, return_inverse=True)
    return tu, inverse.reshape(-1)


def _banded(blocks: np.ndarray) -> np.ndarray:
    """The block-diagonal Jacobian ``blocks`` (B, n, n) in LAPACK band storage for ``odeint``
    (``ml = mu = n - 1``): ``packed[i - j + n - 1, b n + j] = blocks[b, i, j]``."""
    B, n = blocks.shape[0], blocks.shape[-1]
    i, j = np.indices((n, n))
    packed = np.zeros((2 * n - 1, B * n))
    packed[(i - j + n - 1)[None], np.arange(B)[:, None, None] * n + j[None]] = blocks
    return packed


def integrate(
    fun,
    y0: np.ndarray,
    t: np.ndarray,
    *,
    method: str,
    rtol: float,
    atol: float,
    jac=None,
    n_systems: int = 1,
    reason: str = "given",
):
    """Solve ``y' = fun(t, y)`` from ``y(0) = y0`` and return ``y`` at ``t`` (shape (len(t), n)).

    ``solve_ivp`` controls the RMS of the scaled error over the whole state; for ``n_systems``
    stacked independent systems the tolerances are divided by ``sqrt(n_systems)``, which bounds
    every system's own RMS error by what a separate solve at ``rtol``/``atol`` would allow.
    ``jac(t, y)``: the Jacobian as blocks (n_systems, n, n) of the independent systems. LSODA runs
    through ``scipy.integrate.odeint`` (its Fortran loop, without solve_ivp's Python work per step) with
    the Jacobian as a band of half-width n - 1 (finite differences where ``jac`` is None). Records a
    :class:`SolverStats`.
    """
    shrink = float(np.sqrt(max(n_systems, 1)))
    rtol_s, atol_s = max(rtol / shrink, 100 * np.finfo(float).eps), atol / shrink

    tu, inverse = _eval_grid(t)
    t_end = float(tu[-1])
    if t_end > MAX_HORIZON:
        raise ValueError(
            f"t must be <= {MAX_HORIZON:g} where the flow is integrated numerically (got max t = {t_end:g}); "
            "every rate of a task has converged long before (use a shorter horizon)"
        )
    stats = dict(
        method=method,
        reason=reason,
        systems=int(n_systems),
        state=int(y0.size // max(n_systems, 1)),
        t_end=t_end,
        rtol=float(rtol),
        atol=float(atol),
    )
    if t_end == 0.0:
        record(SolverStats(**stats))
        return np.broadcast_to(y0, (t.size, y0.size)).copy()
    start = time.perf_counter()
    # the right-hand side is a batch of small matmuls: ~2 n^1.5 flops per system (one thread unless huge)
    with _threads.for_size(2.0 * y0.size * np.sqrt(stats["state"])):
        ys, counts = _solve(fun, y0, tu, method, rtol_s, atol_s, jac, n_systems)
    if not np.all(np.isfinite(ys)):
        raise RuntimeError(f"ODE solver ({method}) produced non-finite values; the flow diverged")
    record(SolverStats(**stats, **counts, seconds=time.perf_counter() - start))
    return ys[inverse]


def _solve(fun, y0, tu, method, rtol, atol, jac, n_systems):
    """One solve at the sorted times ``tu``: (y at tu, the integrator's counts)."""
    if method == "LSODA":
        return _lsoda(fun, y0, tu, rtol, atol, jac, n_systems)
    from scipy.integrate import solve_ivp

    kwargs = {}
    if jac is not None and method in ("Radau", "BDF"):
        kwargs["jac"] = lambda t_, y: _block_sparse(jac(t_, y))
    sol = solve_ivp(fun, (0.0, float(tu[-1])), y0, method=method, t_eval=tu, rtol=rtol, atol=atol, **kwargs)
    if not sol.success:
        raise RuntimeError(f"ODE solver ({method}) failed: {sol.message}")
    counts = dict(steps=int(sol.t.size), nfev=int(sol.nfev), njev=int(sol.njev), nlu=int(sol.nlu))
    return sol.y.T, counts


def _block_sparse(blocks: np.ndarray):
    from scipy import sparse

    B, n = blocks.shape[0], blocks.shape[-1]
    return sparse.bsr_matrix((blocks, np.arange(B), np.arange(B + 1)), shape=(B * n, B * n)).tocsc()


def _lsoda(fun, y0, tu, rtol, atol, jac, n_systems):
    """LSODA via ``odeint`` at the sorted times ``tu`` (> 0 somewhere); returns y and the counts."""
    import warnings

    from scipy.integrate import odeint

    n = y0.size // max(n_systems, 1)
    grid = tu if tu[0] == 0.0 else np.concatenate([[0.0], tu])
    kwargs = {}
    if n_systems > 1:
        kwargs.update(ml=n - 1, mu=n - 1)
        if jac is not None:
            kwargs["Dfun"] = lambda t_, y: _banded(jac(t_, y))
    elif jac is not None:
        kwargs["Dfun"] = lambda t_, y: jac(t_, y)[0]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # odeint warns and returns; its message is checked below
        ys, info = odeint(
            fun,
            y0,
            grid,
            rtol=rtol,
            atol=atol,
            tfirst=True,
            full_output=True,
            mxstep=MAX_STEPS_PER_OUTPUT,
            **kwargs,
        )
    if info["message"] != "Integration successful.":
        raise RuntimeError(f"ODE solver (LSODA) failed: {info['message']}")
    nst = np.asarray(info["nst"])
    steps = np.diff(np.concatenate([[0], nst]))
    counts = dict(
        steps=int(nst[-1]),
        nfev=int(info["nfe"][-1]),
        njev=int(info["nje"][-1]),
        stiff_steps=int(steps[np.asarray(info["mused"]) == 2].sum()),
    )
    return (ys if tu[0] == 0.0 else ys[1:]), counts


#: e-folds of the fastest mode beyond which an explicit method is refused: its steps are stability-limited
#: (about one per e-fold), so 1e5 e-folds are ~1e5 steps (seconds to a minute); DOP853 to t = 1e6 on the
#: 2 x 2 symmetric flow took 6 minutes
MAX_EXPLICIT_EFOLDS = 1e5


def choose_method(method: str, rate: float, t_end: float, *, implicit_ok: bool = True) -> tuple[str, str]:
    """The method for a flow whose fastest mode has ``rate``, and why: "auto" takes LSODA for systems small
    enough to factor their Jacobian blocks (``implicit_ok``), DOP853 otherwise. An explicit method (given,
    or the only one a large system allows) is refused with a clear error where it would need too many
    steps to finish."""
    efolds = rate * t_end
    reason = "given"
    if method == "auto":
        if implicit_ok:
            method, reason = (
                "LSODA",
                "auto: LSODA (Adams while non-stiff, BDF once stiff; the fastest measured)",
            )
        else:
            method = "DOP853"
            reason = f"auto: DOP853 (state per setting > {MAX_IMPLICIT_STATE}: blocks too large to factor)"
    if method in ("DOP853", "RK45", "RK23") and efolds > MAX_EXPLICIT_EFOLDS:
        hint = "use method='auto' (implicit) or a shorter horizon" if implicit_ok else "use a shorter horizon"
        raise ValueError(
            f"t up to {t_end:g} is {efolds:.3g} e-folds of the fastest mode: the explicit method {method} "
            f"would need about that many steps; {hint} (every rate has long converged)"
        )
    return method, reason


# -- symmetric flow dW/dt = kappa V(W), integrated on U (W = U U^T) -----------------------------


def symmetric_field(W: np.ndarray, A: np.ndarray, kappa: float) -> np.ndarray:
    """``kappa V(W)``, batched over leading axes (the matrix form derived in derivations.symmetric)."""
    WA = W @ A
    AW = A @ W
    return kappa * (WA + AW - 0.5 * (AW @ W + W @ WA) - WA @ W)


def factor_field(U: np.ndarray, A: np.ndarray, kappa: float) -> np.ndarray:
    """``dU/dt = -(kappa/2) (E A + A E) U`` with ``E = U U^T - I``; then ``d(U U^T)/dt = kappa V(U U^T)``.

    ``A`` is a matrix (..., d, d) or, for diagonal A, its diagonal (..., d).

    For kappa = 2 this is gradient flow on U itself (``-dL/dU``, derivations.symmetric).
    """
    d = U.shape[-1]
    diagonal = not (A.shape[-1] == d and A.ndim == U.ndim)
    return _factor_rhs(U, _scaled_rates(A, kappa, diagonal), np.eye(d), diagonal)


def _scaled_rates(A: np.ndarray, kappa: float, diagonal: bool) -> np.ndarray:
    """``-(kappa/2) A`` as the factor field uses it: a matrix, or (diagonal A given by its diagonal (..., d))
    a row (..., 1, d) that scales the columns of E."""
    return (-0.5 * kappa) * (A[..., None, :] if diagonal else A)


def _factor_rhs(U: np.ndarray, scaled: np.ndarray, eye: np.ndarray, diagonal: bool) -> np.ndarray:
    """:func:`factor_field` with ``-(kappa/2) A`` and the identity computed beforehand (the integrators call
    it thousands of times on small matrices: this is a third of its cost at d = 3)."""
    E = U @ np.swapaxes(U, -1, -2) - eye
    M = E * scaled if diagonal else E @ scaled
    return (M + np.swapaxes(M, -1, -2)) @ U


def _kron(X: np.ndarray, Y: np.ndarray) -> np.ndarray:
    B, d = X.shape[0], X.shape[-1]
    return np.einsum("bij,bkl->bikjl", X, Y).reshape(B, d * d, d * d)


def _commutation(d: int) -> np.ndarray:
    """K with vec(H^T) = K vec(H) for row-major vec."""
    K = np.zeros((d * d, d * d))
    i, j = np.divmod(np.arange(d * d), d)
    K[i * d + j, j * d + i] = 1.0
    return K


def factor_jacobian(U: np.ndarray, A: np.ndarray, kappa: float) -> np.ndarray:
    """d vec(dU/dt) / d vec(U) for row-major vec, batched: (B, d^2, d^2).

    With M = EA + AE: ``dF[H] = -(kappa/2) (M H + (H U^T + U H^T) A U + A (H U^T + U H^T) U)`` and
    ``vec(X H Y) = (X kron Y^T) vec(H)``, ``vec(H^T) = K vec(H)``.
    """
    B, d = U.shape[0], U.shape[-1]
    eye = np.broadcast_to(np.eye(d), (B, d, d))
    Ut = np.swapaxes(U, -1, -2)
    E = U @ Ut - np.eye(d)
    M = E @ A + A @ E
    AU = A @ U
    K = _commutation(d)
    J = _kron(M, eye) + _kron(eye, Ut @ AU) + _kron(U, Ut @ A) @ K + _kron(A, Ut @ U) + _kron(AU, Ut) @ K
    return -0.5 * kappa * J


def psd_factor(W: np.ndarray) -> np.ndarray:
    """U with U U^T = W (batched), exact zeros for round-off-level eigenvalues (keeps the rank)."""
    lam, Q = np.linalg.eigh(W)
    floor = 64 * np.finfo(float).eps * np.maximum(lam.max(axis=-1, keepdims=True), 0.0)
    lam = np.where(lam > floor, lam, 0.0)
    return Q * np.sqrt(lam)[..., None, :]


#: states per batched solve of the symmetric flow: a larger batch is split into chunks of this many states.
#: A batch shares one step sequence (the hardest setting's) at tolerances tightened by sqrt(batch), so past a
#: point batching costs more than it saves. Measured (d = 8, W0 not commuting with A, 1000 log-spaced times
#: to each setting's horizon): 7.0 / 8.0 / 9.9 / 25.6 / 29.3 ms per setting in chunks of 16 / 32 / 64 / 256 /
#: 1024 settings (1024 ... 65536 states), 12.6 ms one by one; d = 3: 1.7 / 1.5 ms in chunks of 32 / 64 (288 /
#: 576 states), 9.5 ms one by one. 2048 states: 32 settings at d = 8, 227 at d = 3.
BATCH_STATES = 2048


def solve_symmetric(
    A: np.ndarray,
    W0: np.ndarray,
    t: np.ndarray,
    kappa: float,
    *,
    method: str = "auto",
    rtol: float = 1e-10,
    atol: float = 1e-12,
) -> np.ndarray:
    """Integrate ``dW/dt = kappa V(W)`` for a batch: A, W0 (B, d, d) -> (B, len(t), d, d).

    The flow is integrated on a factor U (W0 = U0 U0^T): W stays symmetric PSD by construction
    and a rank-deficient W0 keeps its rank (in W-space the saddle at a rank-deficient fixed point
    amplifies solver error exponentially).
    """
    B, d = W0.shape[0], W0.shape[-1]
    chunk = max(1, BATCH_STATES // (d * d))
    if B > chunk:  # one shared step sequence for too many settings costs more than separate solves
        return np.concatenate(
            [
                solve_symmetric(
                    A[lo : lo + chunk], W0[lo : lo + chunk], t, kappa, method=method, rtol=rtol, atol=atol
                )
                for lo in range(0, B, chunk)
            ]
        )
    lam_max = float(np.max(np.linalg.eigvalsh(A))) if B else 0.0
    w_max = float(np.max(np.abs(np.linalg.eigvalsh(W0)))) if B else 0.0
    rate = 4.0 * kappa * lam_max * max(1.0, w_max)
    # the Jacobian block of one system is d^2 x d^2: implicit steps factor it, so "auto" keeps large systems
    # explicit (at d = 64 a Radau LU of 4096 x 4096 blocks did not finish in 200 s; DOP853 takes 0.8 s)
    method, reason = choose_method(method, rate, float(np.max(t)), implicit_ok=d * d <= MAX_IMPLICIT_STATE)
    U0 = psd_factor(W0)

    diagonal = bool(np.all(A == np.einsum("bii->bi", A)[..., None] * np.eye(d)))
    scaled = _scaled_rates(np.einsum("bii->bi", A) if diagonal else A, kappa, diagonal)
    eye = np.eye(d)

    def fun(_, y):
        return _factor_rhs(y.reshape(B, d, d), scaled, eye, diagonal).reshape(-1)

    def jac(_, y):
        return factor_jacobian(y.reshape(B, d, d), A, kappa)

    ys = integrate(
        fun, U0.reshape(-1), t, method=method, rtol=rtol, atol=atol, jac=jac, n_systems=B, reason=reason
    )
    U = ys.reshape(t.size, B, d, d).transpose(1, 0, 2, 3)
    return U @ np.swapaxes(U, -1, -2)


# -- deep linear flow: f = W_L ... W_1 x (untied two-layer: L = 2) ----------------------------------


def _chain(Ws, d: int):
    """Partial products: ``below[k] = W_{k-1} ... W_1`` (identity for k = 0) and the full product."""
    below = [np.broadcast_to(np.eye(d), Ws[0].shape[:-2] + (d, d))]
    for W in Ws[:-1]:
        below.append(W @ below[-1])
    return below, Ws[-1] @ below[-1]


def deep_field(Ws, A: np.ndarray):
    """dW_k/dt = -(W_L ... W_{k+1})^T E A (W_{k-1} ... W_1)^T, E = W_L ... W_1 - I.

    The gradient flow of ``L = 1/2 tr((P - I) A (P - I)^T)`` on each factor; for two factors it is
    ``(-W2^T E A, -E A W1^T)`` (derivations.untied).
    """
    d = A.shape[-1]
    below, P = _chain(Ws, d)
    G = (P - np.eye(d)) @ A  # E A
    out = [None] * len(Ws)
    for k in range(len(Ws) - 1, -1, -1):  # G = (W_L..W_{k+1})^T E A, updated top-down
        out[k] = -G @ np.swapaxes(below[k], -1, -2)
        G = np.swapaxes(Ws[k], -1, -2) @ G
    return out


def solve_deep(
    A: np.ndarray, Ws, t: np.ndarray, *, method: str = "auto", rtol: float = 1e-10, atol: float = 1e-12
):
    """Integrate the deep linear flow for a batch: A (B, d, d), factors ``Ws[k]`` (B, out_k, in_k).

    Returns the factors at ``t``, each of shape (B, len(t), out_k, in_k).
    """
    shapes = [W.shape[1:] for W in Ws]
    sizes = [int(np.prod(sh)) for sh in shapes]
    offsets = np.cumsum([0, *sizes])
    B = A.shape[0]
    # stiffness: the curvature of the loss in factor k is about lam_max(A) times the squared norms of
    # the other factors; implicit steps pay a dense finite-difference Jacobian, so only small systems use them
    norms = [float(np.max(np.linalg.norm(W, ord=2, axis=(-2, -1)))) ** 2 for W in Ws] if B else [1.0]
    lam_max = float(np.max(np.linalg.eigvalsh(A))) if B else 0.0
    rate = len(Ws) * lam_max * max([1.0, *norms]) ** (len(Ws) - 1)
    method, reason = choose_method(
        method, rate, float(np.max(t)), implicit_ok=sum(sizes) <= MAX_IMPLICIT_STATE
    )

    def unpack(y, nb):
        return [y[:, offsets[k] : offsets[k + 1]].reshape(nb, *shapes[k]) for k in range(len(Ws))]

    def solve(Ab, Wb):
        nb = Ab.shape[0]

        def fun(_, y):
            g = deep_field(unpack(y.reshape(nb, -1), nb), Ab)
            return np.concatenate([x.reshape(nb, -1) for x in g], axis=1).reshape(-1)

        y0 = np.concatenate([W.reshape(nb, -1) for W in Wb], axis=1).reshape(-1)
        ys = integrate(fun, y0, t, method=method, rtol=rtol, atol=atol, n_systems=nb, reason=reason).reshape(
            t.size * nb, -1
        )
        return [x.reshape(t.size, nb, *x.shape[1:]) for x in unpack(ys, t.size * nb)]

    if method in ("Radau", "BDF"):
        # solve_ivp's implicit methods build a dense finite-difference Jacobian of the whole state: one
        # system at a time (LSODA takes the batch's block-diagonal Jacobian as a band)
        parts = [solve(A[b : b + 1], [W[b : b + 1] for W in Ws]) for b in range(B)]
        res = [np.concatenate([p[k] for p in parts], axis=1) for k in range(len(Ws))]
    else:
        res = solve(A, list(Ws))
    return [np.swapaxes(r, 0, 1) for r in res]
