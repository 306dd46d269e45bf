"""Performance claims held as ratios against a baseline in the same process (slow: they time real work; the
default suite has no wall-clock thresholds)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _bench():
    if str(ROOT / "benchmarks") not in sys.path:  # the benchmark scripts import their helpers by name
        sys.path.insert(0, str(ROOT / "benchmarks"))
    spec = importlib.util.spec_from_file_location("bench_predict", ROOT / "benchmarks" / "predict.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_predict_costs_at_most_1_5x_the_flow_it_wraps():
    """``predict`` (Curves with OOD outputs, losses and a solver log) against ``symmetric_flow`` on the same
    256 settings, alternating, best of 5 each: the README quotes "within 1.2x"; held to 1.5x (a 2x slower
    predict fails), and the same W."""
    r = _bench().bench_predict_overhead()()
    assert r["same"] and r["predict"] <= 1.5 * r["flow"], r
