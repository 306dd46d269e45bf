import os
from datetime import timedelta

from hypothesis import HealthCheck, Phase, settings

# Deterministic property tests: a fixed derandomised profile keeps CI reproducible.
settings.register_profile(
    "simtheory",
    max_examples=int(os.environ.get("SIMTHEORY_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
# CI (HYPOTHESIS_PROFILE=ci, set by .ci/run and .ci/mutants.py): the same examples, each held to a
# deadline and no shrinking, so a wrong vector field whose ODE diverges fails at its first bad example
# instead of running for minutes while hypothesis shrinks it.
settings.register_profile(
    "ci",
    parent=settings.get_profile("simtheory"),
    deadline=timedelta(seconds=60),
    phases=(Phase.explicit, Phase.reuse, Phase.generate),
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "simtheory"))
