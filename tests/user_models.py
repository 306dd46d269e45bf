"""A user's model module outside the package (used by tests/test_user_model.py through the command line's
--model-module): the one-layer model with weight decay 0.3, from its derivation's vector field."""

import derivations.one_layer_weight_decay as wd_derivation
import simtheory as sim
from simtheory import models
from simtheory.symbolic import numeric_field

FIELD = numeric_field(wd_derivation.flow, 3, params={"lambda": 0.3})


def flow(task, W0, t, *, convention="gradient-flow", **solver):
    return sim.field_flow(FIELD, task, W0, t, **solver)


models.register(
    models.ModelSpec("cli-linear-wd", "one layer with weight decay 0.3 (d = 3)", flow, lambda f: f[0])
)
