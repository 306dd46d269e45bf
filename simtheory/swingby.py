"""The swing-by criterion: will the OOD loss of the symmetric model be non-monotone?

The OOD loss of the symmetric model can fall, rise and fall again (swing-by): a minor entry
``w_ij`` grows with the strong concept j, moves the weak coordinate i of the OOD output toward
its target ("illusion of generalisation"), and is suppressed once ``w_jj`` approaches 1 (the loss
rises), before ``w_ii`` grows and the loss falls again. With more concepts there can be several
bumps (multiple descent), or a weak concept is never learned (failure).

:func:`predict_swingby` answers by the theory's conditions (``criterion="rule"``) or from the composite
closed form of the flow (``criterion="approx"``). The curve measures it classifies with live in
:mod:`simtheory.measures` (re-exported here); the closed forms in :mod:`simtheory.theory.approx`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from . import _checks
from .measures import (  # the curve measures live there; re-exported as this module's names
    KINDS as KINDS,
    NON_MONOTONE as NON_MONOTONE,
    Analysis as Analysis,
    TurningPoint as TurningPoint,
    classify as classify,
    non_monotone as non_monotone,
    ood_non_monotone as ood_non_monotone,
    shape as shape,
    turning_point_gap as turning_point_gap,
    turning_points as turning_points,
)
from .task import SIMTask
from .theory import (
    FORMS as FORMS,
    approx_verdicts as approx_verdicts,
    effective_A,
    horizon as horizon,
    ood_loss,
    symmetric_approx_ood_loss,
    symmetric_flow,
    time_grid as time_grid,
)

#: the criteria of :func:`predict_swingby`
CRITERIA = ("rule", "approx", "flow")
METHODS = CRITERIA  # the name before ``criterion`` replaced ``method``

#: each criterion's own parameters and their defaults
_PARAMETERS = {
    "rule": {"ratio": 3.0, "init_scale": 0.1},
    "approx": {"rel_tol": 1e-3, "fallback": False},
    "flow": {"rel_tol": 1e-3, "t_max": None},
}


@dataclass(frozen=True)
class Prediction:
    """Prediction of a non-monotone OOD loss (see :func:`predict_swingby`).

    ``pairs`` and ``reasons`` per pair are the rule's; ``bump`` and ``turning_points`` the closed form's
    (None and empty for the rule)."""

    nonmonotone: bool
    pairs: tuple[tuple[int, int], ...]  # (weak i, strong j) pairs that meet every condition ("rule")
    reasons: tuple[str, ...]
    criterion: str = "rule"
    decided_by: str = "rule"  # "rule", "closed form" (the composite decided), "ODE" (the fallback), "flow"
    bump: float | None = None  # the predicted bump height ("approx"), None for the rule
    #: "approx" decided in closed form: the composite curve's turning points (:func:`classify`'s, in the
    #: convention's time); empty for the rule and where the ODE decided
    turning_points: tuple[TurningPoint, ...] = ()

    @property
    def method(self) -> str:
        """The criterion (its name before ``criterion``)."""
        return self.criterion


def predict_swingby(
    task: SIMTask,
    W0,
    convention: str = "gradient-flow",
    *,
    criterion: str | None = None,
    model: str = "symmetric",
    method: str | None = None,
    **parameters,
) -> Prediction:
    """Predict a swing-by: by the conditions of the theory (``criterion="rule"``, the default) or from the
    closed-form approximation of the flow (``criterion="approx"``). Each criterion takes only its own
    parameters; one of the other's is refused.

    ``"approx"`` (``rel_tol=1e-3``, ``fallback=False``): the OOD loss of the composite closed form
    (:func:`simtheory.symmetric_approx`) on the horizon of :func:`horizon`, classified as :func:`classify`
    does (``decided_by="closed form"``); ``bump`` is its bump height, ``turning_points`` its turning points.
    ``fallback=True`` also evaluates the first-order form and, where the two disagree on monotone vs not,
    integrates the flow (``decided_by="ODE"``). Its agreement with the numerical flow is measured by
    ``validation.closed_form.agreement_study`` (report section 5).

    ``"rule"`` (``ratio=3``, ``init_scale=0.1``): for a weak concept i and a strong concept j (``a_j > a_i``
    under the convention's rates) the OOD loss is predicted non-monotone when all of these hold:

    1. the minor entry helps: ``w_ij(0) > 0`` (it keeps its sign while it grows as
       ``e^{kappa (a_i + a_j) t}`` and adds ``w_ij mu_j`` to OOD coordinate i);
    2. the rates are well separated: ``a_j > ratio * a_i`` (at ``ratio = 3`` the minor entry is
       already suppressed while ``w_jj`` is at 0.8: rate ``-0.2 (a_j - 3 a_i)``);
    3. the initialisation is small: largest eigenvalue of W0 below ``init_scale``.

    These are the paper's qualitative conditions turned into a rule; how often the rule agrees with the
    numerical solution is measured (report section 3), not assumed.

    ``"flow"`` (``rel_tol=1e-3``, ``t_max``: default the horizon of W(0)): the OOD loss of the ``model``'s
    own predicted flow (:func:`simtheory.predict`), classified -- for any registered model with a flow (the
    default criterion of a model other than "symmetric"; ``W0`` is then whatever ``predict`` takes for it).
    The rule and the closed forms are the symmetric model's. ``method`` is the old name of ``criterion``
    (deprecated).
    """
    if method is not None:
        if criterion is not None:
            raise ValueError("give criterion only (method is its old name)")
        warnings.warn("predict_swingby(method=...) is now criterion=...", DeprecationWarning, stacklevel=2)
        criterion = method
    if model != "symmetric" or criterion == "flow":
        return _by_model_flow(task, W0, convention, model, criterion, parameters)
    criterion = _checks.choice("rule" if criterion is None else criterion, "criterion", CRITERIA)
    other = sorted(set(parameters) - set(_PARAMETERS[criterion]))
    if other:
        raise ValueError(
            f"criterion {criterion!r} takes {sorted(_PARAMETERS[criterion])}, not {other} (those belong to "
            f"another criterion or none)"
        )
    if not isinstance(task, SIMTask):
        raise ValueError(f"task must be a SIMTask, got {type(task).__name__}")
    W0 = _checks.psd(_checks.square_batch(W0, "W0", task.d), "W0")
    if W0.ndim != 2:
        raise ValueError(f"W0 must be a single d x d matrix, got shape {W0.shape}")
    kw = {**_PARAMETERS[criterion], **parameters}
    return (_by_rule if criterion == "rule" else _by_closed_form)(task, W0, convention, **kw)


def _by_model_flow(task, init, convention: str, model: str, criterion, parameters: dict) -> Prediction:
    """Classify the OOD loss of ``model``'s predicted flow (any registered model with a flow)."""
    from . import models
    from .curves import predict

    if criterion not in (None, "flow"):
        raise ValueError(
            f"criterion {criterion!r} is the symmetric model's; for model {model!r} the criterion is 'flow' "
            "(its own predicted OOD loss)"
        )
    other = sorted(set(parameters) - set(_PARAMETERS["flow"]))
    if other:
        raise ValueError(f"criterion 'flow' takes {sorted(_PARAMETERS['flow'])}, not {other}")
    spec = models.get(model)
    if not spec.predictable:
        raise ValueError(
            f"model {model!r} has no flow to predict its OOD loss from ({spec.description}); predict_swingby "
            f"covers the models with one: {models.names(predictable=True)}"
        )
    if not isinstance(task, SIMTask):
        raise ValueError(f"task must be a SIMTask, got {type(task).__name__}")
    kw = {**_PARAMETERS["flow"], **parameters}
    rel_tol = _checks.real_number(kw["rel_tol"], "rel_tol", low=0.0, high=1.0, low_open=True)
    t_max = kw["t_max"]
    if t_max is None:
        W0 = predict(task, init, [0.0], model=model, convention=convention).W[0]
        t_max = horizon(task, W0, convention)
    grid = time_grid(_checks.real_number(t_max, "t_max", low=0.0, low_open=True))
    res = classify(grid, predict(task, init, grid, model=model, convention=convention).ood_loss, rel_tol)
    reasons = (f"the {model} model's predicted OOD loss: {res.kind}",)
    return Prediction(res.non_monotone, (), reasons, "flow", "flow", float(res.bump), res.turning_points)


def _by_closed_form(task: SIMTask, W0, convention: str, *, rel_tol: float, fallback: bool) -> Prediction:
    """The composite form's curve on the horizon, computed once and classified; with ``fallback`` the
    first-order form's verdict checks it and the flow decides where they differ."""
    rel_tol = _checks.real_number(rel_tol, "rel_tol", low=0.0, high=1.0, low_open=True, high_open=True)
    grid = time_grid(horizon(task, W0, convention))
    verdicts = {"composite": classify(grid, symmetric_approx_ood_loss(task, W0, grid, convention), rel_tol)}
    result, by = verdicts["composite"], "closed form"
    if fallback:
        first = symmetric_approx_ood_loss(task, W0, grid, convention, form="first-order")
        verdicts["first-order"] = classify(grid, first, rel_tol)
        if verdicts["first-order"].non_monotone != result.non_monotone:
            result, by = (
                classify(grid, ood_loss(task, symmetric_flow(task, W0, grid, convention)), rel_tol),
                "ODE",
            )
    word = {True: "non-monotone", False: "monotone"}
    reasons = tuple(f"{form} form: {word[v.non_monotone]}" for form, v in verdicts.items())
    reasons += (f"decided by the {by}",)
    tps = result.turning_points if by == "closed form" else ()
    return Prediction(result.non_monotone, (), reasons, "approx", by, float(result.bump), tps)


def _by_rule(task: SIMTask, W0, convention: str, *, ratio: float, init_scale: float) -> Prediction:
    ratio = _checks.real_number(ratio, "ratio", low=1.0)
    init_scale = _checks.real_number(init_scale, "init_scale", low=0.0, low_open=True)
    a = np.diag(effective_A(task, convention)[0])[: task.s]
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
