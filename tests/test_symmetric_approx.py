"""The closed-form approximations of the symmetric flow (derivations/symmetric_approx.py,
theory.symmetric_approx) and the swing-by criterion built on them (predict_swingby(criterion="approx"))."""

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import simtheory as sim
from simtheory import swingby as sb
from simtheory.testing import tasks
from validation import closed_form as cf

METHODS = sim.theory.FORMS


def test_the_derivation_verifies_symbolically():
    import derivations

    report = derivations.get("symmetric_approx").verify()
    assert report.passed, report
    assert all(c.method == "symbolic" for c in report.checks)


def test_compiled_minor_entry_is_the_predictors_first_order_form():
    """The predictor's hand-vectorised first-order form equals the derivation's compiled formula."""
    task = sim.SIMTask([1.0, 2.0], 0.1, d=3)
    U0 = np.random.default_rng(0).random((3, 3)) * 0.1
    W0 = U0 @ U0.T
    t = np.linspace(0, 5, 11)
    W = sim.symmetric_approx(task, W0, t, form="first-order")
    minor = sim.compiled("symmetric_approx", "minor")
    a = task.a
    for i, j in ((0, 1), (0, 2), (1, 2)):
        expected = minor(a_i=a[i], a_j=a[j], t=t, w_ii0=W0[i, i], w_jj0=W0[j, j], w_ij0=W0[i, j], kappa=2.0)
        np.testing.assert_allclose(W[:, i, j], expected, rtol=1e-12)
        np.testing.assert_allclose(W[:, j, i], expected, rtol=1e-12)


def test_compiled_composite_factor_is_the_predictors():
    """The composite form's minor entries over the Riccati form's are the derivation's compiled factor."""
    task = sim.SIMTask([0.8, 2.0], 0.1, d=3)
    U0 = np.random.default_rng(4).random((3, 3)) * 0.1
    W0 = U0 @ U0.T
    t = np.linspace(0, 3, 7)
    ratio = sim.symmetric_approx(task, W0, t, form="composite") / sim.symmetric_approx(
        task, W0, t, "gradient-flow", form="riccati"
    )
    factor = sim.compiled("symmetric_approx", "composite_factor")
    a = task.a
    for i, j in ((0, 1), (0, 2), (1, 2)):
        expected = factor(a_i=a[i], a_j=a[j], t=t, w_ii0=W0[i, i], w_jj0=W0[j, j], kappa=2.0)
        np.testing.assert_allclose(ratio[:, i, j], expected, rtol=1e-9)
        assert np.all(expected[1:] > 1.0)  # unequal rates: the flow suppresses the minor entry more slowly
    np.testing.assert_allclose(np.diagonal(ratio, axis1=1, axis2=2), 1.0, rtol=1e-12)


@pytest.mark.parametrize("method", METHODS)
def test_the_ood_loss_path_is_the_loss_of_the_W_form(method):
    """symmetric_approx_ood_loss (entry by entry, chunked, no W per time) = the OOD loss of symmetric_approx,
    for positive definite starts, a singular one (rank 1) and an ill-conditioned one, in every convention."""
    rng = np.random.default_rng(5)
    task = sim.SIMTask([0.9, 1.7, 2.4], 0.05, d=5)
    U0 = rng.random((6, 5, 5)) * 0.05
    U0[4, :, 1:] = 0.0  # rank 1
    U0[5, :, 0] *= 1e-8  # condition number ~1e16
    W0 = U0 @ np.swapaxes(U0, -1, -2)
    t = np.concatenate([[0.0], np.geomspace(1e-3, 40.0, 60)])
    for convention in ("gradient-flow", "paper-code"):
        loss = sim.symmetric_approx_ood_loss(task, W0, t, convention, form=method)
        W = sim.symmetric_approx(task, W0, t, convention, form=method)
        expected = sim.ood_loss(task, W)
        np.testing.assert_allclose(loss, expected, rtol=1e-9, atol=1e-12 * float(expected[:, 0].min()))


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("convention", ["gradient-flow", "paper", "paper-code"])
@settings(max_examples=15, deadline=None)
@given(task=tasks(max_s=3, max_extra_d=1), data=st.data())
def test_on_commuting_starts_it_is_the_exact_flow(method, convention, task, data):
    w = data.draw(st.lists(st.floats(0.0, 1.5), min_size=task.d, max_size=task.d))
    Q = np.linalg.eigh(task.A)[1]
    W0 = Q @ np.diag(w) @ Q.T  # commutes with A
    t = np.array([0.0, 0.1, 1.0, 4.0, 30.0])
    np.testing.assert_allclose(
        sim.symmetric_approx(task, W0, t, convention, form=method),
        sim.symmetric_flow(task, W0, t, convention),
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("method", METHODS)
def test_contract_t0_batches_and_rotations(method):
    rng = np.random.default_rng(1)
    task = sim.SIMTask([1.0, 1.8], 0.1, d=3)
    U0 = rng.random((4, 3, 3)) * 0.2
    W0 = U0 @ np.swapaxes(U0, -1, -2)
    t = np.linspace(0, 6, 13)
    W = sim.symmetric_approx(task, W0, t, form=method)
    assert W.shape == (4, 13, 3, 3)
    np.testing.assert_allclose(W[:, 0], W0, atol=1e-12)  # t = 0 is the start
    np.testing.assert_allclose(W, np.swapaxes(W, -1, -2), atol=1e-12)  # symmetric
    for k in range(4):  # a batch equals its settings one by one
        np.testing.assert_allclose(W[k], sim.symmetric_approx(task, W0[k], t, form=method), rtol=1e-12)
    # covariance: a rotated A and W0 give the rotated trajectory (the forms work in A's eigenbasis)
    Q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    WQ = sim.symmetric_approx(Q @ task.A @ Q.T, Q @ W0[0] @ Q.T, t, form=method)
    np.testing.assert_allclose(WQ, Q @ W[0] @ Q.T, atol=1e-10)
    with pytest.raises(ValueError, match="form must be one of"):
        sim.symmetric_approx(task, W0, t, form="exact")
    with pytest.raises(ValueError, match="W0"):
        sim.symmetric_approx(task, -np.eye(3), t)


def test_the_linear_phase_is_exact_for_riccati():
    """While W is small the flow is W = E W0 E (E = e^{kappa A t}); the Riccati form keeps it with every
    correlation, the first-order form too (its minor entries start at rate kappa (a_i + a_j))."""
    task = sim.SIMTask([1.0, 2.0], 0.1, d=3)
    U0 = np.random.default_rng(2).standard_normal((3, 3)) * 1e-4
    W0 = U0 @ U0.T
    t = np.linspace(0, 1.0, 6)
    E = np.exp(2.0 * task.a[None, :] * t[:, None])  # kappa = 2
    linear = E[:, :, None] * W0 * E[:, None, :]
    for method in METHODS:
        W = sim.symmetric_approx(task, W0, t, form=method)
        assert np.abs(W - linear).max() < 1e-3 * np.abs(linear).max()


def test_error_vanishes_with_the_init_scale_where_rates_are_separated():
    """Fitted order on a separated pair (a = 0.095, 1.25): the largest error over the whole trajectory shrinks
    as scale^p -- the composite's with p about 1.2 (the report measures 1.22; at least 1.0 asserted) and
    below the Riccati form's at every scale, the Riccati form's with p about 1 (1.00; at least 0.7). The
    first-order form's does not shrink (its neglected cross-talk is scale-free: W0's correlations are)."""
    task = sim.SIMTask([0.43, 1.58], 0.05, d=3)  # a ~ (0.095, 1.25)
    U1 = np.random.default_rng(0).random((3, 3))
    scales = (1e-2, 1e-3, 1e-4)
    comp = cf.approximation_error(task, U1 @ U1.T, scales)
    ric = cf.approximation_error(task, U1 @ U1.T, scales, form="riccati")
    first = cf.approximation_error(task, U1 @ U1.T, scales, form="first-order")
    assert comp.method == "composite" and comp.order > 1.0 and comp.errors[-1] < 1e-5, comp
    assert all(c < r for c, r in zip(comp.errors, ric.errors)), (comp, ric)
    assert ric.order > 0.7 and ric.errors[-1] < 1e-3, ric
    assert min(first.errors) > 0.5 * max(first.errors) > 0.01, first  # no convergence
    with pytest.raises(ValueError, match="at least two"):
        cf.approximation_error(task, U1 @ U1.T, (1e-2,))


def test_shape_is_classify_vectorised():
    rng = np.random.default_rng(3)
    tt = np.linspace(0, 10, 400)
    curves = []
    for _ in range(60):
        c = np.exp(-rng.uniform(0.3, 2) * tt)
        for _ in range(rng.integers(0, 3)):
            c = c + rng.uniform(0, 0.3) * np.exp(-((tt - rng.uniform(1, 9)) ** 2) * rng.uniform(0.5, 5))
        curves.append(c + rng.choice([0.0, 0.4]))
    curves = np.array(curves)
    nm, bump = sb.shape(tt, curves)
    for c, n, b in zip(curves, nm, bump):
        res = sb.classify(tt, c)
        assert n == res.non_monotone
        if res.kind == "swing-by":
            assert b == pytest.approx(res.bump, rel=1e-12)
    assert 5 < nm.sum() < 55  # both kinds occur


def test_the_approx_criterion_agrees_with_the_flow_on_a_study():
    """On 60 random settings (the report's families) the composite form alone agrees with the numerical flow
    on monotone vs not in >= 95% (96.7%) with no ODE at all; the rule scores < 90% (80%) on the same settings,
    the first-order form alone < 80% on the all-positive family. Checked by the first-order form with the ODE
    where they disagree, the criterion reaches >= 98% (100%) at a fallback of 5-40% (15%)."""
    new = cf.agreement_study(60, seed=3, criterion="approx")
    old = cf.agreement_study(60, seed=3, criterion="rule")
    assert new.agreement >= 0.95 and old.agreement < 0.9, (new.agreement, old.agreement)
    assert new.fallback == 0.0 and all(r["decided_by"] == "closed form" for r in new.records)
    checked = cf.agreement_study(60, seed=3, criterion="approx", fallback=True)
    assert checked.agreement >= max(0.98, new.agreement) and 0.05 < checked.fallback < 0.4
    summary = cf.study_summary(new, below=1.0)
    assert set(summary) == {"positive", "gaussian"}
    assert summary["positive"]["first_order_alone"] < 0.8
    # the summary's checked variant is the fallback study's own agreement, recomputed from the records
    n = {f: summary[f]["n"] for f in summary}
    both = sum(summary[f]["checked_agreement"] * n[f] for f in n) / sum(n.values())
    assert both == pytest.approx(checked.agreement)


def test_the_composite_bump_height_is_the_flows_where_the_other_forms_miss_it():
    """Where flow and form are both non-monotone (60 settings, all-positive inits), the composite's bump is
    within 20% of the flow's in >= 70% of settings (82%; median error < 5%), the Riccati and first-order
    forms' in < 50% (31%, 30%): they suppress the minor entry too fast or miss its cross-talk."""
    summary = cf.study_summary(cf.agreement_study(60, seed=3, criterion="approx"), below=1.0)["positive"]
    assert summary["n_bumps"] >= 10
    assert summary["composite_bump_within_20"] >= 0.7 and summary["bump_median_error"] < 0.05, summary
    assert summary["riccati_bump_within_20"] < 0.5 and summary["first_order_bump_within_20"] < 0.5, summary


def test_predict_swingby_approx_on_one_setting():
    task = sim.SIMTask([1.0, 2.5], 0.05, d=3)
    U0 = np.random.default_rng(0).random((3, 3)) * 0.05
    W0 = U0 @ U0.T
    g = sb.time_grid(sb.horizon(task, W0))
    actual = sb.classify(g, sim.ood_loss(task, sim.symmetric_flow(task, W0, g)))
    pred = sb.predict_swingby(task, W0, criterion="approx")
    assert pred.criterion == "approx" and pred.decided_by == "closed form"
    assert pred.nonmonotone == actual.non_monotone and actual.non_monotone
    # bump and turning points are the flow's: the bump within 5% (2.4%; the first-order form's is 12% low,
    # the Riccati form misses the swing-by), the same kinds at times and values within 1% (0.5%)
    assert pred.bump == pytest.approx(actual.bump, rel=0.05)
    assert [p.kind for p in pred.turning_points] == [p.kind for p in actual.turning_points] == ["min", "max"]
    for p, q in zip(pred.turning_points, actual.turning_points):
        assert p.time == pytest.approx(q.time, rel=0.01) and p.value == pytest.approx(q.value, rel=0.01)
    checked = sb.predict_swingby(task, W0, criterion="approx", fallback=True)
    assert checked.decided_by in ("closed form", "ODE") and checked.nonmonotone == actual.non_monotone
    if checked.decided_by == "ODE":
        assert checked.bump == pytest.approx(actual.bump, rel=1e-6)
    assert any(r.startswith("first-order form") for r in checked.reasons)
    diag = sb.predict_swingby(task, np.diag([1e-3, 2e-3, 1e-3]), criterion="approx")
    assert not diag.nonmonotone and diag.decided_by == "closed form"  # commuting: the form is exact
    with pytest.raises(ValueError, match="criterion must be one of"):
        sb.predict_swingby(task, W0, criterion="best")
    with pytest.raises(ValueError, match="takes .*'fallback'.*not \\['ratio'\\]"):
        sb.predict_swingby(task, W0, criterion="approx", ratio=2.0)  # a parameter of the rule
    with pytest.warns(DeprecationWarning):
        assert sb.predict_swingby(task, W0, method="approx") == pred  # the old name of criterion


def test_phase_diagram_and_its_figure(tmp_path):
    """Equal rates never swing by (the ratio-1 row is 0 for flow and closed form), strongly separated rates
    at moderate scale mostly do; the figure and the CSV of its numbers are written."""
    from simtheory import plotting

    res = cf.phase_diagram("ratio", (1.0, 7.0), (0.02, 0.05), n=6, seed=1)
    for key in ("flow", "approx"):
        assert getattr(res, key)["fraction"].shape == (2, 2)
        assert np.all(getattr(res, key)["fraction"][0] == 0.0)
        assert getattr(res, key)["fraction"][1].mean() >= 0.5
    paths = plotting.phase_diagram(res.to_dict(), tmp_path / "phase")
    assert {p.suffix for p in paths} == {".png", ".pdf", ".csv"}
    rows = (tmp_path / "phase.csv").read_text().splitlines()
    assert rows[0].startswith("ratio,scale") and len(rows) == 1 + 4
    with pytest.raises(ValueError, match="integer dimensions"):
        cf.phase_diagram("d", (3.5,), (0.02,), n=1)
    with pytest.raises(ValueError, match="axis must be one of"):
        cf.phase_diagram("mu", (1.0,), (0.02,), n=1)


def test_threaded_chunks_give_the_same_numbers():
    """Many chunks run on a thread pool where cores are free; each chunk is computed alone, so the curves do
    not depend on the thread count (to the last bit)."""
    rng = np.random.default_rng(6)
    task = sim.SIMTask([0.9, 2.0], 0.05, d=3)
    U0 = rng.random((130, 3, 3)) * 0.05
    W0 = U0 @ np.swapaxes(U0, -1, -2)
    t = np.linspace(0.0, 8.0, 4000)  # 8 settings per chunk: 17 chunks
    for method in METHODS:
        with sim.threads(1):
            one = sim.symmetric_approx_ood_loss(task, W0, t, form=method)
        with sim.threads(2):
            two = sim.symmetric_approx_ood_loss(task, W0, t, form=method)
        np.testing.assert_array_equal(one, two)


def test_the_checked_criterion_integrates_the_flow_at_its_own_speed():
    """Where the composite and first-order forms disagree, approx_verdicts integrates dW/dt = kappa V_A(W)
    for the kappa it is given (as the "paper" convention on kappa A): kappa = 3 here, which is no named
    convention; elsewhere it keeps the composite's verdict."""
    rng = np.random.default_rng(7)
    B, d, kappa = 48, 3, 3.0
    A = np.zeros((B, d, d))
    A[:, [0, 1, 2], [0, 1, 2]] = np.stack(
        [rng.uniform(0.5, 3, B), rng.uniform(3, 12, B), np.full(B, 0.01)], 1
    )
    U0 = rng.random((B, d, d)) * 10 ** rng.uniform(-2.5, -1, (B, 1, 1))
    W0 = U0 @ np.swapaxes(U0, -1, -2)
    x = np.broadcast_to([1.0, 1.5, 0.0], (B, d)).copy()
    t = sb.time_grid(1.5, 600)
    v = sb.approx_verdicts(A, W0, x, t, kappa, fallback=True)
    und = ~v["decided"]
    assert und.sum() >= 1 and v["decided"].sum() >= 0.5 * B, und.sum()
    flow = sb.shape(t, sim.theory.ood_losses(sim.symmetric_flow(kappa * A[und], W0[und], t, "paper"), x[und]))
    np.testing.assert_array_equal(v["nonmonotone"][und], flow[0])
    np.testing.assert_allclose(v["bump"][und], flow[1], rtol=1e-9)
    np.testing.assert_array_equal(v["nonmonotone"][~und], v["verdicts"]["composite"][~und])


@pytest.mark.parametrize("family", ["positive", "gaussian"])
def test_the_criterion_and_the_bump_hold_in_each_init_family(family):
    """What the README quotes per init family, on 200 settings of one family (scale < 0.1): the composite form
    alone agrees with the flow on monotone vs not in >= 95% (positive 98.0%, gaussian 99.5%; the rule scores
    74.5% / 86%) and its bump is within 20% of the flow's in >= 80% of the non-monotone settings (93.8% of
    97, 96.4% of 28); the Riccati and first-order forms' bumps are not (< 50%: 29-36%)."""
    res = cf.agreement_study(200, seed=5, criterion="approx", families=(family,), scale=(1e-3, 0.1))
    row = cf.study_summary(res, below=1.0)[family]
    assert row["agreement"] >= 0.95 and row["agreement"] > row["rule_agreement"], row
    assert row["n_bumps"] >= 20 and row["bump_within_20"] >= 0.8, row
    assert row["riccati_bump_within_20"] < 0.5 and row["first_order_bump_within_20"] < 0.5, row


def test_the_bump_error_is_relative_to_the_flows_bump():
    rows = [
        {
            "predicted": True,
            "actual": "swing-by",
            "bump": 0.10,
            "predicted_bump": 0.12,
            "family": "f",
            "scale": 0.01,
        },
        {
            "predicted": True,
            "actual": "swing-by",
            "bump": 0.20,
            "predicted_bump": 0.10,
            "family": "f",
            "scale": 0.01,
        },
        {
            "predicted": True,
            "actual": "monotone",
            "bump": 0.0,
            "predicted_bump": 0.3,
            "family": "f",
            "scale": 0.01,
        },
        {
            "predicted": False,
            "actual": "swing-by",
            "bump": 0.3,
            "predicted_bump": 0.0,
            "family": "f",
            "scale": 0.01,
        },
    ]
    for r in rows:
        r.update(decided_by="closed form")
    np.testing.assert_allclose(cf._bump_errors(rows, "predicted", "predicted_bump"), [0.2, 0.5])
    study = cf.AgreementStudy(4, 0, "gradient-flow", "approx", False, 0.5, {}, rows)
    row = cf.study_summary(study, below=1.0)["f"]
    assert row["bump_median_error"] == pytest.approx(0.35) and row["bump_within_20"] == pytest.approx(0.5)


def test_the_composite_factor_is_capped_at_the_inverse_root_of_eps():
    from simtheory.theory._kernels import _correction

    eps = np.finfo(float).eps
    a = lambda *x: np.array(x, dtype=float)  # noqa: E731
    assert _correction(a(10.0), a(0.0), a(100.0), a(0.0))[0] == pytest.approx(eps**-0.5, rel=1e-12)  # capped
    assert _correction(a(1.0), a(0.5), a(2.0), a(1.0))[0] == pytest.approx(np.exp(0.25), rel=1e-14)
    assert _correction(a(0.5), a(1.0), a(1.0), a(2.0))[0] == pytest.approx(np.exp(0.25), rel=1e-14)


@pytest.mark.parametrize("convention", ["gradient-flow", "paper-code"])
def test_zero_rates_and_the_capped_factor_agree_between_the_loss_and_the_w_paths(convention):
    """sigma = 0 leaves a coordinate without a concept at rate 0 (the coupling's zero-rate branch,
    K = kappa w t: dropping kappa breaks the gradient-flow case), and the paper-code rates on a long horizon
    drive the composite factor into its cap: the OOD-loss path (symmetric_approx_ood_loss) and the W path
    (symmetric_approx, then ood_loss) still agree."""
    task = sim.SIMTask([1.0, 2.5], 0.0, d=3)  # a_3 = 0
    U0 = np.random.default_rng(8).random((3, 3)) * 0.05
    t = np.linspace(0.0, 400.0, 201)
    loss = sim.symmetric_approx_ood_loss(task, U0 @ U0.T, t, convention)
    W = sim.symmetric_approx(task, U0 @ U0.T, t, convention)
    np.testing.assert_allclose(loss, sim.ood_loss(task, W), rtol=1e-6, atol=1e-9 * loss[0])
    assert np.all(np.isfinite(loss)) and loss[-1] < 1e-3 * loss[0]
