import os

from hypothesis import HealthCheck, settings

# Deterministic property tests: a fixed derandomised profile keeps CI reproducible.
settings.register_profile(
    "simtheory",
    max_examples=int(os.environ.get("SIMTHEORY_EXAMPLES", "25")),
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("simtheory")
