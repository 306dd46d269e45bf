"""Swing-by analysis: turning points of the OOD loss, classification, and a condition-based prediction.

The OOD loss of the symmetric model can fall, rise and fall again (swing-by): a minor entry
``w_ij`` grows with the strong concept j, moves the weak coordinate i of the OOD output toward
its target ("illusion of generalisation"), and is suppressed once ``w_jj`` approaches 1 (the loss
rises), before ``w_ii`` grows and the loss falls again. With more concepts there can be several
bumps (multiple descent), or a weak concept is never learned (failure).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import _checks, theory
from .task import SIMTask

KINDS = ("monotone", "swing-by", "multiple descent", "failure")
#: the kinds whose loss rises again after falling
NON_MONOTONE = ("swing-by", "multiple descent")


@dataclass(frozen=True)
class TurningPoint:
    kind: str  # "min" or "max"
    index: int
    time: float
    value: float


@dataclass(frozen=True)
class Analysis:
    """Result of :func:`classify`."""

    kind: str
    turning_points: tuple[TurningPoint, ...]
    initial_loss: float
    final_loss: float
    converged: bool
    bump: float  # largest rise of the loss after a local minimum (0 if monotone)

    @property
    def non_monotone(self) -> bool:
        """Swing-by or multiple descent: the loss rises again after falling."""
        return self.kind in NON_MONOTONE

    def summary(self) -> str:
        tp = ", ".join(f"{p.kind} {p.value:.4g} at t={p.time:.4g}" for p in self.turning_points) or "none"
        return (
            f"{self.kind}; turning points: {tp}; bump {self.bump:.4g}; final loss {self.final_loss:.4g}"
            + ("" if self.converged else " (not converged: extend the horizon)")
        )


def _curve(t, loss):
    t = _checks.times(t, "t")
    loss = _checks.as_float_array(loss, "loss", ndim=1)
    if loss.size != t.size:
        raise ValueError(f"loss must have the same length as t ({t.size}), got {loss.size}")
    if np.any(np.diff(t) <= 0):
        raise ValueError("t must be strictly increasing")
    return t, loss


def turning_points(t, loss, rel_tol: float = 1e-3) -> tuple[TurningPoint, ...]:
    """Interior local minima and maxima of a sampled curve, ignoring wiggles below a threshold.

    A reversal counts only when the curve moves back by more than ``rel_tol`` times its range
    (a zig-zag filter), so solver noise does not create spurious turning points.
    """
    t, loss = _curve(t, loss)
    rel_tol = _checks.real_number(rel_tol, "rel_tol", low=0.0, high=1.0, low_open=True, high_open=True)
    span = float(loss.max() - loss.min())
    if span == 0.0:
        return ()
    h = rel_tol * span
    out = []
    trend = 0
    i_min = i_max = 0
    for k in range(1, loss.size):
        if trend == 0:
            if loss[k] < loss[i_min]:
                i_min = k
            if loss[k] > loss[i_max]:
                i_max = k
            if loss[k] > loss[i_min] + h and i_min > 0:
                out.append(TurningPoint("min", i_min, float(t[i_min]), float(loss[i_min])))
                trend, i_max = 1, k
            elif loss[k] > loss[i_min] + h:
                trend, i_max = 1, k
            elif loss[k] < loss[i_max] - h and i_max > 0:
                out.append(TurningPoint("max", i_max, float(t[i_max]), float(loss[i_max])))
                trend, i_min = -1, k
            elif loss[k] < loss[i_max] - h:
                trend, i_min = -1, k
        elif trend < 0:
            if loss[k] < loss[i_min]:
                i_min = k
            elif loss[k] > loss[i_min] + h:
                out.append(TurningPoint("min", i_min, float(t[i_min]), float(loss[i_min])))
                trend, i_max = 1, k
        else:
            if loss[k] > loss[i_max]:
                i_max = k
            elif loss[k] < loss[i_max] - h:
                out.append(TurningPoint("max", i_max, float(t[i_max]), float(loss[i_max])))
                trend, i_min = -1, k
    return tuple(out)


def classify(t, loss, rel_tol: float = 1e-3, failure_frac: float = 0.05) -> Analysis:
    """Classify an OOD-loss curve as monotone, swing-by, multiple descent or failure.

    * failure: the curve has flattened (last 10% of the grid moves by less than ``rel_tol`` of
      its range) at a loss above ``failure_frac`` times the initial loss;
    * otherwise by the number of interior maxima (:func:`turning_points`): 0 monotone,
      1 swing-by (fall, rise, fall), 2 or more multiple descent.
    """
    t, loss = _curve(t, loss)
    failure_frac = _checks.real_number(failure_frac, "failure_frac", low=0.0, high=1.0, high_open=True)
    tps = turning_points(t, loss, rel_tol)
    span = float(loss.max() - loss.min())
    tail = loss[int(0.9 * (loss.size - 1)) :]
    converged = bool(span == 0.0 or (tail.max() - tail.min()) <= rel_tol * span)
    bump = 0.0
    for p, q in zip(tps, tps[1:]):
        if p.kind == "min" and q.kind == "max":
            bump = max(bump, q.value - p.value)
    n_max = sum(p.kind == "max" for p in tps)
    if converged and loss[-1] > failure_frac * loss[0]:
        kind = "failure"
    else:
        kind = "monotone" if n_max == 0 else ("swing-by" if n_max == 1 else "multiple descent")
    return Analysis(kind, tps, float(loss[0]), float(loss[-1]), converged, bump)


def shape(t, losses, rel_tol: float = 1e-3, failure_frac: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """:func:`classify`'s verdict for many curves at once, vectorised: ``(non_monotone, bump)`` for each curve
    ``losses[..., :]`` on the grid ``t``.

    A curve is non-monotone when some point rises more than ``rel_tol`` x its range above an earlier point and
    falls as much below it later (which is when :func:`classify`'s zig-zag filter records an interior maximum)
    and it is not a failure (flat at the end above ``failure_frac`` x its start). ``bump``: the largest such
    rise above the lowest earlier point (0 when monotone); for one bump it is :func:`classify`'s ``bump``;
    with several it can be larger (the rise is from the lowest earlier point, not the last local minimum).
    """
    t = _checks.times(t, "t")
    losses = np.asarray(losses, dtype=np.float64)
    if losses.shape[-1:] != t.shape:
        raise ValueError(f"losses must have last axis len(t) = {t.size}, got shape {losses.shape}")
    span = losses.max(axis=-1) - losses.min(axis=-1)
    h = rel_tol * span[..., None]
    rise = losses - np.minimum.accumulate(losses, axis=-1)
    fall = losses - np.flip(np.minimum.accumulate(np.flip(losses, -1), axis=-1), -1)
    peak = (rise > h) & (fall > h)
    tail = losses[..., int(0.9 * (t.size - 1)) :]
    flat = (span == 0) | (tail.max(axis=-1) - tail.min(axis=-1) <= rel_tol * span)
    failure = flat & (losses[..., -1] > failure_frac * losses[..., 0])
    nm = peak.any(axis=-1) & ~failure
    bump = np.where(nm, np.where(peak, rise, 0.0).max(axis=-1), 0.0)
    return nm, bump


def non_monotone(t, losses, rel_tol: float = 1e-3) -> np.ndarray:
    """For each curve ``losses[..., :]`` on the grid ``t``, whether :func:`classify` calls it non-monotone."""
    losses = np.asarray(losses, dtype=float)
    flat = losses.reshape(-1, losses.shape[-1])
    return np.array([classify(t, y, rel_tol).non_monotone for y in flat], dtype=bool).reshape(
        losses.shape[:-1]
    )


def ood_non_monotone(curves, losses=None) -> np.ndarray:
    """``(E,)`` whether each member's OOD loss (or the given ``(E, T)`` ``losses`` on ``curves.times``) is
    non-monotone after ``t = 0`` (:func:`non_monotone` on the curves without their first record)."""
    losses = curves.ood_loss if losses is None else losses
    return non_monotone(curves.times[1:], losses[:, 1:])


def turning_point_gap(actual: Analysis, reference: Analysis) -> tuple[bool, float, float]:
    """Compare the turning points of two analyses (e.g. a GD run against the prediction).

    Returns (same kinds in the same order, max relative time difference, max relative value
    difference); the differences are ``nan`` when the sequences of kinds differ.
    """
    a, b = actual.turning_points, reference.turning_points
    if [p.kind for p in a] != [q.kind for q in b]:
        return False, float("nan"), float("nan")
    if not b:
        return True, 0.0, 0.0
    dt = max(abs(p.time - q.time) / q.time for p, q in zip(a, b))
    dv = max(abs(p.value - q.value) / q.value for p, q in zip(a, b))
    return True, float(dt), float(dv)


@dataclass(frozen=True)
class Prediction:
    """Prediction of a non-monotone OOD loss (see :func:`predict_swingby`)."""

    nonmonotone: bool
    pairs: tuple[tuple[int, int], ...]  # (weak i, strong j) pairs that meet every condition ("rule")
    reasons: tuple[str, ...]
    method: str = "rule"
    decided_by: str = "rule"  # "rule", "closed form" (the composite form decided) or "ODE" (the fallback)
    bump: float | None = None  # the predicted bump height ("approx"), None for the rule
    #: "approx" decided in closed form: the composite curve's turning points (:func:`classify`'s, in the
    #: convention's time); empty for the rule and where the ODE decided
    turning_points: tuple[TurningPoint, ...] = ()


#: methods of :func:`predict_swingby`
METHODS = ("rule", "approx")


_ood_losses = theory._ood_losses  # OOD loss curves (B, T) of trajectories (B, T, d, d) at points x (B, d)


#: the closed forms :func:`approx_verdicts` classifies (``method``s of :func:`simtheory.symmetric_approx`)
FORMS = ("composite", "riccati", "first-order")


def approx_verdicts(
    A, W0, x, t, kappa: float = 2.0, *, rel_tol: float = 1e-3, fallback: bool = False, forms=("composite",)
) -> dict:
    """The closed-form swing-by criterion for a batch: A (B, d, d) effective second moments, W0 (B, d, d),
    OOD points x (B, d), one time grid t (rescale A per setting to share it), speed kappa.

    The verdict (monotone or not, and the bump) is the composite form's (:func:`simtheory.symmetric_approx`).
    ``fallback=True`` checks it against the first-order form: where the two disagree on monotone vs not the
    flow is integrated and its verdict used ("ODE"), elsewhere the composite's ("closed form"). ``forms``:
    the closed forms whose own verdicts to return as well (studies compare them). Returns arrays:
    ``nonmonotone`` (B,), ``bump`` (B,), ``decided`` (B,; True where no ODE was needed) and, per form
    evaluated, ``verdicts[form]`` and ``bumps[form]``.
    """
    A = np.asarray(A, dtype=np.float64)
    W0 = np.asarray(W0, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    t = _checks.times(t, "t")
    forms = tuple(_checks.choice(f, "forms", FORMS) for f in forms)
    needed = ("composite",) + (("first-order",) if fallback else ()) + forms
    B = W0.shape[0]
    lam, Q, M0 = theory._eigenbasis(A, W0)
    xq = np.einsum("bji,bj->bi", Q, x)  # x in A's eigenbasis: the loss is rotation invariant
    verdicts, bumps = {}, {}
    for form in dict.fromkeys(needed):
        verdicts[form], bumps[form] = np.zeros(B, bool), np.zeros(B)
        for sl, loss in theory._approx_loss_chunks(lam, M0, xq, t, kappa, form):
            verdicts[form][sl], bumps[form][sl] = shape(t, loss, rel_tol)
    nonmono, bump = verdicts["composite"].copy(), bumps["composite"].copy()
    decided = np.ones(B, bool)
    if fallback:
        decided = verdicts["composite"] == verdicts["first-order"]
        if (~decided).any():
            und = ~decided
            # dW/dt = kappa V_A(W) = V_{kappa A}(W): the "paper" convention (speed 1) on kappa A, any kappa
            W = theory.symmetric_flow(kappa * A[und], W0[und], t, "paper")
            nonmono[und], bump[und] = shape(t, _ood_losses(W, x[und]), rel_tol)
    return {"nonmonotone": nonmono, "bump": bump, "decided": decided, "verdicts": verdicts, "bumps": bumps}


def predict_swingby(
    task: SIMTask,
    W0,
    convention: str = "gradient-flow",
    *,
    method: str = "rule",
    ratio: float = 3.0,
    init_scale: float = 0.1,
    rel_tol: float = 1e-3,
    fallback: bool = False,
) -> Prediction:
    """Predict a swing-by: by the conditions of the theory (``method="rule"``, the default) or from the
    closed-form approximation of the flow (``method="approx"``).

    ``"approx"``: the OOD loss of the composite closed form (:func:`simtheory.symmetric_approx`) on the
    horizon of :func:`horizon`, classified as :func:`classify` does (``rel_tol``; ``decided_by="closed
    form"``); ``bump`` is its bump height. ``fallback=True`` also evaluates the first-order form and, where
    the two disagree on monotone vs not, integrates the flow (``decided_by="ODE"``). Measured against the
    numerical flow by :func:`agreement_study` (``method="approx"``; ``simtheory reproduce``, section 5):
    97.6-100% per init family with no ODE at all (the rule: 57-87%), 98.8-100% with the fallback (the flow
    integrated for 0-23% of settings); where both are non-monotone, the bump is within 20% of the flow's in
    79-100% of settings per family (median error 0-2%). ``turning_points``: the composite curve's.

    ``"rule"``:

    For a weak concept i and a strong concept j (``a_j > a_i`` under the convention's rates) the
    OOD loss is predicted non-monotone when all of these hold:

    1. the minor entry helps: ``w_ij(0) > 0`` (it keeps its sign while it grows as
       ``e^{kappa (a_i + a_j) t}`` and adds ``w_ij mu_j`` to OOD coordinate i);
    2. the rates are well separated: ``a_j > ratio * a_i`` (at ``ratio = 3`` the minor entry is
       already suppressed while ``w_jj`` is at 0.8: rate ``-0.2 (a_j - 3 a_i)``);
    3. the initialisation is small: largest eigenvalue of W0 below ``init_scale``.

    These are the paper's qualitative conditions turned into a rule; how often the rule agrees
    with the numerical solution is measured by :func:`agreement_study`, not assumed.
    """
    if not isinstance(task, SIMTask):
        raise ValueError(f"task must be a SIMTask, got {type(task).__name__}")
    method = _checks.choice(method, "method", METHODS)
    if method == "approx":
        W0 = _checks.psd(_checks.square_batch(W0, "W0", task.d), "W0")
        if W0.ndim != 2:
            raise ValueError(f"W0 must be a single d x d matrix, got shape {W0.shape}")
        rel_tol = _checks.real_number(rel_tol, "rel_tol", low=0.0, high=1.0, low_open=True, high_open=True)
        A_eff, kappa = theory.effective_A(task, convention)
        T = horizon(task, W0, convention)
        v = approx_verdicts(
            (A_eff * T)[None],
            W0[None],
            task.test_point()[None],
            time_grid(1.0),
            kappa,
            rel_tol=rel_tol,
            fallback=bool(fallback),
        )
        by = "closed form" if v["decided"][0] else "ODE"
        word = {True: "non-monotone", False: "monotone"}
        reasons = tuple(f"{form} form: {word[bool(v['verdicts'][form][0])]}" for form in v["verdicts"])
        reasons += (f"decided by the {by}",)
        tps = ()
        if v["decided"][0]:  # the composite curve's turning points, on the same grid
            grid = time_grid(T)
            curve = theory.symmetric_approx_ood_loss(task, W0, grid, convention)
            tps = classify(grid, curve, rel_tol=rel_tol).turning_points
        nonmono, bump = bool(v["nonmonotone"][0]), float(v["bump"][0])
        return Prediction(nonmono, (), reasons, "approx", by, bump, tps)
    ratio = _checks.real_number(ratio, "ratio", low=1.0)
    init_scale = _checks.real_number(init_scale, "init_scale", low=0.0, low_open=True)
    A_eff, _ = theory.effective_A(task, convention)
    W0 = _checks.psd(_checks.square_batch(W0, "W0", task.d), "W0")
    if W0.ndim != 2:
        raise ValueError(f"W0 must be a single d x d matrix, got shape {W0.shape}")
    a = np.diag(A_eff)[: task.s]
    small = float(np.linalg.eigvalsh(W0).max()) < init_scale
    pairs, reasons = [], []
    for i in range(task.s):
        for j in range(task.s):
            if a[j] <= a[i]:
                continue
            ok_sign, ok_ratio = W0[i, j] > 0, a[j] > ratio * a[i]
            if ok_sign and ok_ratio and small:
                pairs.append((i, j))
            reasons.append(
                f"pair (weak {i + 1}, strong {j + 1}): w_ij(0) > 0: {bool(ok_sign)}; "
                f"a_j/a_i = {a[j] / a[i]:.3g} > {ratio}: {bool(ok_ratio)}; small init: {small}"
            )
    return Prediction(bool(pairs), tuple(pairs), tuple(reasons))


def horizon(task: SIMTask, W0, convention: str = "gradient-flow", factor: float = 6.0) -> float:
    """A time by which the symmetric flow has learned every concept it will (``factor`` x the
    logistic stage time of the slowest concept from the smallest positive diagonal entry of W0)."""
    A_eff, kappa = theory.effective_A(task, convention)
    a_min = float(np.diag(A_eff)[: task.s].min())
    w = np.diag(np.asarray(W0, dtype=np.float64))[: task.s]
    omega = float(np.clip(w[w > 0].min() if np.any(w > 0) else 1e-6, 1e-300, 0.5))
    from ._compile import compiled

    stage = compiled("symmetric", "stage_time")(a=a_min, omega=omega, kappa=kappa)
    return factor * (stage + 1.0 / (2 * kappa * a_min))


def time_grid(t_end: float, n: int = 1500) -> np.ndarray:
    """0 followed by log-spaced times up to ``t_end`` (dynamics here are multi-scale)."""
    return np.concatenate([[0.0], np.geomspace(t_end * 1e-4, t_end, n - 1)])


def _range(value, name, *, integer=False):
    lo, hi = (value, value) if np.isscalar(value) else tuple(value)
    if integer:
        lo, hi = _checks.positive_int(lo, name, minimum=1), _checks.positive_int(hi, name, minimum=1)
    else:
        lo, hi = _checks.real_number(lo, name, low=0.0), _checks.real_number(hi, name, low=0.0)
    if hi < lo:
        raise ValueError(f"{name} must be a value or a range (low, high) with low <= high, got {value!r}")
    return lo, hi


#: init families of :func:`agreement_study`: U0 = scale x uniform[0, 1) ("positive") or x standard normal
FAMILIES = ("positive", "gaussian")


def agreement_study(
    n: int = 200,
    seed: int = 0,
    convention: str = "gradient-flow",
    *,
    method: str = "rule",
    ratio: float = 3.0,
    init_scale: float = 0.1,
    rel_tol: float = 1e-3,
    d=3,
    s=2,
    mu=(0.5, 3.0),
    sigma=(0.0, 0.3),
    scale=(1e-3, 0.3),
    families=FAMILIES,
    fallback: bool = False,
) -> dict:
    """Compare :func:`predict_swingby` (``method``, and ``fallback`` for "approx") with the numerical solution
    over ``n`` random settings.

    Default settings (the report's study): s = 2 concepts in d = 3, mu ~ U[0.5, 3] each, sigma ~ U[0, 0.3],
    W0 = U0 U0^T with U0 = scale * uniform[0, 1)^(d x d) (all-positive, as the paper's Figure 5) for
    even settings and scale * standard normal for odd ones, scale log-uniform in [1e-3, 0.3]. ``d`` and
    ``s`` may be ranges (lo, hi) drawn per setting (s <= d), ``mu``/``sigma``/``scale`` ranges or values,
    ``families`` cycles through the init families.
    Returns the agreement rate, the confusion counts, the settings' records (with family, scale, d, s, the
    numerical and predicted bump; for "approx" also what decided, each closed form's own verdict and bump
    (``composite``, ``riccati``, ``first_order``) and the rule's) and, for "approx", the fallback fraction.
    """
    n = _checks.positive_int(n, "n")
    method = _checks.choice(method, "method", METHODS)
    rng = np.random.default_rng(_checks.seed_value(seed))
    d_lo, d_hi = _range(d, "d", integer=True)
    s_lo, s_hi = _range(s, "s", integer=True)
    mu_r, sig_r = _range(mu, "mu"), _range(sigma, "sigma")
    sc_lo, sc_hi = _range(scale, "scale")
    if sc_lo <= 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    families = tuple(_checks.choice(f, "families", FAMILIES) for f in families) or FAMILIES
    tasks, W0s, fams, scales = [], [], [], []
    for k in range(n):
        dk = int(rng.integers(d_lo, d_hi + 1)) if d_hi > d_lo else d_lo
        sk = int(rng.integers(s_lo, min(s_hi, dk) + 1)) if min(s_hi, dk) > s_lo else min(s_lo, dk)
        task = SIMTask(rng.uniform(*mu_r, sk), rng.uniform(*sig_r), d=dk)
        sc = 10 ** rng.uniform(np.log10(sc_lo), np.log10(sc_hi))
        fam = families[k % len(families)]
        U0 = sc * (rng.random((dk, dk)) if fam == "positive" else rng.standard_normal((dk, dk)))
        tasks.append(task)
        W0s.append(U0 @ U0.T)
        fams.append(fam)
        scales.append(float(sc))
    # rescale time per setting: W_A(t) = W_{cA}(t / c), so one grid [0, 1] serves a batch of one d
    T = np.array([horizon(tk, W0, convention) for tk, W0 in zip(tasks, W0s)])
    grid = time_grid(1.0)
    kappa, _ = theory.CONVENTIONS[convention]
    flow_conv = "gradient-flow" if kappa == 2.0 else "paper"
    actual = [None] * n
    approx = {}
    for dk in sorted({tk.d for tk in tasks}):
        idx = [k for k in range(n) if tasks[k].d == dk]
        A_eff = np.stack([theory.effective_A(tasks[k], convention)[0] * T[k] for k in idx])
        W0b = np.stack([W0s[k] for k in idx])
        Ws = theory.symmetric_flow(A_eff, W0b, grid, convention=flow_conv)
        for j, k in enumerate(idx):
            actual[k] = classify(grid * T[k], theory.ood_loss(tasks[k], Ws[j]), rel_tol=rel_tol)
        if method == "approx":  # the criterion's fallback is the same ODE: reuse the solution computed above
            x = np.stack([tasks[k].test_point() for k in idx])
            v = approx_verdicts(A_eff, W0b, x, grid, kappa, rel_tol=rel_tol, forms=FORMS)
            for j, k in enumerate(idx):
                approx[k] = {f: (bool(v["verdicts"][f][j]), float(v["bumps"][f][j])) for f in FORMS}
    records, confusion = [], {"tp": 0, "tn": 0, "fp": 0, "fn": 0}
    for k, (task, W0) in enumerate(zip(tasks, W0s)):
        res = actual[k]
        if method == "approx":
            verdict, bump = approx[k]["composite"]
            decided = not fallback or verdict == approx[k]["first-order"][0]
            if not decided:  # the fallback: the numerical flow's own verdict
                verdict, bump = res.non_monotone, res.bump
            pred = Prediction(verdict, (), (), "approx", "closed form" if decided else "ODE", bump)
        else:
            pred = predict_swingby(task, W0, convention, ratio=ratio, init_scale=init_scale)
        key = ("t" if pred.nonmonotone == res.non_monotone else "f") + ("p" if pred.nonmonotone else "n")
        confusion[key] += 1
        records.append(
            {
                "mu": task.mu.tolist(),
                "sigma": float(task.sigma[0]),
                "d": task.d,
                "s": task.s,
                "family": fams[k],
                "scale": scales[k],
                "predicted": pred.nonmonotone,
                "actual": res.kind,
                "bump": res.bump,
                "predicted_bump": pred.bump,
                "decided_by": pred.decided_by,
            }
        )
        if method == "approx":  # each closed form's own verdict and bump, and the rule's on the same setting
            rule = predict_swingby(task, W0, convention, ratio=ratio, init_scale=init_scale).nonmonotone
            for f, (verdict_f, bump_f) in approx[k].items():
                key = f.replace("-", "_")
                records[-1].update({key: verdict_f, f"{key}_bump": bump_f})
            records[-1]["rule"] = rule
    agree = (confusion["tp"] + confusion["tn"]) / n
    out = {
        "n": n,
        "seed": seed,
        "convention": convention,
        "method": method,
        "fallback_check": bool(fallback) if method == "approx" else None,
        "agreement": agree,
        "confusion": confusion,
        "records": records,
    }
    if method == "approx":
        out["fallback"] = float(np.mean([r["decided_by"] == "ODE" for r in records]))
    return out


def _bump_errors(rows, verdict: str, bump: str) -> np.ndarray:
    """Relative bump errors ``|predicted - flow| / flow`` where prediction and flow are both non-monotone."""
    both = [r for r in rows if r[verdict] and r["actual"] in NON_MONOTONE and r["bump"] > 0]
    return np.array([abs(r[bump] - r["bump"]) / r["bump"] for r in both])


def study_summary(result: dict, *, below: float = 0.1) -> dict:
    """Per init family, over the settings whose init scale is below ``below``: agreement on monotone vs not
    (and the rule's, for an "approx" study), the fallback fraction and, where prediction and flow are both
    non-monotone, the median relative error of the predicted bump and the fraction within 20% of the
    numerical one.

    For an "approx" study also, from its records: each closed form alone (``{form}_alone`` agreement and
    ``{form}_bump_within_20``), and the criterion checked by the first-order form (``checked_agreement``,
    ``checked_fallback``: the composite's verdict where the first-order form agrees, the flow's elsewhere)."""
    out = {}
    for fam in sorted({r["family"] for r in result["records"]}):
        rows = [r for r in result["records"] if r["family"] == fam and r["scale"] < below]
        if not rows:
            continue
        actual = np.array([r["actual"] in NON_MONOTONE for r in rows])
        errs = _bump_errors(rows, "predicted", "predicted_bump")
        row = {
            "n": len(rows),
            "agreement": float(np.mean([r["predicted"] for r in rows] == actual)),
            "rule_agreement": float(np.mean([r["rule"] for r in rows] == actual))
            if "rule" in rows[0]
            else None,
            "non_monotone": float(np.mean(actual)),
            "fallback": float(np.mean([r["decided_by"] == "ODE" for r in rows])),
            "bump_median_error": float(np.median(errs)) if errs.size else None,
            "bump_within_20": float(np.mean(errs <= 0.2)) if errs.size else None,
            "n_bumps": int(errs.size),
        }
        if "composite" in rows[0]:
            for form in ("composite", "riccati", "first_order"):
                form_errs = _bump_errors(rows, form, f"{form}_bump")
                row[f"{form}_alone"] = float(np.mean([r[form] for r in rows] == actual))
                row[f"{form}_bump_within_20"] = float(np.mean(form_errs <= 0.2)) if form_errs.size else None
            agree = np.array([r["composite"] == r["first_order"] for r in rows])
            checked = np.where(agree, [r["composite"] for r in rows], actual)
            row["checked_agreement"] = float(np.mean(checked == actual))
            row["checked_fallback"] = float(np.mean(~agree))
        out[fam] = row
    return out


def phase_diagram(
    axis: str = "ratio",
    values=(1.0, 1.5, 2.0, 3.0, 4.5, 7.0, 10.0, 15.0),
    scales=(0.003, 0.01, 0.02, 0.05, 0.1, 0.2),
    *,
    n: int = 16,
    seed: int = 0,
    family: str = "positive",
    convention: str = "gradient-flow",
    rel_tol: float = 1e-3,
) -> dict:
    """Where swing-by happens: for every cell of ``values`` x ``scales``, ``n`` random settings, the fraction
    whose OOD loss is non-monotone and their median bump, from the numerical flow and from the composite
    closed form (:func:`simtheory.symmetric_approx`).

    ``axis="ratio"``: s = 2 in d = 3, a_strong / a_weak = value (a_weak from mu ~ U[0.6, 1.2], sigma 0.05);
    ``axis="d"``: s = 2 in d = value, mu ~ U[0.6, 2.5], sigma 0.05 (the paper's "low dimension"). The init is
    U0 = scale x uniform[0, 1) (``family="positive"``) or x standard normal (``"gaussian"``), W0 = U0 U0^T.
    Returns ``{"axis", "values", "scales", "flow": {"fraction", "bump"}, "approx": {...}, "n"}`` with
    (len(values), len(scales)) arrays (median bump over the non-monotone settings, NaN where none).
    """
    axis = _checks.choice(axis, "axis", ("ratio", "d"))
    family = _checks.choice(family, "family", FAMILIES)
    n = _checks.positive_int(n, "n")
    values = [float(v) for v in values]
    scales = [_checks.real_number(s_, "scales", low=0.0, low_open=True) for s_ in scales]
    rng = np.random.default_rng(_checks.seed_value(seed))
    kappa, _ = theory.CONVENTIONS[convention]
    flow_conv = "gradient-flow" if kappa == 2.0 else "paper"
    grid = time_grid(1.0, 800)
    cells = []  # (value index, scale index, d, A scaled, W0, x)
    for iv, v in enumerate(values):
        for js, sc in enumerate(scales):
            for _ in range(n):
                if axis == "ratio":
                    if v < 1.0:
                        raise ValueError(f"values must be ratios >= 1 for axis 'ratio', got {v}")
                    d, sigma = 3, 0.05
                    mu_w = rng.uniform(0.6, 1.2)
                    a_w = mu_w**2 / 2 + sigma**2
                    mu = [mu_w, np.sqrt(2 * (v * a_w - sigma**2))]
                else:
                    if v != int(v):
                        raise ValueError(f"values must be integer dimensions for axis 'd', got {v}")
                    d, sigma = _checks.positive_int(int(v), "values", minimum=2, maximum=_checks.MAX_D), 0.05
                    mu = rng.uniform(0.6, 2.5, 2)
                task = SIMTask(mu, sigma, d=d)
                U0 = sc * (rng.random((d, d)) if family == "positive" else rng.standard_normal((d, d)))
                W0 = U0 @ U0.T
                A_eff, _ = theory.effective_A(task, convention)
                cells.append((iv, js, d, A_eff * horizon(task, W0, convention), W0, task.test_point()))
    shape_ = (len(values), len(scales))
    out = {k: {"fraction": np.zeros(shape_), "bump": np.full(shape_, np.nan)} for k in ("flow", "approx")}
    verdict = {k: [[[] for _ in scales] for _ in values] for k in out}
    for d in sorted({c[2] for c in cells}):
        group = [c for c in cells if c[2] == d]
        A = np.stack([c[3] for c in group])
        W0 = np.stack([c[4] for c in group])
        x = np.stack([c[5] for c in group])
        nm_f, b_f = shape(grid, _ood_losses(theory.symmetric_flow(A, W0, grid, flow_conv), x), rel_tol)
        v = approx_verdicts(A, W0, x, grid, kappa, rel_tol=rel_tol)
        for c, nf, bf, na, ba in zip(group, nm_f, b_f, v["nonmonotone"], v["bump"]):
            verdict["flow"][c[0]][c[1]].append((nf, bf))
            verdict["approx"][c[0]][c[1]].append((na, ba))
    for k in out:
        for iv in range(len(values)):
            for js in range(len(scales)):
                rows = verdict[k][iv][js]
                out[k]["fraction"][iv, js] = np.mean([r[0] for r in rows])
                bumps = [r[1] for r in rows if r[0]]
                if bumps:
                    out[k]["bump"][iv, js] = float(np.median(bumps))
    return {"axis": axis, "values": values, "scales": scales, "n": n, "family": family, **out}


def approximation_error(task: SIMTask, W1, scales, *, method: str = "composite", n_times: int = 400) -> dict:
    """How the error of :func:`simtheory.symmetric_approx` depends on the init scale: for W0 = scale^2 W1,
    the largest entry-wise error against :func:`simtheory.symmetric_flow` over the whole trajectory (to
    :func:`horizon`), and the order p fitted to error ~ scale^p (least squares in log-log)."""
    W1 = _checks.psd(_checks.square_batch(W1, "W1", task.d), "W1")
    scales = np.array([_checks.real_number(s_, "scales", low=0.0, low_open=True) for s_ in scales])
    if scales.size < 2:
        raise ValueError("scales must hold at least two init scales to fit an order")
    errors = []
    for sc in scales:
        W0 = sc**2 * W1
        g = time_grid(horizon(task, W0), n_times)
        approx = theory.symmetric_approx(task, W0, g, method=method)
        errors.append(float(np.abs(approx - theory.symmetric_flow(task, W0, g)).max()))
    errors = np.array(errors)
    order = float(np.polyfit(np.log(scales), np.log(np.maximum(errors, 1e-300)), 1)[0])
    return {"scales": scales.tolist(), "errors": errors.tolist(), "order": order, "method": method}
