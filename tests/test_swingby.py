import dataclasses

import numpy as np
import pytest

import simtheory as sim
from simtheory import swingby as sb
from validation import closed_form as cf

t = np.linspace(0, 10, 1001)


def test_turning_points_of_a_known_curve():
    loss = np.exp(-t) + 0.3 * np.exp(-((t - 4) ** 2))  # fall, bump at ~4, fall
    tps = sb.turning_points(t, loss)
    assert [p.kind for p in tps] == ["min", "max"]
    assert tps[1].time == pytest.approx(4.0, abs=0.05)
    res = sb.classify(t, loss)
    assert res.kind == "swing-by" and 0.15 < res.bump < 0.3


def test_wiggles_below_tolerance_are_ignored():
    loss = np.exp(-t) + 1e-6 * np.sin(50 * t)
    assert sb.classify(t, loss).kind == "monotone"
    assert sb.classify(t, np.exp(-t)).kind == "monotone"


def test_multiple_descent_and_failure():
    loss = np.exp(-t) + 0.2 * np.exp(-((t - 3) ** 2) * 4) + 0.2 * np.exp(-((t - 6) ** 2) * 4)
    assert sb.classify(t, loss).kind == "multiple descent"
    plateau = 0.5 + np.exp(-t)
    res = sb.classify(t, plateau)
    assert res.kind == "failure" and res.converged


def test_not_converged_is_flagged():
    res = sb.classify(t, np.exp(-t / 20))
    assert not res.converged and res.kind == "monotone"


@pytest.mark.parametrize(
    "bad, match", [(dict(loss=np.ones(3)), "same length"), (dict(rel_tol=2.0), "rel_tol")]
)
def test_bad_analysis_input(bad, match):
    kwargs = dict(t=t, loss=np.exp(-t)) | bad
    with pytest.raises(ValueError, match=match):
        if "rel_tol" in bad:
            sb.turning_points(**kwargs)
        else:
            sb.classify(**kwargs)


def test_one_layer_never_swings_by():
    """Theorem 4.1: from W0 = 0 the one-layer OOD loss is a sum of decaying exponentials."""
    task = sim.SIMTask([1.0, 3.0], 0.05, d=3)
    grid = sb.time_grid(50.0)
    c = sim.predict(task, np.zeros((3, 3)), grid, model="linear-flow")
    assert sb.classify(grid, c.ood_loss).kind == "monotone"


def test_symmetric_swing_by_and_the_training_loss_stays_monotone():
    """Figure 5 analogue (paper-code, seed 2): OOD loss non-monotone, training loss monotone."""
    task = sim.SIMTask([1.0, 1.5], 0.05, d=3)
    W0 = sim.symmetric_init(np.random.default_rng(2).random((3, 3)) / 5)
    grid = sb.time_grid(sb.horizon(task, W0, "paper-code"))
    c = sim.predict(task, W0, grid, convention="paper-code")
    res = sb.classify(grid, c.ood_loss)
    assert res.kind == "swing-by" and res.bump > 0.05
    assert np.all(np.diff(c.train_loss) <= 1e-12)  # gradient flow never increases its own loss
    # the minor entry rises then is suppressed, as the theory describes
    w12 = c.W[:, 0, 1]
    peak = np.argmax(w12)
    assert w12[peak] > 2 * W0[0, 1] and abs(w12[-1]) < 1e-3


def test_prediction_conditions():
    task = sim.SIMTask([1.0, 2.5], 0.05, d=2)  # a_2 / a_1 = 6.2
    small_pos = np.array([[0.01, 0.005], [0.005, 0.01]])
    assert sb.predict_swingby(task, small_pos).nonmonotone
    assert sb.predict_swingby(task, small_pos).pairs == ((0, 1),)
    assert not sb.predict_swingby(task, np.array([[0.01, -0.005], [-0.005, 0.01]])).nonmonotone  # sign
    assert not sb.predict_swingby(task, 0.5 * np.eye(2) + 0.1).nonmonotone  # large init
    close = sim.SIMTask([1.0, 1.2], 0.05, d=2)
    assert not sb.predict_swingby(close, small_pos).nonmonotone  # ratio 1.44 < 3
    fig5 = sim.SIMTask([1.0, 1.5], 0.05)  # a_2 / a_1 = 2.24: below 3 with A, 5.03 with A∘A
    assert not sb.predict_swingby(fig5, small_pos).nonmonotone
    assert sb.predict_swingby(fig5, small_pos, "paper-code").nonmonotone


def test_prediction_matches_the_rule_it_states_over_random_settings():
    res = cf.agreement_study(40, seed=1)
    assert res.n == 40 and sum(res.confusion.values()) == 40
    # the agreement is what the records say: predicted non-monotone == the solution's kind
    nonmono = np.array([r["actual"] in ("swing-by", "multiple descent") for r in res.records])
    pred = np.array([r["predicted"] for r in res.records])
    assert res.agreement == pytest.approx(np.mean(pred == nonmono))
    # and it beats the constant guess "monotone" and finds non-monotone settings (balanced accuracy)
    assert nonmono.any() and (~nonmono).any()
    assert res.agreement > np.mean(~nonmono)
    assert (np.mean(pred[nonmono]) + np.mean(~pred[~nonmono])) / 2 > 0.6
    again = cf.agreement_study(40, seed=1)
    assert again.agreement == res.agreement  # seeded


def test_turning_points_at_the_exact_extrema():
    # y = 1 + cos(t) exp(-t/10): y' = 0 where tan t = -1/10, i.e. t = k pi - atan(0.1)
    grid = np.linspace(0, 2.4 * np.pi, 2401)
    dt = grid[1] - grid[0]
    y = 1 + np.cos(grid) * np.exp(-grid / 10)
    tps = sb.turning_points(grid, y)
    assert [p.kind for p in tps] == ["min", "max"]
    for p, k in zip(tps, (1, 2)):
        exact = k * np.pi - np.arctan(0.1)
        assert abs(p.time - exact) <= dt  # within one grid step, for the minimum and the maximum
        assert p.value == pytest.approx(1 + np.cos(exact) * np.exp(-exact / 10), abs=1e-5)
        assert p.index == int(np.argmin(np.abs(grid - exact)))


def test_non_monotone_classifies_every_curve_of_a_batch():
    t = np.linspace(0, 10, 201)
    falling = np.exp(-t)
    bump = np.exp(-t) + 0.3 * np.exp(-((t - 5) ** 2))
    losses = np.stack([[falling, bump], [bump, bump]])  # (2, 2, T)
    got = sb.non_monotone(t, losses)
    assert got.shape == (2, 2)
    assert got.tolist() == [[False, True], [True, True]]
    assert got[0, 1] == sb.classify(t, bump).non_monotone


# --- predict_swingby: each criterion's parameters, paths and record ---------------------------------

TASK2 = sim.SIMTask([1.0, 2.5], 0.05, d=2)  # a = (0.5025, 3.1275): a_2 / a_1 = 6.22
SMALL = np.array([[0.01, 0.005], [0.005, 0.01]])


def test_the_rule_states_each_pair_with_its_numbers():
    p = sb.predict_swingby(TASK2, SMALL)
    a = TASK2.a
    assert p.reasons == (
        f"pair (weak 1, strong 2): w_ij(0) > 0: True; a_j/a_i = {a[1] / a[0]:.3g} > 3.0: True; "
        "small init: True",
    )
    assert p.method == p.criterion == "rule" and p.decided_by == "rule" and p.bump is None
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.nonmonotone = False


def test_a_minor_entry_of_zero_does_not_help():
    p = sb.predict_swingby(TASK2, np.diag([0.01, 0.01]))
    assert not p.nonmonotone and "w_ij(0) > 0: False" in p.reasons[0]


def test_each_criterions_parameters_are_checked():
    with pytest.raises(ValueError, match="init_scale must be a finite number > 0"):
        sb.predict_swingby(TASK2, SMALL, init_scale=0.0)
    with pytest.raises(ValueError, match="rel_tol"):
        sb.predict_swingby(TASK2, SMALL, criterion="approx", rel_tol=0.0)
    with pytest.raises(ValueError, match="rel_tol"):
        sb.predict_swingby(TASK2, SMALL, criterion="flow", rel_tol=1.5)


def test_the_closed_form_criterion_decides_alone_by_default_and_checks_itself_when_asked():
    alone = sb.predict_swingby(TASK2, SMALL, criterion="approx")
    assert alone.decided_by == "closed form" and alone.nonmonotone and alone.turning_points
    assert alone.reasons == ("composite form: non-monotone", "decided by the closed form")
    checked = sb.predict_swingby(TASK2, SMALL, criterion="approx", fallback=True)
    assert checked.reasons[:2] == ("composite form: non-monotone", "first-order form: non-monotone")
    assert checked.decided_by == "closed form"  # the two forms agree: no ODE
    assert checked.bump == alone.bump


def test_the_flow_criterion_reads_the_predicted_flow_up_to_t_max():
    flow = sb.predict_swingby(TASK2, SMALL, criterion="flow")
    assert flow.nonmonotone and flow.decided_by == "flow" and flow.criterion == "flow"
    bump_at = flow.turning_points[-1].time
    early = sb.predict_swingby(TASK2, SMALL, criterion="flow", t_max=0.5 * flow.turning_points[0].time)
    assert not early.nonmonotone and bump_at > 0  # the horizon ends before the loss turns


@pytest.mark.parametrize(
    "model, W0", [("linear", SMALL), ("untied", (SMALL, SMALL)), ("deep", [SMALL, SMALL])]
)
def test_models_other_than_the_symmetric_one_are_read_by_their_flow(model, W0):
    p = sb.predict_swingby(TASK2, W0, model=model)
    assert p.criterion == "flow" and p.decided_by == "flow"
    with pytest.raises(ValueError, match="is the symmetric model's"):
        sb.predict_swingby(TASK2, W0, model=model, criterion="rule")
    assert not sb.predict_swingby(TASK2, SMALL, model="linear").nonmonotone  # Theorem 4.1: never


def test_the_model_name_is_compared_by_value():
    name = "".join(["sym", "metric"])  # equal to "symmetric", another object (as read from a file)
    assert sb.predict_swingby(TASK2, SMALL, model=name).criterion == "rule"


def test_the_method_keyword_warns_at_the_callers_line():
    with pytest.warns(DeprecationWarning, match="now criterion") as rec:
        p = sb.predict_swingby(TASK2, SMALL, method="rule")
    assert rec[0].filename == __file__ and p.criterion == "rule"


def test_where_the_closed_forms_disagree_the_flow_decides():
    # the composite form calls this curve non-monotone, the first-order form monotone
    task = sim.SIMTask([1.86, 2.84], 0.41, d=2)
    W0 = np.array([[0.05, 0.0267], [0.0267, 0.0148]])
    p = sb.predict_swingby(task, W0, criterion="approx", fallback=True)
    assert p.reasons[:2] == ("composite form: non-monotone", "first-order form: monotone")
    assert p.decided_by == "ODE" and p.turning_points == ()
    assert p.nonmonotone == sb.predict_swingby(task, W0, criterion="flow").nonmonotone


def test_the_flow_criterion_uses_its_documented_defaults_and_refuses_a_horizon_of_0():
    task = sim.SIMTask([1.0, 3.0], 0.05, d=2)
    W0 = np.array([[0.01, 0.004], [0.004, 0.01]])
    default = sb.predict_swingby(task, W0, criterion="flow")
    explicit = sb.predict_swingby(task, W0, criterion="flow", rel_tol=1e-3)
    assert default.nonmonotone == explicit.nonmonotone and default.bump == explicit.bump
    for bad in (0.0, -1.0):
        with pytest.raises(ValueError, match="t_max must be"):
            sb.predict_swingby(task, W0, criterion="flow", t_max=bad)


def test_the_rules_small_init_is_strictly_below_init_scale():
    task = sim.SIMTask([1.0, 3.0], 0.05, d=2)
    W0 = np.array([[0.01, 0.004], [0.004, 0.01]])
    top = float(np.linalg.eigvalsh(W0).max())
    assert sb.predict_swingby(task, W0, criterion="rule", init_scale=np.nextafter(top, 1)).nonmonotone
    at = sb.predict_swingby(task, W0, criterion="rule", init_scale=top)
    assert not at.nonmonotone and any("small init: False" in r for r in at.reasons)


def test_a_model_without_a_flow_is_refused_naming_those_with_one():
    from simtheory import models

    task = sim.SIMTask([1.0, 3.0], 0.05, d=2)
    with pytest.raises(ValueError, match="has no flow to predict its OOD loss from") as err:
        sb.predict_swingby(task, np.eye(2) * 0.01, criterion="flow", model="mlp")
    listed = str(err.value).split("covers the models with one: ")[1]
    assert listed == str(models.names(predictable=True)) and "mlp" not in listed
