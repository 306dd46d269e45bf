"""Batched numerical integration of the matrix flows that have no closed form.

A batch of ``B`` independent systems is integrated as one ODE on the stacked state, so the
Python overhead of ``scipy.integrate.solve_ivp`` is paid once per step for all systems. Stiff
problems (long horizons relative to the fastest rate) use the implicit ``Radau`` method with the
analytic, block-diagonal sparse Jacobian of the symmetric flow.
"""

from __future__ import annotations

import numpy as np

#: e-folds of the fastest mode over the horizon above which "auto" switches to the implicit Radau
#: method: past ~300 e-folds the fast modes have long converged, explicit steps are stability-limited and
#: DOP853's error control becomes erratic (errors of 1e-7 at rtol = 1e-10 were observed).
STIFF_EFOLDS = 300.0
#: largest state (per system) that "auto" integrates with an implicit method (dense Jacobians)
MAX_IMPLICIT_STATE = 400
#: longest horizon integrated numerically (past it the solvers' step-size control breaks down)
MAX_HORIZON = 1e12


def _eval_grid(t: np.ndarray):
    """Sorted unique evaluation times and the map back to the caller's order."""
    tu, inverse = np.unique(t, return_inverse=True)
    return tu, inverse.reshape(-1)


def integrate(
    fun, y0: np.ndarray, t: np.ndarray, *, method: str, rtol: float, atol: float, jac=None, n_systems: int = 1
):
    """Solve ``y' = fun(t, y)`` from ``y(0) = y0`` and return ``y`` at ``t`` (shape (len(t), n)).

    ``solve_ivp`` controls the RMS of the scaled error over the whole state; for ``n_systems``
    stacked independent systems the tolerances are divided by ``sqrt(n_systems)``, which bounds
    every system's own RMS error by what a separate solve at ``rtol``/``atol`` would allow.
    """
    from scipy.integrate import solve_ivp

    shrink = float(np.sqrt(max(n_systems, 1)))
    rtol, atol = max(rtol / shrink, 100 * np.finfo(float).eps), atol / shrink

    tu, inverse = _eval_grid(t)
    t_end = float(tu[-1])
    if t_end > MAX_HORIZON:
        raise ValueError(
            f"t must be <= {MAX_HORIZON:g} where the flow is integrated numerically (got max t = {t_end:g}); "
            "every rate of a task has converged long before (use a shorter horizon)"
        )
    if t_end == 0.0:
        return np.broadcast_to(y0, (t.size, y0.size)).copy()
    kwargs = {"jac": jac} if jac is not None else {}
    sol = solve_ivp(fun, (0.0, t_end), y0, method=method, t_eval=tu, rtol=rtol, atol=atol, **kwargs)
    if not sol.success:
        raise RuntimeError(f"ODE solver ({method}) failed: {sol.message}")
    ys = sol.y.T
    if not np.all(np.isfinite(ys)):
        raise RuntimeError(f"ODE solver ({method}) produced non-finite values; the flow diverged")
    return ys[inverse]


#: e-folds of the fastest mode beyond which an explicit method is refused: its steps are stability-limited
#: (about one per e-fold), so 1e5 e-folds are ~1e5 steps (seconds to a minute); DOP853 to t = 1e6 on the
#: 2 x 2 symmetric flow took 6 minutes
MAX_EXPLICIT_EFOLDS = 1e5


def choose_method(method: str, rate: float, t_end: float, *, implicit_ok: bool = True) -> str:
    """The method for a flow whose fastest mode has ``rate``: "auto" takes Radau past :data:`STIFF_EFOLDS`
    (where ``implicit_ok``: small systems), DOP853 otherwise. An explicit method (given, or the only one a
    large system allows) is refused with a clear error where it would need too many steps to finish."""
    efolds = rate * t_end
    if method == "auto":
        method = "Radau" if implicit_ok and efolds > STIFF_EFOLDS else "DOP853"
    if method in ("DOP853", "RK45", "RK23") and efolds > MAX_EXPLICIT_EFOLDS:
        hint = "use method='auto' (implicit) or a shorter horizon" if implicit_ok else "use a shorter horizon"
        raise ValueError(
            f"t up to {t_end:g} is {efolds:.3g} e-folds of the fastest mode: the explicit method {method} "
            f"would need about that many steps; {hint} (every rate has long converged)"
        )
    return method


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
    E = U @ np.swapaxes(U, -1, -2) - np.eye(d)
    if A.shape[-1] == d and A.ndim == U.ndim:
        EA = E @ A
    else:  # A given by its diagonal (..., d): E A is a column scaling
        EA = E * A[..., None, :]
    return -0.5 * kappa * (EA + np.swapaxes(EA, -1, -2)) @ U


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
    lam_max = float(np.max(np.linalg.eigvalsh(A))) if B else 0.0
    w_max = float(np.max(np.abs(np.linalg.eigvalsh(W0)))) if B else 0.0
    rate = 4.0 * kappa * lam_max * max(1.0, w_max)
    # the Jacobian block of one system is d^2 x d^2: implicit steps factor it, so "auto" keeps large systems
    # explicit (at d = 64 a Radau LU of 4096 x 4096 blocks did not finish in 200 s; DOP853 takes 0.8 s)
    method = choose_method(method, rate, float(np.max(t)), implicit_ok=d * d <= MAX_IMPLICIT_STATE)
    U0 = psd_factor(W0)

    diagonal = bool(np.all(A == np.einsum("bii->bi", A)[..., None] * np.eye(d)))
    A_rhs = np.einsum("bii->bi", A).copy() if diagonal else A  # cheaper right-hand side for diagonal A

    def fun(_, y):
        return factor_field(y.reshape(B, d, d), A_rhs, kappa).reshape(-1)

    jac = None
    if method in ("Radau", "BDF"):
        from scipy import sparse

        def jac(_, y):
            blocks = factor_jacobian(y.reshape(B, d, d), A, kappa)
            n = d * d
            return sparse.bsr_matrix((blocks, np.arange(B), np.arange(B + 1)), shape=(B * n, B * n)).tocsc()

    ys = integrate(fun, U0.reshape(-1), t, method=method, rtol=rtol, atol=atol, jac=jac, n_systems=B)
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
    method = choose_method(method, rate, float(np.max(t)), implicit_ok=sum(sizes) <= MAX_IMPLICIT_STATE)

    def unpack(y, nb):
        return [y[:, offsets[k] : offsets[k + 1]].reshape(nb, *shapes[k]) for k in range(len(Ws))]

    def solve(Ab, Wb):
        nb = Ab.shape[0]

        def fun(_, y):
            g = deep_field(unpack(y.reshape(nb, -1), nb), Ab)
            return np.concatenate([x.reshape(nb, -1) for x in g], axis=1).reshape(-1)

        y0 = np.concatenate([W.reshape(nb, -1) for W in Wb], axis=1).reshape(-1)
        ys = integrate(fun, y0, t, method=method, rtol=rtol, atol=atol, n_systems=nb).reshape(t.size * nb, -1)
        return [x.reshape(t.size, nb, *x.shape[1:]) for x in unpack(ys, t.size * nb)]

    if method in ("Radau", "BDF", "LSODA"):
        # implicit methods build a dense Jacobian of the whole state: solve one system at a time
        parts = [solve(A[b : b + 1], [W[b : b + 1] for W in Ws]) for b in range(B)]
        res = [np.concatenate([p[k] for p in parts], axis=1) for k in range(len(Ws))]
    else:
        res = solve(A, list(Ws))
    return [np.swapaxes(r, 0, 1) for r in res]
