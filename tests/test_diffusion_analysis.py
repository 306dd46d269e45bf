"""simtheory.diffusion's analysis and claims on synthetic records whose effects are known (fast: no model is
trained), and the power machinery behind the README's table."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from simtheory.diffusion import analysis, synthetic
from simtheory.diffusion.train import RunConfig

# --- analysis ---------------------------------------------------------------------------------

#: deterministic synthetic runs: no seed jitter, no checkpoint volatility
EXACT = replace(synthetic.PARK, jitter=0.0, volatility=0.0)


def sweep_like(**changes) -> RunConfig:
    """The CPU sweep's records layout (4 deltas x 3 seeds, its checkpoint grid, 32 generations)."""
    from validation.diffusion import sweep_config

    return sweep_config(**{"seeds": (0, 1, 2), **changes})


def claims_by_prefix(result):
    return {c.name.split(":")[0]: c for c in result.claims}


def test_learning_times_are_parks_definition_on_synthetic_runs():
    cfg = sweep_like()
    eff = replace(EXACT, times={0.1: (0.5, 0.2), 0.2: (0.4, 0.2), 0.4: (0.3, 0.2), 0.8: (0.1, 0.2)})
    res = analysis.analyse(synthetic.synthetic_records(cfg, eff), fit=False)
    m = res.members[0]  # delta 0.1: size at 1200 steps, colour at 3000
    # learned = probability of the prompted value > 0.9 sustained: 0.5 + 0.5 expit(x) > 0.9 at x = log 4
    lag = np.log(4) * eff.width * cfg.steps
    for reading in analysis.READINGS:
        colour, size = m.times[reading]
        assert (
            1200 + lag - 300 < size.time < 1200 + lag + 600
            and 3000 + lag - 300 < colour.time < 3000 + lag + 600
        )
        assert m.first(reading) == "size"
    assert all(x.competent for x in res.members)
    assert [e.firsts["heldout"] for e in res.deltas] == [["size"] * 3] * 3 + [["colour"] * 3]
    cl = claims_by_prefix(res)
    assert cl["(i) learning order on the held-out prompt"].verdict == "pass"
    assert cl["(i) learning order on the training prompts"].verdict == "pass"
    assert (
        cl["(i) the seed-mean colour learning time (held-out prompt) falls as delta rises"].verdict == "pass"
    )
    cross = cl["(i) the delta at which colour and size are learned at the same time (held-out, seed means)"]
    assert 0.4 < cross.details["measured"] < 0.8


def test_a_wrong_order_fails_the_order_claims_and_a_constant_order_fails_one_side():
    cfg = sweep_like()
    wrong = replace(EXACT, times={0.1: (0.2, 0.5), 0.2: (0.2, 0.4), 0.4: (0.2, 0.3), 0.8: (0.3, 0.1)})
    cl = claims_by_prefix(analysis.analyse(synthetic.synthetic_records(cfg, wrong), fit=False))
    assert cl["(i) learning order on the held-out prompt"].verdict == "fail"
    assert (
        cl["(i) the seed-mean colour learning time (held-out prompt) falls as delta rises"].verdict == "fail"
    )
    constant = replace(EXACT, times={d: (0.4, 0.2) for d in cfg.deltas})  # size always first
    cl = claims_by_prefix(analysis.analyse(synthetic.synthetic_records(cfg, constant), fit=False))
    order = cl["(i) learning order on the held-out prompt"]
    assert order.verdict == "fail" and order.details["size"]["verdict"] == "pass"
    assert order.details["colour"]["verdict"] == "fail"


def test_the_competence_gate_keeps_runs_that_never_learn_out_of_the_claims():
    cfg = sweep_like()
    # colour at delta 0.1 learned only after 90% of the run: those members fail the gate
    late = replace(EXACT, times={0.1: (0.9, 0.2), 0.2: (0.4, 0.2), 0.4: (0.3, 0.2), 0.8: (0.1, 0.2)})
    res = analysis.analyse(synthetic.synthetic_records(cfg, late), fit=False)
    failed = [(m.delta, m.seed) for m in res.members if not m.competent]
    assert failed == [(0.1, 0), (0.1, 1), (0.1, 2)]
    gate = res.to_dict()["competence_gate"]
    assert gate["passed"] == 9 and gate["failed"] == failed
    e = res.deltas[0]
    assert not e.gated and e.n_competent == 0 and e.firsts["heldout"] == []
    order = claims_by_prefix(res)["(i) learning order on the held-out prompt"]
    assert order.details["size"]["deltas"] == [0.2, 0.4]  # delta 0.1 is not scored
    assert (
        claims_by_prefix(res)["(ii) swing-by"].verdict == "inconclusive"
    )  # its only clear delta: no gated run
    never = replace(EXACT, times={d: (5.0, 5.0) for d in cfg.deltas})
    res = analysis.analyse(synthetic.synthetic_records(cfg, never), fit=False)
    m = res.members[0]
    assert not m.competent and m.times["heldout"][0].censored and m.first("heldout") == "none"
    assert claims_by_prefix(res)["(i) learning order on the held-out prompt"].verdict == "inconclusive"


def test_a_noisy_plateau_is_not_learned():
    # colour held at 0.8 +- noise: single checkpoints above 0.9 accuracy, never three in a row after smoothing
    t = np.arange(0, 6000, 100.0)
    acc = np.full((1, len(t), 2), 1.0)
    rng = np.random.default_rng(1)
    acc[0, :, 0] = np.clip(0.8 + 0.05 * rng.standard_normal(len(t)), 0, 1)
    acc[0, 5::9, 0] = 1.0
    c = analysis.learning_times(t, acc)[0]
    assert c[0].censored and not c[1].censored and c[1].time == 0


def test_swingby_claim_sees_the_rise_at_the_clear_delta_and_not_a_monotone_curve():
    cfg = sweep_like()
    res = analysis.analyse(synthetic.synthetic_records(cfg, EXACT), fit=False)
    e = res.deltas[0]
    assert e.swing_scoring == "clear" and res.deltas[1].swing_scoring == "marginal"
    assert e.swing.rise > 0.1 and e.swing.near_stronger_corner and e.swing.significant
    assert (
        e.swing.peak_point[0] < 0.3 and e.swing.peak_point[1] > 0.8
    )  # at red-small, size being the stronger
    assert claims_by_prefix(res)["(ii) swing-by"].verdict == "pass"
    flat = analysis.analyse(synthetic.synthetic_records(cfg, replace(EXACT, swing_depth=0.0)), fit=False)
    assert flat.deltas[0].swing.rise < 0.01
    assert claims_by_prefix(flat)["(ii) swing-by"].verdict == "fail"


def test_the_swing_statistic_starts_after_the_early_cut():
    steps = np.arange(0, 6001, 200.0)
    mse = np.full(len(steps), 0.25)
    mse[1] = 0.1  # an early dip below chance, then back: a "rise" of 0.15 before the cut only
    C = np.full((len(steps), 2), 0.5)
    s = analysis._rise(steps, mse, np.zeros_like(mse), C, "size")
    assert s.rise == 0.0 and s.from_step >= analysis.CUT * steps[-1]
    mse[10:] = 0.35  # a rise after the cut is seen
    assert analysis._rise(steps, mse, np.zeros_like(mse), C, "size").rise == pytest.approx(0.1)


def test_slowdown_fit_recovers_the_rate_and_tells_exponential_from_power_law():
    steps = RunConfig.checkpoints(sweep_like()).astype(float)
    rate = 0.8  # per 1k steps
    C = np.stack([1 - np.exp(-rate * steps / 1000), np.ones_like(steps)], axis=1)
    mid, v = analysis.speed(steps, C)
    dec = analysis._decay(steps, analysis.mse_to_target(C), mid, v, floor=1e-4)
    assert dec.law == "exponential" and dec.rate_per_1k == pytest.approx(rate, rel=0.02) and dec.r2 > 0.999
    P = np.stack([1 - (1 + steps / 300) ** -1.0, np.ones_like(steps)], axis=1)
    mid, v = analysis.speed(steps, P)
    assert analysis._decay(steps, analysis.mse_to_target(P), mid, v, floor=1e-6).law == "power law"
    # the window ends where the speed falls to twice the floor
    dec = analysis._decay(steps, analysis.mse_to_target(C), mid, v, floor=0.5001 * v[20])
    assert dec.n_points < len(v)
    # a flat speed has too few points above its floor: not decided
    flat = analysis._decay(steps, np.zeros_like(steps), mid, np.full_like(v, 1e-3), floor=1e-3)
    assert flat.law == "too few points"


def test_slowdown_claim_reads_exponential_logistic_runs_and_not_power_law_ones():
    """Logistic learning curves slow down exponentially: no delta reads as a power law and at least two as
    exponential (the others' windows start at a rounded peak: "indistinguishable", which is why the claim's
    power is low, see the power table); a power-law approach never passes."""
    cfg = sweep_like()
    res = analysis.analyse(synthetic.synthetic_records(cfg, replace(EXACT, swing_depth=0.0)), fit=False)
    laws = [e.decay.law for e in res.deltas]
    assert "power law" not in laws and laws.count("exponential") >= 2, laws
    assert claims_by_prefix(res)["(iii) slowdown"].verdict != "fail"
    res = analysis.analyse(synthetic.synthetic_records(cfg, replace(EXACT, tail="power")), fit=False)
    assert claims_by_prefix(res)["(iii) slowdown"].verdict != "pass"


def test_rank_thresholds_met_exactly_are_not_decided_by_float_rounding():
    from types import SimpleNamespace

    from simtheory.diffusion.claims import trend_claim
    from simtheory.measures import spearman

    deltas, t = [0.1, 0.2, 0.4, 0.8], [4000.0, 3000.0, 2000.0, 1000.0]
    assert spearman(deltas, t) == pytest.approx(-1.0)
    per = [
        SimpleNamespace(delta=d, times={"heldout": {"colour": x, "size": 2500.0}}) for d, x in zip(deltas, t)
    ]
    assert trend_claim(per, 6000).verdict == "pass"
    per[3].times["heldout"]["colour"] = 2500.0  # one adjacent swap: rho = -0.8 fails the strict order
    assert trend_claim(per, 6000).verdict == "fail"


def test_power_of_the_claims_on_synthetic_sweeps():
    """The power machinery itself: with the effect the claims pass, without it they do not (few replicates,
    far apart); the README's table comes from ``python -m validation.diffusion --power``."""
    from simtheory.diffusion import power

    cfg = sweep_like()
    k_with = power.pass_counts(cfg, synthetic.PARK, reps=6, seed=3)
    k_none = power.pass_counts(cfg, power.NO_ORDER, reps=6, seed=4)
    k_flat = power.pass_counts(cfg, synthetic.NO_SWING, reps=6, seed=5)
    order = "(i) learning order on the held-out prompt"
    assert k_with[order] >= 5 and k_none[order] <= 1
    assert k_with["(ii) swing-by"] >= 3 and k_flat["(ii) swing-by"] == 0
    assert power.wilson(0, 200)[1] < 0.02 and power.wilson(200, 200)[0] > 0.98


def test_synthetic_records_are_seeded():
    cfg = sweep_like(deltas=(0.1, 0.8), seeds=(0,))
    a, b = (synthetic.synthetic_records(cfg, synthetic.PARK, seed=7) for _ in range(2))
    assert np.array_equal(a.probs, b.probs)
    assert not np.array_equal(a.probs, synthetic.synthetic_records(cfg, synthetic.PARK, seed=8).probs)


def test_sim_fit_recovers_the_rate_ratio_of_a_sim_trajectory():
    from simtheory.theory import symmetric_flow

    steps = np.linspace(0, 8000, 40)
    a = np.array([0.9, 0.3])
    U0 = np.array([[0.2, 0.0], [0.05, 0.15]])
    C = symmetric_flow(np.diag(a), U0 @ U0.T, steps / 1000).sum(axis=-1)
    fit = analysis.sim_fit(steps, C)
    assert fit["rms"] < 1e-8
    assert fit["a"][0] / fit["a"][1] == pytest.approx(3.0, rel=1e-6)  # noise-free data: the exact ratio


def test_the_seed_mean_curves_smooth_each_members_trajectory_along_the_checkpoints():
    """An independent computation from the raw records: per gated member, the OOD prompt's mean probe output
    per checkpoint, Gaussian-smoothed (sigma 2) along the checkpoints, then the mean over members."""
    from scipy.ndimage import gaussian_filter1d

    rec = synthetic.synthetic_records(sweep_like(), synthetic.PARK, seed=11)
    res = analysis.analyse(rec, fit=False)
    for e in res.deltas:
        ks = [k for k, m in enumerate(res.members) if m.delta == e.delta and m.competent] or [
            k for k, m in enumerate(res.members) if m.delta == e.delta
        ]
        raw = rec.probs[:, ks, -1].mean(axis=2)  # (C, members, s)
        want = gaussian_filter1d(raw.astype(np.float64), 2.0, axis=0, mode="nearest", truncate=4.0).mean(
            axis=1
        )
        np.testing.assert_allclose(np.array(e.curves["C"]), want, rtol=1e-12, atol=1e-12)
        mse = np.mean(
            (gaussian_filter1d(raw.astype(np.float64), 2.0, axis=0, mode="nearest") - 1) ** 2, axis=2
        )
        np.testing.assert_allclose(np.array(e.curves["mse"]), mse.mean(axis=1), rtol=1e-12, atol=1e-12)


def test_the_slowdown_window_runs_from_the_last_hump_to_twice_the_floor():
    steps = np.arange(0, 2600, 100.0)  # the cut (5% of 2500) falls at checkpoint 2
    mid = (steps[1:] + steps[:-1]) / 2
    v = np.array([9.0, 1, 5, 2, 1, 3, 2.5, 1.2, 0.6, 0.3, 0.15, 0.08, 0.04, 0.02] + [0.01] * 11)
    dec = analysis._decay(steps, np.zeros_like(steps), mid, v, floor=0.02)
    # humps after the cut: 5 (index 2) and 3 (index 5, >= half of 5); the last one starts the window; it
    # ends before the first speed below 2 x 0.02 = 0.04 (index 13: 0.04 itself is not below it)
    assert (dec.start_step, dec.end_step, dec.n_points) == (mid[5], mid[12], 8)
    assert dec.rate_per_1k > 0


def test_a_sweep_report_puts_each_claims_power_beside_its_verdict(tmp_path):
    from validation._report import Report
    from validation.diffusion import _check_sweep

    rec = synthetic.synthetic_records(sweep_like(), synthetic.PARK, seed=11)
    result = analysis.analyse(rec, fit=False)
    r = Report("diffusion", "test")
    _check_sweep(r, rec, result, power_reps=2, out=tmp_path)
    rows = r.metrics["power"]
    assert [p["null"] for p in rows][-1] == "power-law tail" and len(rows) == 6
    assert {p["claim"] for p in rows} <= set(claims_by_prefix(result)) and all(p["reps"] == 2 for p in rows)
    assert "power at this setting (2 synthetic sweeps per effect" in " ".join(r.notes)
    assert "| (ii) swing-by |" in (tmp_path / "diffusion_power.md").read_text()
    r2 = Report("diffusion", "test")
    _check_sweep(r2, rec, result)  # power_reps 0: no power column
    assert "power" not in r2.metrics


# --- the verdicts' inputs, each against an independent computation ----------------------------------


def _smooth(y, axis):
    from scipy.ndimage import gaussian_filter1d

    return gaussian_filter1d(np.asarray(y, dtype=np.float64), 2.0, axis=axis, mode="nearest", truncate=4.0)


def test_the_cnn_probe_is_read_unless_the_analytic_one_is_asked_for():
    import dataclasses

    rec = synthetic.synthetic_records(sweep_like(deltas=(0.1,), seeds=(0,)), EXACT)
    rec = dataclasses.replace(rec, analytic=np.full(rec.probs.shape[:-1] + (2,), 0.25))
    np.testing.assert_allclose(
        analysis.ood_trajectory(rec), np.moveaxis(rec.probs[:, :, -1].mean(axis=2), 0, 1)
    )
    assert np.all(analysis.ood_trajectory(rec, probe="analytic") == 0.25)


def test_multiplicative_accuracy_is_the_mean_over_generations_of_the_product_over_concepts():
    rec = synthetic.synthetic_records(sweep_like(deltas=(0.1, 0.8), seeds=(0,)), synthetic.PARK, seed=2)
    got = analysis.multiplicative_accuracy(rec)  # (K, C)
    C, K, _, n, _ = rec.probs.shape
    for k in range(K):
        for c in (0, C // 2, C - 1):
            want = np.mean([rec.probs[c, k, -1, g, 0] * rec.probs[c, k, -1, g, 1] for g in range(n)])
            assert got[k, c] == pytest.approx(want, rel=1e-12)


def test_the_over_prompt_reading_is_the_best_exaggeration_of_the_mean_over_generations():
    import dataclasses

    cfg = sweep_like(deltas=(0.1,), seeds=(0, 1))
    rec = synthetic.synthetic_records(cfg, EXACT, seed=3)
    C, K, _, n, s = rec.probs.shape
    over = np.random.default_rng(0).random((C, K, 3, n, s))
    rec = dataclasses.replace(rec, over_probs=over)
    res = analysis.analyse(rec, fit=False)
    e = res.deltas[0]
    ks = [k for k, m in enumerate(res.members) if m.competent] or [0, 1]
    best = over.prod(axis=-1).mean(axis=-1).max(axis=2)  # (C, K): mean over generations, best exaggeration
    np.testing.assert_allclose(e.curves["mult_over_prompt"], _smooth(best[:, ks].mean(axis=1), 0), rtol=1e-12)


def test_signals_within_the_tie_margin_predict_no_order():
    t = analysis.TIE
    assert analysis.predicted_first({"colour": 1.0 + 0.9 * t, "size": 1.0}) == "tie"
    assert analysis.predicted_first({"colour": 1.0, "size": 1.0 + 0.9 * t}) == "tie"
    assert analysis.predicted_first({"colour": 1.0 + 1.1 * t, "size": 1.0}) == "colour"
    assert analysis.predicted_first({"colour": 1.0, "size": 1.0 + 1.1 * t}) == "size"


def test_a_concept_learned_within_the_run_comes_before_one_that_never_is():
    from simtheory.measures import Crossing

    learned, never = Crossing(1000.0, 5, False), Crossing(6000.0, 41, True)
    assert analysis.first_learned((never, learned)) == "size"
    assert analysis.first_learned((learned, never)) == "colour"
    assert analysis.first_learned((never, never)) == "none"
    assert analysis.first_learned((learned, learned)) == "tie"


def test_the_speed_floor_is_the_median_of_the_last_ten_training_prompt_speeds():
    from simtheory.diffusion.data import training_rows

    rec = synthetic.synthetic_records(sweep_like(deltas=(0.4,)), synthetic.PARK, seed=5)
    res = analysis.analyse(rec, fit=False)
    ks = [k for k, m in enumerate(res.members) if m.competent] or list(range(len(res.members)))
    rows = training_rows(rec.probs.shape[-1])
    traj = _smooth(rec.probs[:, ks].mean(axis=3), axis=0)  # (C, k, classes, s)
    train = traj[:, :, rows].mean(axis=1)  # seed mean per training prompt: (C, rows, s)
    dt = np.diff(rec.steps.astype(np.float64)) / 1000.0
    v = np.linalg.norm(np.diff(train, axis=0), axis=-1) / dt[:, None]  # (C - 1, rows)
    assert res.deltas[0].curves["speed_floor"] == pytest.approx(np.median(v.mean(axis=1)[-10:]), rel=1e-12)


def test_the_sim_fit_reports_the_ratio_of_its_rates():
    rec = synthetic.synthetic_records(sweep_like(deltas=(0.8,), seeds=(0, 1)), EXACT, seed=1)
    sim = analysis.analyse(rec, fit=True).deltas[0].sim
    assert sim["ratio"] == sim["a_colour"] / sim["a_size"] and sim["ratio"] > 1.5  # colour far the faster


def _entry(delta, **fields):
    from types import SimpleNamespace

    return SimpleNamespace(delta=delta, **fields)


def test_the_sim_claim_needs_the_rate_ratio_to_rise_with_delta_at_spearman_0_8():
    from simtheory.diffusion.claims import sim_claim

    def claim(ratios):
        return sim_claim(
            [_entry(d, sim={"ratio": r, "rms": 0.01}) for d, r in zip((0.1, 0.2, 0.4, 0.8), ratios)]
        )

    assert claim([1, 2, 3, 4]).verdict == "pass"
    assert claim([2, 1, 3, 4]).verdict == "pass"  # one swap: Spearman 0.8, the threshold
    assert claim([3, 1, 2, 4]).verdict == "fail"  # Spearman 0.4
    assert claim([4, 3, 2, 1]).verdict == "fail"


def test_the_crossing_delta_is_interpolated_where_the_time_difference_changes_sign():
    from simtheory.diffusion.claims import crossing_claim

    def measured(diffs, deltas=(0.1, 0.2, 0.4, 0.8)):
        per = [
            _entry(d, times={"heldout": {"colour": 3000.0 + x, "size": 3000.0}})
            for d, x in zip(deltas, diffs)
        ]
        return crossing_claim(per, 0.5).details["measured"]

    assert measured([300, 100, -100, -300]) == pytest.approx(0.3)  # between 0.2 and 0.4
    assert measured([-300, -100, 100, 300]) == pytest.approx(0.3)
    assert measured([0, 100, -300, -300]) == pytest.approx(0.25)  # a zero difference does not start one
    assert np.isnan(measured([300, 200, 100, 50]))


def test_a_side_with_too_few_agreeing_but_enough_undecided_members_is_inconclusive():
    from simtheory.diffusion.claims import order_claim

    def side(firsts):
        per = [
            _entry(0.1, predicted_first="size", gated=True, firsts={"heldout": firsts}),
            _entry(0.8, predicted_first="colour", gated=True, firsts={"heldout": ["colour"] * 3}),
        ]
        return order_claim(per, "heldout", "held-out prompt").details["size"]["verdict"]

    # six members: 4 must agree (2/3)
    assert side(["size"] * 4 + ["colour"] * 2) == "pass"
    assert side(["size", "tie", "none", "tie", "colour", "colour"]) == "inconclusive"  # 1 + 3 undecided
    assert side(["size", "size", "tie", "colour", "colour", "colour"]) == "fail"  # 2 + 1 < 4


def test_the_swing_by_is_scored_with_two_gated_seeds_and_not_with_one():
    from types import SimpleNamespace

    from simtheory.diffusion.claims import swing_claim

    swing = SimpleNamespace(rise=0.2, se=0.01, significant=True, near_stronger_corner=True)

    def verdict(n):
        return swing_claim(
            [_entry(0.1, swing_scoring="clear", gated=n > 0, n_competent=n, swing=swing)]
        ).verdict

    assert verdict(2) == "pass" and verdict(3) == "pass"
    assert verdict(1) == "inconclusive"


def test_what_a_random_order_of_four_deltas_scores():
    """The base rates quoted beside the rank claims, against scipy's Spearman over all 24 orders."""
    import itertools

    from scipy.stats import spearmanr

    from simtheory.diffusion.claims import permutation_rate

    rhos = [spearmanr(range(4), p)[0] for p in itertools.permutations(range(4))]
    assert permutation_rate(4, -1.0, True) == pytest.approx(np.mean([r <= -1 + 1e-9 for r in rhos])) == 1 / 24
    assert permutation_rate(4, 0.8, False) == pytest.approx(np.mean([r >= 0.8 - 1e-9 for r in rhos]))
    assert permutation_rate(4, 0.8, False) == pytest.approx(4 / 24)


def test_the_sim_fit_works_for_long_runs_too():
    """A 50k-step run (Park's GPU runs are 20k): the fit's starting rates scale with the run's length."""
    from simtheory.theory import symmetric_flow

    steps = np.linspace(0, 50_000, 60)
    a = np.array([0.12, 0.04])  # per 1k steps
    U0 = np.array([[0.2, 0.0], [0.05, 0.15]])
    C = symmetric_flow(np.diag(a), U0 @ U0.T, steps / 1000).sum(axis=-1)
    fit = analysis.sim_fit(steps, C)
    assert fit["rms"] < 1e-6
    assert fit["a"][0] / fit["a"][1] == pytest.approx(3.0, rel=1e-4)


def _decay(law):
    from types import SimpleNamespace

    return SimpleNamespace(law=law, rate_per_1k=1.0, r2=0.9, power_r2=0.5, n_points=8)


def test_the_slowdown_fails_once_too_few_deltas_are_left_that_could_be_exponential():
    from simtheory.diffusion.claims import slowdown_claim

    def verdict(laws):
        entries = [_entry(d, decay=_decay(x)) for d, x in zip((0.1, 0.2, 0.4, 0.8), laws)]
        return slowdown_claim(entries).verdict

    ind, exp_, pw, nd = "indistinguishable", "exponential", "power law", "no decay"
    assert verdict([exp_, exp_, exp_, pw]) == "pass"
    assert verdict([exp_, ind, ind, pw]) == "inconclusive"  # three deltas could still be exponential
    assert verdict([exp_, ind, pw, nd]) == "fail"  # at most two could
    assert verdict([pw, pw, pw, pw]) == "fail"


def test_the_over_prompt_details_mark_censored_times_only():
    from simtheory.diffusion.claims import over_prompt_claim

    o = {"best_time": 1200.0, "best_censored": False, "plain_time": 6000.0, "plain_censored": True,
         "mean_gain": 0.25}  # fmt: skip
    c = over_prompt_claim([_entry(0.1, over_prompt=o)])
    assert "best 1200 vs plain 6000 (censored)" in c.measured


def test_probe_agreement_is_the_fraction_of_equal_hard_labels():
    import dataclasses

    rec = synthetic.synthetic_records(sweep_like(deltas=(0.1,), seeds=(0,)), EXACT, seed=1)
    probs = np.full_like(rec.probs, 0.9)
    analytic = np.full_like(rec.analytic, 0.8)
    analytic[-1, ..., 0] = 0.2  # the last checkpoint disagrees on colour
    got = analysis.probe_agreement(dataclasses.replace(rec, probs=probs, analytic=analytic), last=5)
    np.testing.assert_allclose(got, [[0.8, 1.0]])


def test_a_members_measures_read_the_end_of_the_run():
    import dataclasses

    rec = synthetic.synthetic_records(sweep_like(deltas=(0.1,), seeds=(0,)), EXACT, seed=1)
    res = analysis.analyse(rec, fit=False)
    assert res.run_length == float(rec.steps[-1]) and res.run_length > float(rec.steps[1])
    mult = analysis.multiplicative_accuracy(rec)
    m = res.members[0]
    assert m.mult_accuracy_last5 == pytest.approx(mult[0, -5:].mean(), rel=1e-12)
    assert m.mult_accuracy_last5 != pytest.approx(mult[0, 5:].mean(), rel=1e-6)
    d = m.to_dict()
    assert "times" not in d and d["delta"] == 0.1 and d["seed"] == 0 and "first_training" in d
    assert dataclasses.is_dataclass(m)


def test_competence_needs_colour_and_size_only():
    from simtheory.measures import Crossing

    never = Crossing(9000.0, 30, True)
    assert analysis._competent_step([Crossing(100.0, 2, False), Crossing(300.0, 5, False), never]) == 300.0
    assert analysis._competent_step([Crossing(100.0, 2, False), never]) == float("inf")


@pytest.mark.parametrize("peak, near", [((0.3, 0.2), True), ((0.2, 0.3), False), ((0.9, 0.1), True)])
def test_the_swing_peak_is_near_the_corner_it_is_nearer_to(peak, near):
    steps = np.arange(10.0) * 100
    mse = np.array([5, 4, 3, 2, 1, 2, 3, 1, 0.5, 0.4])  # a rise at index 6 from the minimum at 4
    C = np.zeros((10, 2))
    C[6] = peak
    sw = analysis._rise(steps, mse, np.zeros(10), C, "colour")
    assert sw.step == 600.0 and sw.peak_point == peak
    assert sw.near_stronger_corner is near  # colour: the blue-large corner (1, 0), against (0, 1)
    C[6] = peak[::-1]
    assert analysis._rise(steps, mse, np.zeros(10), C, "size").near_stronger_corner is near


def test_the_signal_crossing_is_nan_where_the_interval_does_not_hold_it():
    cross = analysis.signal_crossing(16)
    assert 0.137 < cross < 0.8
    assert np.isnan(analysis.signal_crossing(16, lo=0.05, hi=0.1))  # colour below size throughout
    assert np.isnan(analysis.signal_crossing(16, lo=0.75, hi=0.8))  # colour above size throughout
