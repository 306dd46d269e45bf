"""Predictors compiled from the derivations, vectorised over time grids and batches of settings.

Conventions (they decide whether numbers match a simulation):

* Time ``t`` is **gradient-flow time**, ``t = learning rate x steps`` of full-batch GD on the
  loss ``L = 1/2 mean ||f(x) - x||^2`` (sum over coordinates), unless a ``convention`` says
  otherwise (:data:`CONVENTIONS`).
* Every predictor takes a :class:`~simtheory.SIMTask` (population ``A = diag(a)``) or an explicit
  second-moment matrix ``A`` of shape ``(d, d)`` or ``(..., d, d)`` (symmetric PSD, possibly
  non-diagonal: use :func:`~simtheory.empirical_second_moment` for exact finite-sample predictions).
* Shapes: batch axes of ``A`` and of the initial weights broadcast together to ``batch``; a
  predictor returns ``(*batch, len(t), d, d)``. With no batch axes that is ``(len(t), d, d)``.

The closed forms are the ones in ``derivations/`` (compiled with :mod:`simtheory._compile`), one module per
model: :mod:`~simtheory.theory.linear`, :mod:`~simtheory.theory.symmetric` (+ :func:`horizon`),
:mod:`~simtheory.theory.approx` (closed-form approximations of the symmetric flow and their swing-by
verdicts; kernels in ``_kernels``), :mod:`~simtheory.theory.flows` (untied, deep and user fields) and
:mod:`~simtheory.theory.losses`; conventions and shared plumbing in ``_base``.
``linear_flow`` and ``linear_gd`` apply the one-layer solutions in the eigenbasis of A (exact for
any symmetric A); ``symmetric_flow`` uses the decoupled logistic solution whenever W0 commutes
with A and integrates ``dW/dt = kappa V(W)`` numerically otherwise; ``untied_flow`` uses the
mode-wise sigmoid for balanced diagonal starts and integrates otherwise; ``deep_flow`` integrates any
deep linear network (no closed form exists).
"""

from __future__ import annotations

from ._base import (
    CONVENTIONS as CONVENTIONS,
    convention_rates as convention_rates,
    effective_A as effective_A,
    flow_convention as flow_convention,
)
from .approx import (
    APPROX_METHODS as APPROX_METHODS,
    FORMS as FORMS,
    approx_verdicts as approx_verdicts,
    symmetric_approx as symmetric_approx,
    symmetric_approx_ood_loss as symmetric_approx_ood_loss,
)
from .flows import (
    DeepSolution as DeepSolution,
    ParameterSolution as ParameterSolution,
    UntiedSolution as UntiedSolution,
    deep_flow as deep_flow,
    field_flow as field_flow,
    parameter_flow as parameter_flow,
    untied_flow as untied_flow,
)
from .linear import linear_flow as linear_flow, linear_gd as linear_gd, linear_ood_loss as linear_ood_loss
from .losses import (
    identity_loss as identity_loss,
    ood_loss as ood_loss,
    ood_losses as ood_losses,
    ood_output as ood_output,
    ood_points as ood_points,
    train_loss as train_loss,
)
from .symmetric import (
    horizon as horizon,
    symmetric_flow as symmetric_flow,
    symmetric_init as symmetric_init,
    time_grid as time_grid,
)
