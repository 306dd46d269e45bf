"""simtheory.measures on curves with known answers."""

from __future__ import annotations

import numpy as np
import pytest

from simtheory import measures


def test_first_crossing_is_the_first_sample_at_the_level_and_inf_if_never():
    t = np.linspace(0, 10, 101)
    y = np.stack([t / 10, np.zeros_like(t)])
    out = measures.first_crossing(t, y, 0.5)
    assert out[0] == pytest.approx(5.0) and np.isinf(out[1])
    with pytest.raises(ValueError, match="time axis"):
        measures.first_crossing(t, y[:, :-1], 0.5)


def test_sustained_crossing_of_a_clean_sigmoid_is_where_it_passes_the_level():
    t = np.arange(60.0) * 100
    y = 1 / (1 + np.exp(-(t - 3000) / 200))
    c = measures.sustained_crossing(t, y, 0.9, sigma=0.0, run=3)
    assert not c.censored
    assert c.time == t[np.argmax(y > 0.9)]  # the sigmoid stays above once there
    exact = 3000 + 200 * np.log(9)  # y = 0.9
    assert exact <= c.time < exact + 100


def test_sustained_crossing_is_censored_when_never_reached():
    t = np.arange(20.0)
    c = measures.sustained_crossing(t, np.full(20, 0.5), 0.9)
    assert c.censored and c.time == t[-1] and c.index == 20


def test_a_noisy_plateau_below_the_level_with_spikes_is_not_learned():
    t = np.arange(60.0)
    rng = np.random.default_rng(0)
    y = np.clip(0.75 + 0.05 * rng.standard_normal(60), 0, 1)
    y[10::7] = 1.0  # single-checkpoint spikes above the level
    assert (y > 0.9).any()
    assert measures.sustained_crossing(t, y, 0.9, sigma=1.5, run=3).censored
    # the same spikes three in a row, after smoothing, do count
    y2 = y.copy()
    y2[40:] = 1.0
    c = measures.sustained_crossing(t, y2, 0.9, sigma=1.5, run=3)
    assert not c.censored and 38 <= c.time <= 42


def test_sustained_crossing_needs_run_consecutive_samples():
    t = np.arange(10.0)
    y = np.array([0, 1, 1, 0, 1, 1, 1, 0, 0, 0], dtype=float)
    assert measures.sustained_crossing(t, y, 0.5, sigma=0, run=2).time == 1
    assert measures.sustained_crossing(t, y, 0.5, sigma=0, run=3).time == 4
    assert measures.sustained_crossing(t, y, 0.5, sigma=0, run=4).censored


def test_gaussian_smoothing_keeps_constants_and_the_mean_of_a_line():
    y = np.full(30, 0.3)
    np.testing.assert_allclose(measures.gaussian_smooth(y, 2.0), y)
    line = np.arange(30.0)
    np.testing.assert_allclose(measures.gaussian_smooth(line, 2.0)[10:20], line[10:20], atol=1e-9)
    with pytest.raises(ValueError, match="sigma"):
        measures.gaussian_smooth(y, -1)


def test_log_linear_fit_recovers_exponential_and_power_laws():
    x = np.linspace(1, 10, 30)
    e = measures.log_linear_fit(x, 3 * np.exp(-0.7 * x))
    assert e.slope == pytest.approx(-0.7) and e.r2 == pytest.approx(1.0) and e.n == 30
    p = measures.log_linear_fit(x, 2 * x**-1.5, log_x=True)
    assert p.slope == pytest.approx(-1.5) and p.r2 == pytest.approx(1.0)
    # a power law is not a straight line on a log-y plot
    assert measures.log_linear_fit(x, 2 * x**-1.5).r2 < 0.95
    assert np.isnan(measures.log_linear_fit([1, 2], [1, 2]).slope)


def test_spearman_is_rank_correlation_and_nan_on_constants():
    assert measures.spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert measures.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert measures.spearman([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert np.isnan(measures.spearman([1, 2, 3], [5, 5, 5]))
