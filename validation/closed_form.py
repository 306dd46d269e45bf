"""Studies of the swing-by criterion and the closed forms against the numerical flow (report section 5):
how often a criterion agrees with the flow over random settings (:func:`agreement_study`,
:func:`study_summary`), where swing-by happens (:func:`phase_diagram`) and how a closed form's error shrinks
with the init scale (:func:`approximation_error`). Each returns a frozen result; ``to_dict()`` is its JSON.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from simtheory import _checks, theory
from simtheory.measures import NON_MONOTONE, classify, shape
from simtheory.swingby import CRITERIA, Prediction, predict_swingby
from simtheory.task import SIMTask
from simtheory.theory import FORMS, approx_verdicts, flow_convention, horizon, time_grid

#: init families of the studies: U0 = scale x uniform[0, 1) ("positive") or x standard normal
FAMILIES = ("positive", "gaussian")


def _range(value, name, *, integer=False):
    lo, hi = (value, value) if np.isscalar(value) else tuple(value)
    if integer:
        lo, hi = _checks.positive_int(lo, name, minimum=1), _checks.positive_int(hi, name, minimum=1)
    else:
        lo, hi = _checks.real_number(lo, name, low=0.0), _checks.real_number(hi, name, low=0.0)
    if hi < lo:
        raise ValueError(f"{name} must be a value or a range (low, high) with low <= high, got {value!r}")
    return lo, hi


def initial_W(rng, family: str, scale: float, d: int) -> np.ndarray:
    """``W0 = U0 U0^T`` with ``U0 = scale x`` uniform[0, 1) (``"positive"``) or standard normal entries."""
    U0 = scale * (rng.random((d, d)) if family == "positive" else rng.standard_normal((d, d)))
    return U0 @ U0.T


@dataclass(frozen=True)
class AgreementStudy:
    """:func:`agreement_study`'s result: agreement rate, confusion counts, one record per setting and, for
    ``criterion="approx"``, the fraction the fallback integrated."""

    n: int
    seed: int
    convention: str
    method: str  # the criterion
    fallback_check: bool | None
    agreement: float
    confusion: dict
    records: list
    fallback: float | None = None

    def to_dict(self) -> dict:
        out = asdict(self)
        if self.fallback is None:
            out.pop("fallback")
        return out


def _draw_settings(n, rng, d, s, mu, sigma, scale, families):
    d_lo, d_hi = _range(d, "d", integer=True)
    s_lo, s_hi = _range(s, "s", integer=True)
    mu_r, sig_r = _range(mu, "mu"), _range(sigma, "sigma")
    sc_lo, sc_hi = _range(scale, "scale")
    if sc_lo <= 0:
        raise ValueError(f"scale must be positive, got {scale!r}")
    families = tuple(_checks.choice(f, "families", FAMILIES) for f in families) or FAMILIES
    settings = []  # (task, W0, family, scale)
    for k in range(n):
        dk = int(rng.integers(d_lo, d_hi + 1)) if d_hi > d_lo else d_lo
        sk = int(rng.integers(s_lo, min(s_hi, dk) + 1)) if min(s_hi, dk) > s_lo else min(s_lo, dk)
        task = SIMTask(rng.uniform(*mu_r, sk), rng.uniform(*sig_r), d=dk)
        sc = 10 ** rng.uniform(np.log10(sc_lo), np.log10(sc_hi))
        fam = families[k % len(families)]
        settings.append((task, initial_W(rng, fam, sc, dk), fam, float(sc)))
    return settings


def _flow_and_forms(settings, convention, rel_tol, closed_forms: bool):
    """Per setting, the numerical flow's :class:`~simtheory.measures.Analysis` and (``closed_forms``) each
    closed form's (verdict, bump), all on one grid of the horizon (time rescaled per setting:
    ``W_A(t) = W_{cA}(t / c)``)."""
    n = len(settings)
    T = np.array([horizon(task, W0, convention) for task, W0, _, _ in settings])
    grid = time_grid(1.0)
    kappa = theory.convention_rates(convention)[0]
    scale, flow_conv = flow_convention(kappa)
    actual, approx = [None] * n, {}
    for dk in sorted({st[0].d for st in settings}):
        idx = [k for k in range(n) if settings[k][0].d == dk]
        A_eff = np.stack([theory.effective_A(settings[k][0], convention)[0] * T[k] for k in idx])
        W0b = np.stack([settings[k][1] for k in idx])
        Ws = theory.symmetric_flow(scale * A_eff, W0b, grid, convention=flow_conv)
        for j, k in enumerate(idx):
            actual[k] = classify(grid * T[k], theory.ood_loss(settings[k][0], Ws[j]), rel_tol=rel_tol)
        if closed_forms:
            x = np.stack([settings[k][0].test_point() for k in idx])
            v = approx_verdicts(A_eff, W0b, x, grid, kappa, rel_tol=rel_tol, forms=FORMS)
            for j, k in enumerate(idx):
                approx[k] = {f: (bool(v["verdicts"][f][j]), float(v["bumps"][f][j])) for f in FORMS}
    return actual, approx


def _record(task, fam, sc, pred: Prediction, res) -> dict:
    return {
        "mu": task.mu.tolist(),
        "sigma": float(task.sigma[0]),
        "d": task.d,
        "s": task.s,
        "family": fam,
        "scale": sc,
        "predicted": pred.nonmonotone,
        "actual": res.kind,
        "bump": res.bump,
        "predicted_bump": pred.bump,
        "decided_by": pred.decided_by,
    }


def _closed_form_prediction(forms: dict, res, fallback: bool) -> Prediction:
    """The composite's verdict; with ``fallback``, the flow's own where the first-order form disagrees."""
    verdict, bump = forms["composite"]
    decided = not fallback or verdict == forms["first-order"][0]
    if not decided:
        verdict, bump = res.non_monotone, res.bump
    return Prediction(verdict, (), (), "approx", "closed form" if decided else "ODE", bump)


def agreement_study(
    n: int = 200,
    seed: int = 0,
    convention: str = "gradient-flow",
    *,
    criterion: str = "rule",
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
) -> AgreementStudy:
    """Compare :func:`~simtheory.swingby.predict_swingby` (``criterion``, and ``fallback`` for "approx") with
    the numerical solution over ``n`` random settings.

    Default settings (the report's study): s = 2 concepts in d = 3, mu ~ U[0.5, 3] each, sigma ~ U[0, 0.3],
    W0 = U0 U0^T with U0 = scale * uniform[0, 1)^(d x d) (all-positive, as the paper's Figure 5) for
    even settings and scale * standard normal for odd ones, scale log-uniform in [1e-3, 0.3]. ``d`` and
    ``s`` may be ranges (lo, hi) drawn per setting (s <= d), ``mu``/``sigma``/``scale`` ranges or values,
    ``families`` cycles through the init families. Records hold family, scale, d, s, the numerical and
    predicted bump; for "approx" also what decided, each closed form's own verdict and bump (``composite``,
    ``riccati``, ``first_order``) and the rule's.
    """
    n = _checks.positive_int(n, "n")
    criterion = _checks.choice(criterion, "criterion", CRITERIA)
    rng = np.random.default_rng(_checks.seed_value(seed))
    settings = _draw_settings(n, rng, d, s, mu, sigma, scale, families)
    approx = criterion == "approx"
    actual, forms = _flow_and_forms(settings, convention, rel_tol, approx)
    records, confusion = [], {"tp": 0, "tn": 0, "fp": 0, "fn": 0}
    for k, (task, W0, fam, sc) in enumerate(settings):
        rule = predict_swingby(task, W0, convention, ratio=ratio, init_scale=init_scale)
        pred = _closed_form_prediction(forms[k], actual[k], fallback) if approx else rule
        key = ("t" if pred.nonmonotone == actual[k].non_monotone else "f") + (
            "p" if pred.nonmonotone else "n"
        )
        confusion[key] += 1
        records.append(_record(task, fam, sc, pred, actual[k]))
        if approx:  # each closed form's own verdict and bump, and the rule's on the same setting
            for f, (verdict_f, bump_f) in forms[k].items():
                name = f.replace("-", "_")
                records[-1].update({name: verdict_f, f"{name}_bump": bump_f})
            records[-1]["rule"] = rule.nonmonotone
    return AgreementStudy(
        n,
        seed,
        convention,
        criterion,
        bool(fallback) if approx else None,
        (confusion["tp"] + confusion["tn"]) / n,
        confusion,
        records,
        float(np.mean([r["decided_by"] == "ODE" for r in records])) if approx else None,
    )


def _bump_errors(rows, verdict: str, bump: str) -> np.ndarray:
    """Relative bump errors ``|predicted - flow| / flow`` where prediction and flow are both non-monotone."""
    both = [r for r in rows if r[verdict] and r["actual"] in NON_MONOTONE and r["bump"] > 0]
    return np.array([abs(r[bump] - r["bump"]) / r["bump"] for r in both])


def _each_form(rows, actual) -> dict:
    """Each closed form alone, and the composite checked by the first-order form (flow where they differ)."""
    row = {}
    for form in ("composite", "riccati", "first_order"):
        form_errs = _bump_errors(rows, form, f"{form}_bump")
        row[f"{form}_alone"] = float(np.mean([r[form] for r in rows] == actual))
        row[f"{form}_bump_within_20"] = float(np.mean(form_errs <= 0.2)) if form_errs.size else None
    agree = np.array([r["composite"] == r["first_order"] for r in rows])
    checked = np.where(agree, [r["composite"] for r in rows], actual)
    row["checked_agreement"] = float(np.mean(checked == actual))
    row["checked_fallback"] = float(np.mean(~agree))
    return row


def study_summary(result: AgreementStudy, *, below: float = 0.1) -> dict:
    """Per init family, over the settings whose init scale is below ``below``: agreement on monotone vs not
    (and the rule's, for an "approx" study), the fallback fraction and, where prediction and flow are both
    non-monotone, the median relative error of the predicted bump and the fraction within 20% of the
    numerical one.

    For an "approx" study also, from its records: each closed form alone (``{form}_alone`` agreement and
    ``{form}_bump_within_20``), and the criterion checked by the first-order form (``checked_agreement``,
    ``checked_fallback``: the composite's verdict where the first-order form agrees, the flow's elsewhere)."""
    out = {}
    for fam in sorted({r["family"] for r in result.records}):
        rows = [r for r in result.records if r["family"] == fam and r["scale"] < below]
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
            row.update(_each_form(rows, actual))
        out[fam] = row
    return out


@dataclass(frozen=True)
class PhaseDiagram:
    """:func:`phase_diagram`'s result: per (value, scale) cell the non-monotone fraction and median bump of
    the flow (``flow``) and of the composite closed form (``approx``), each ``{"fraction", "bump"}`` of
    (len(values), len(scales)) arrays."""

    axis: str
    values: list
    scales: list
    n: int
    family: str
    flow: dict
    approx: dict

    def to_dict(self) -> dict:
        return asdict(self)


def _phase_setting(axis: str, v: float, rng):
    """One random task of a phase-diagram cell on ``axis`` at ``v``."""
    if axis == "ratio":
        if v < 1.0:
            raise ValueError(f"values must be ratios >= 1 for axis 'ratio', got {v}")
        sigma = 0.05
        mu_w = rng.uniform(0.6, 1.2)
        a_w = mu_w**2 / 2 + sigma**2
        return SIMTask([mu_w, np.sqrt(2 * (v * a_w - sigma**2))], sigma, d=3)
    if v != int(v):
        raise ValueError(f"values must be integer dimensions for axis 'd', got {v}")
    d = _checks.positive_int(int(v), "values", minimum=2, maximum=_checks.MAX_D)
    return SIMTask(rng.uniform(0.6, 2.5, 2), 0.05, d=d)


def _phase_verdicts(cells, grid, convention, rel_tol):
    """Per cell (value index, scale index, d, A on the horizon, W0, x): the flow's and the composite's
    (non-monotone, bump), grouped by d so each group shares one batched solve."""
    kappa = theory.convention_rates(convention)[0]
    scale, flow_conv = flow_convention(kappa)
    out = {"flow": [], "approx": []}
    for d in sorted({c[2] for c in cells}):
        group = [c for c in cells if c[2] == d]
        A = np.stack([c[3] for c in group])
        W0 = np.stack([c[4] for c in group])
        x = np.stack([c[5] for c in group])
        nm_f, b_f = shape(
            grid, theory.ood_losses(theory.symmetric_flow(scale * A, W0, grid, flow_conv), x), rel_tol
        )
        v = approx_verdicts(A, W0, x, grid, kappa, rel_tol=rel_tol)
        out["flow"] += [(c, nf, bf) for c, nf, bf in zip(group, nm_f, b_f)]
        out["approx"] += [(c, na, ba) for c, na, ba in zip(group, v["nonmonotone"], v["bump"])]
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
) -> PhaseDiagram:
    """Where swing-by happens: for every cell of ``values`` x ``scales``, ``n`` random settings, the fraction
    whose OOD loss is non-monotone and their median bump, from the numerical flow and from the composite
    closed form (:func:`simtheory.symmetric_approx`).

    ``axis="ratio"``: s = 2 in d = 3, a_strong / a_weak = value (a_weak from mu ~ U[0.6, 1.2], sigma 0.05);
    ``axis="d"``: s = 2 in d = value, mu ~ U[0.6, 2.5], sigma 0.05 (the paper's "low dimension"). The init is
    U0 = scale x uniform[0, 1) (``family="positive"``) or x standard normal (``"gaussian"``), W0 = U0 U0^T.
    The median bump is over a cell's non-monotone settings (NaN where none).
    """
    axis = _checks.choice(axis, "axis", ("ratio", "d"))
    family = _checks.choice(family, "family", FAMILIES)
    n = _checks.positive_int(n, "n")
    values = [float(v) for v in values]
    scales = [_checks.real_number(s_, "scales", low=0.0, low_open=True) for s_ in scales]
    rng = np.random.default_rng(_checks.seed_value(seed))
    cells = []  # (value index, scale index, d, A scaled to the horizon, W0, x)
    for iv, v in enumerate(values):
        for js, sc in enumerate(scales):
            for _ in range(n):
                task = _phase_setting(axis, v, rng)
                W0 = initial_W(rng, family, sc, task.d)
                A_eff, _ = theory.effective_A(task, convention)
                cells.append((iv, js, task.d, A_eff * horizon(task, W0, convention), W0, task.test_point()))
    verdicts = _phase_verdicts(cells, time_grid(1.0, 800), convention, rel_tol)
    shape_ = (len(values), len(scales))
    out = {}
    for k, rows in verdicts.items():
        fraction, bump = np.zeros(shape_), np.full(shape_, np.nan)
        for iv in range(len(values)):
            for js in range(len(scales)):
                here = [(nm, b) for c, nm, b in rows if c[0] == iv and c[1] == js]
                fraction[iv, js] = np.mean([nm for nm, _ in here])
                bumps = [b for nm, b in here if nm]
                if bumps:
                    bump[iv, js] = float(np.median(bumps))
        out[k] = {"fraction": fraction, "bump": bump}
    return PhaseDiagram(axis, values, scales, n, family, out["flow"], out["approx"])


@dataclass(frozen=True)
class ErrorOrder:
    """:func:`approximation_error`'s result: the largest entry-wise error per init scale and the fitted
    order p of error ~ scale^p."""

    scales: list
    errors: list
    order: float
    method: str  # the closed form

    def to_dict(self) -> dict:
        return asdict(self)


def approximation_error(
    task: SIMTask, W1, scales, *, form: str = "composite", n_times: int = 400
) -> ErrorOrder:
    """How the error of :func:`simtheory.symmetric_approx` depends on the init scale: for W0 = scale^2 W1,
    the largest entry-wise error against :func:`simtheory.symmetric_flow` over the whole trajectory (to
    :func:`~simtheory.theory.horizon`), and the order p fitted to error ~ scale^p (least squares, log-log)."""
    W1 = _checks.psd(_checks.square_batch(W1, "W1", task.d), "W1")
    scales = np.array([_checks.real_number(s_, "scales", low=0.0, low_open=True) for s_ in scales])
    if scales.size < 2:
        raise ValueError("scales must hold at least two init scales to fit an order")
    errors = []
    for sc in scales:
        W0 = sc**2 * W1
        g = time_grid(horizon(task, W0), n_times)
        approx = theory.symmetric_approx(task, W0, g, form=form)
        errors.append(float(np.abs(approx - theory.symmetric_flow(task, W0, g)).max()))
    errors = np.array(errors)
    order = float(np.polyfit(np.log(scales), np.log(np.maximum(errors, 1e-300)), 1)[0])
    return ErrorOrder(scales.tolist(), errors.tolist(), order, form)
