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


def test_a_level_only_reached_is_not_crossed():
    t = np.arange(10.0)
    assert measures.sustained_crossing(t, np.full(10, 0.9), 0.9, sigma=0.0).censored
    assert not measures.sustained_crossing(t, np.full(10, 0.9 + 1e-12), 0.9, sigma=0.0).censored


def test_a_curve_that_starts_by_rising_has_no_minimum_at_its_start():
    t = np.arange(4.0)
    tps = measures.turning_points(t, [0.0, 1.0, 0.5, 0.4])
    assert [(p.kind, p.index) for p in tps] == [("max", 1)]
    falls_first = measures.turning_points(t, [1.0, 0.0, 0.5, 0.4])
    assert [(p.kind, p.index) for p in falls_first] == [("min", 1), ("max", 2)]


def test_the_wiggle_threshold_is_relative_to_the_curves_range():
    """rel_tol 1e-3 of a range of 2 (from 3 down to 1) is 0.002: a rise of 0.0025 is a turning point, one of
    0.0015 is not."""
    t = np.arange(7.0)
    for rise, n in ((0.0025, 2), (0.0015, 0)):
        loss = np.array([3.0, 2.5, 2.0, 2.0 + rise, 1.5, 1.2, 1.0])
        assert len(measures.turning_points(t, loss, rel_tol=1e-3)) == n, rise


def test_turning_point_gap_is_relative_to_the_reference():
    t = np.linspace(0, 4, 41)
    ref = measures.classify(t, np.exp(-t) + 0.5 * np.exp(-((t - 2.0) ** 2) / 0.1))
    shifted = measures.classify(t, np.exp(-(t - 0.2)) + 0.5 * np.exp(-((t - 2.2) ** 2) / 0.1))
    same, dt, dv = measures.turning_point_gap(shifted, ref)
    want = max(abs(p.time - q.time) / q.time for p, q in zip(shifted.turning_points, ref.turning_points))
    assert same and dt == pytest.approx(want) and 0.05 < dt < 0.2
    assert measures.turning_point_gap(ref, ref) == (True, 0.0, 0.0)
    mono = measures.classify(t, np.exp(-t))
    assert measures.turning_point_gap(mono, mono) == (True, 0.0, 0.0)
    assert measures.turning_point_gap(ref, mono)[0] is False


def _shape_cases(t):
    """Curves with known classify verdicts: swing-bys that end flat near zero, monotone ones, failures,
    and one whose flatness is decided by the point at 90% of the grid."""
    fall = np.exp(-t)
    swing = fall + 0.3 * np.exp(-((t - t[-1] / 3) ** 2))
    cases = [fall, swing, 0.5 + 0.5 * fall, 2 * swing, np.full_like(t, 0.7)]
    late = swing.copy()
    late[-2:] = [0.6, 0.5]  # the last two points differ: not flat from the 90% point on
    return np.stack(cases + [late])


@pytest.mark.parametrize("n", [10, 41])
def test_vectorised_shape_agrees_with_classify_for_any_batch_shape(n):
    t = np.linspace(0, 8, n)
    curves = _shape_cases(t)
    want = np.array([measures.classify(t, y).non_monotone for y in curves])
    bumps = np.array([measures.classify(t, y).bump for y in curves])
    nm, bump = measures.shape(t, curves)
    assert list(nm) == list(want) and want.any() and not want.all()
    np.testing.assert_allclose(bump, bumps, rtol=1e-12)
    nm3, bump3 = measures.shape(t, np.stack([curves, curves[::-1]]))  # (2, 6, n)
    assert nm3.shape == (2, 6) and list(nm3[1]) == list(want[::-1])
    np.testing.assert_allclose(bump3[0], bumps, rtol=1e-12)
    nm1, bump1 = measures.shape(t, curves[1])  # one curve
    assert nm1.shape == () and bool(nm1) == want[1] and float(bump1) == pytest.approx(bumps[1])
    with pytest.raises(ValueError, match="losses must have last axis"):
        measures.shape(t, curves[:, :-1])


def test_ood_non_monotone_ignores_the_first_record():
    from types import SimpleNamespace

    t = np.linspace(0, 4, 21)
    jump = np.r_[0.1, 1.0 + np.exp(-t[1:])]  # low at t = 0 (an init artefact), then falls: monotone after
    swing = 1 + np.exp(-t) + 0.5 * np.exp(-((t - 2) ** 2) / 0.1)
    got = measures.ood_non_monotone(SimpleNamespace(times=t, ood_loss=np.stack([jump, swing])))
    assert list(got) == [False, True]
    assert measures.non_monotone(t, jump)  # with the first record it would count


def test_converged_is_relative_to_the_curves_range():
    """A curve from 3 down to about 1 (range 2): its last 10% moving by 0.0015 < 1e-3 x 2 has converged -- at
    a loss above 5% of its start, a failure; moving by 0.0025 it has not."""
    t = np.linspace(0, 10, 101)
    for move, converged in ((0.0015, True), (0.0025, False)):
        loss = 1.0 + 2.0 * np.exp(-t)
        loss[90:] = 1.0 + move * np.linspace(1, 0, 11)
        res = measures.classify(t, loss)
        assert res.converged is converged and (res.kind == "failure") is converged, move


@pytest.mark.parametrize(
    "loss, rel_tol, want",
    [
        # a first rise smaller than the threshold, then a fall larger: its top is a maximum
        ([0.5, 0.7, 0.2], 0.4, [("max", 1)]),
        ([0.15, 0.25, 0.22, 0.13, 0.56, 0.68], 0.2, [("max", 1), ("min", 3)]),
        # a first dip smaller than the threshold, then a small rise and a large fall
        ([0.68, 0.65, 0.69, 0.39, 0.13, 0.72, 0.52], 0.2, [("max", 2), ("min", 4), ("max", 5)]),
    ],
)
def test_a_turn_counts_by_how_far_the_curve_moves_back_not_how_far_it_came(loss, rel_tol, want):
    tps = measures.turning_points(np.arange(float(len(loss))), loss, rel_tol)
    assert [(p.kind, p.index) for p in tps] == want


def test_a_rise_of_exactly_the_threshold_is_not_a_turn_in_classify_or_shape():
    t = np.arange(4.0)
    loss = np.array([1.0, 0.5, 0.75, 0.0])  # range 1, rel_tol 0.25: the rise from 0.5 to 0.75 is exactly h
    assert measures.classify(t, loss, rel_tol=0.25).kind == "monotone"
    nm, bump = measures.shape(t, loss, rel_tol=0.25)
    assert not nm and bump == 0.0
    nm, bump = measures.shape(t, np.array([1.0, 0.5, 0.76, 0.0]), rel_tol=0.25)
    assert nm and bump == pytest.approx(0.26)


def test_a_curve_that_rises_to_its_end_has_no_interior_maximum_in_shape():
    t = np.arange(5.0)
    loss = np.array([1.0, 0.2, 0.5, 0.8, 1.1])  # falls, then rises to the end: no maximum to come down from
    assert measures.classify(t, loss).kind == "monotone"
    nm, bump = measures.shape(t, loss)
    assert not nm and bump == 0.0


def test_one_sample_above_is_enough_with_run_1():
    t = np.arange(5.0)
    c = measures.sustained_crossing(t, [0, 0, 1, 0, 0], 0.5, sigma=0, run=1)
    assert (c.time, c.index, c.censored) == (2.0, 2, False)


def test_the_smoothing_kernel_is_a_gaussian_out_to_4_sigma_along_the_last_axis():
    sigma, n = 2.0, 41
    impulse = np.zeros(n)
    impulse[20] = 1.0
    k = np.arange(-8, 9)  # 4 sigma either side
    w = np.exp(-(k**2) / (2 * sigma**2))
    want = np.zeros(n)
    want[12:29] = w / w.sum()
    np.testing.assert_allclose(measures.gaussian_smooth(impulse, sigma), want, rtol=1e-9, atol=1e-15)
    rows = np.stack([impulse, 2 * impulse, np.roll(impulse, 5)])
    np.testing.assert_allclose(measures.gaussian_smooth(rows, sigma)[2], np.roll(want, 5), atol=1e-15)
    np.testing.assert_allclose(measures.gaussian_smooth(rows, sigma)[1], 2 * want, atol=1e-15)


def test_never_rises_per_curve_of_a_batch_with_either_tolerance():
    ys = np.array([[10.0, 9.0, 9.5, 8.0], [10.0, 9.0, 8.0, 7.0], [10.0, 9.0, 10.5, 8.0]])
    np.testing.assert_array_equal(measures.never_rises(ys, rel_step=0.0), [False, True, False])
    # steps may rise by 10% of the previous value: 9 -> 9.5 passes, 9 -> 10.5 does not
    np.testing.assert_array_equal(measures.never_rises(ys, rel_step=0.1), [True, True, False])
    # rises of up to 10% of the first value (1.0): 0.5 passes, 1.5 does not
    np.testing.assert_array_equal(measures.never_rises(ys, rel_initial=0.1), [True, True, False])
    assert measures.never_rises(ys[0], rel_initial=0.1) and not measures.never_rises(ys[2], rel_initial=0.1)


def test_three_points_make_a_fit_and_points_at_x_0_leave_a_power_law():
    f = measures.log_linear_fit([1.0, 2.0, 3.0], np.exp([-1.0, -2.0, -3.0]))
    assert f.n == 3 and f.slope == pytest.approx(-1.0)
    p = measures.log_linear_fit([0.0, 1.0, 2.0, 4.0], [5.0, 1.0, 0.25, 0.0625], log_x=True)
    assert p.n == 3 and p.slope == pytest.approx(-2.0) and p.r2 == pytest.approx(1.0)


def test_spearman_of_constant_samples_is_nan_without_a_warning():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert np.isnan(measures.spearman([2.0, 2.0, 2.0], [1.0, 2.0, 3.0]))
        assert np.isnan(measures.spearman([1.0], [1.0]))


def test_failure_frac_must_be_in_0_1():
    t = np.arange(5.0)
    with pytest.raises(ValueError, match="failure_frac"):
        measures.classify(t, np.linspace(1, 0, 5), failure_frac=-0.1)
    assert measures.classify(t, np.linspace(1, 0, 5), failure_frac=0.0).kind == "monotone"


def test_turning_point_gap_is_relative_whichever_side_the_actual_value_is():
    from simtheory.measures import Analysis, TurningPoint

    ref = Analysis("swing-by", (TurningPoint("max", 5, 2.0, 1.0),), 1.0, 0.1, True, 0.5)
    for value, time in ((0.9, 1.8), (1.1, 2.2)):
        act = Analysis("swing-by", (TurningPoint("max", 5, time, value),), 1.0, 0.1, True, 0.5)
        same, dt, dv = measures.turning_point_gap(act, ref)
        assert same and dt == pytest.approx(0.1) and dv == pytest.approx(0.1)


def test_wilson_interval_matches_the_textbook_values():
    lo, hi = measures.wilson(5, 10)  # 5 of 10: (0.2366, 0.7634) at 95%
    assert lo == pytest.approx(0.23659, abs=1e-5) and hi == pytest.approx(0.76341, abs=1e-5)
    assert measures.wilson(0, 0) == (0.0, 1.0) and measures.wilson(0, 20)[0] == 0.0
