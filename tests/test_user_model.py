"""A model defined outside the package: a derivation's vector field, integrated by the package's solvers,
registered and predicted like a built-in model."""

import dataclasses

import numpy as np
import pytest

import derivations.one_layer_weight_decay as wd_derivation
import simtheory as sim
from simtheory import models
from simtheory.symbolic import numeric_field


@pytest.fixture
def weight_decay_model():
    field = numeric_field(wd_derivation.flow, 3, params={"lambda": 0.3})

    def flow(task, W0, t, *, convention="gradient-flow", **solver):
        return sim.field_flow(field, task, W0, t, **solver)

    spec = models.register(
        models.ModelSpec(
            "test-linear-wd", "one layer with weight decay 0.3 (a user's model)", flow, lambda f: f[0]
        )
    )
    yield spec
    models._REGISTRY.pop(spec.name)


def test_a_derivations_field_integrated_generically_equals_its_closed_form():
    rng = np.random.default_rng(0)
    A = sim.symmetric_init(rng.normal(size=(4, 3, 3))) / 3 + 0.1 * np.eye(3)  # not diagonal
    W0 = rng.normal(0, 0.3, (4, 3, 3))
    t = np.array([0.0, 0.2, 1.0, 5.0, 30.0])
    field = numeric_field(wd_derivation.flow, 3, params={"lambda": 0.3})
    with sim.solver_log() as log:
        W = sim.field_flow(field, A, W0, t)
    assert log[0].method == "LSODA" and log[0].systems == 4
    np.testing.assert_allclose(W, sim.linear_flow(A, W0, t, weight_decay=0.3), rtol=1e-7, atol=1e-9)
    # and the field is the derivation's: lambda = 0 is the plain one-layer flow
    plain = numeric_field(wd_derivation.flow, 3, params={"lambda": 0.0})
    np.testing.assert_allclose(
        sim.field_flow(plain, A, W0, t), sim.linear_flow(A, W0, t), rtol=1e-7, atol=1e-9
    )


def test_a_registered_user_model_is_predicted_like_a_built_in_one(weight_decay_model):
    task = sim.SIMTask([1.0, 1.5], 0.05, d=3)
    W0 = np.random.default_rng(1).normal(0, 0.1, (3, 3))
    t = np.linspace(0, 10, 21)
    curves = sim.predict(task, W0, t, model="test-linear-wd")
    np.testing.assert_allclose(curves.W, sim.linear_flow(task, W0, t, weight_decay=0.3), rtol=1e-7, atol=1e-9)
    assert curves.model == "test-linear-wd" and curves.meta["solver"][0]["method"] == "LSODA"
    np.testing.assert_allclose(curves.ood_loss, sim.ood_loss(task, curves.W))
    assert "test-linear-wd" in models.names(predictable=True)


def test_user_fields_bad_input():
    with pytest.raises(ValueError, match=r"missing \['lambda'\]"):
        numeric_field(wd_derivation.flow, 3)
    with pytest.raises(ValueError, match=r"unexpected \['mu'\]"):
        numeric_field(wd_derivation.flow, 3, params={"lambda": 0.1, "mu": 1.0})
    with pytest.raises(ValueError, match="shape"):
        sim.field_flow(lambda W, A: W[:, 0], np.eye(3), np.zeros((3, 3)), [1.0])
    with pytest.raises(ValueError, match="field must be a function"):
        sim.field_flow("W", np.eye(3), np.zeros((3, 3)), [1.0])


@pytest.fixture
def user_module(monkeypatch):
    """tests/user_models.py imported (or re-imported) as a user's own module: it registers its models, which
    are removed again afterwards."""
    import importlib
    import sys
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    module = importlib.reload(sys.modules["user_models"]) if "user_models" in sys.modules else None
    module = module or importlib.import_module("user_models")
    yield module
    for name in ("cli-linear-wd", "symmetric-wd"):
        models._REGISTRY.pop(name, None)
    sys.modules.pop("user_models", None)  # imported again registers them again (a later test may need them)


def test_the_command_line_predicts_a_model_registered_by_a_users_module(user_module, tmp_path, capsys):
    import sys

    from simtheory.cli import main

    # the command line must register the model by importing the module itself
    models._REGISTRY.pop("cli-linear-wd")
    del sys.modules["user_models"]
    out = tmp_path / "wd.npz"
    argv = ["predict", "--mu", "1", "1.5", "--d", "3", "--t-max", "8", "--n-times", "9", "--out", str(out)]
    assert main([*argv, "--model-module", "user_models", "--model", "cli-linear-wd"]) == 0
    curves = sim.Curves.load(out)
    task = sim.SIMTask([1.0, 1.5], 0.05, d=3)
    U0 = models.initial_state("linear", 3)  # the same seeded start the command line built
    expected = sim.linear_flow(task, U0, curves.times, weight_decay=0.3)
    np.testing.assert_allclose(curves.W, expected, rtol=1e-7, atol=1e-9)
    assert curves.model == "cli-linear-wd"
    capsys.readouterr()
    assert main([*argv, "--model-module", "no_such_module_here", "--model", "x"]) == 2
    assert "--model-module 'no_such_module_here' cannot be imported" in capsys.readouterr().err
    assert main([*argv, "--model-module", "os; rm", "--model", "x"]) == 2
    assert "dotted module name" in capsys.readouterr().err
    assert main([*argv, "--model", "nonexistent"]) == 2
    assert "model must be one of" in capsys.readouterr().err
    assert not out.with_name("x.npz").exists()


# --- a model defined once in a user's module: derivation, field, closed form, network ---------------------

TASK = sim.SIMTask([1.0, 1.6], 0.1, d=3)


def _U0(seed=3, scale=0.3):
    return np.abs(
        np.random.default_rng(seed).normal(0, scale, (3, 3))
    )  # W0 = U0 U0^T does not commute with A


def test_the_users_derivation_verifies_and_its_field_matches_its_closed_form(user_module):
    report = user_module.DERIVATION.verify()
    assert report.passed, report
    # the generic solver on the derived field vs the derivation's closed form (diagonal start)
    diag = np.array([0.01, 0.2, 0.6])
    t = np.array([0.0, 0.5, 2.0, 6.0, 40.0])
    W = sim.predict(TASK, np.diag(diag), t, model="symmetric-wd").W
    closed = sim.compiled(user_module.DERIVATION, "diagonal")
    a = TASK.a[None, :]
    expected = closed(a=a, t=t[:, None], w0=diag[None, :], **{"lambda": user_module.LAM})
    np.testing.assert_allclose(np.diagonal(W, axis1=-2, axis2=-1), expected, rtol=1e-7, atol=1e-10)
    fixed = sim.compiled(user_module.DERIVATION, "fixed_point")(a=TASK.a, **{"lambda": user_module.LAM})
    np.testing.assert_allclose(np.diag(W[-1])[: TASK.s], fixed[: TASK.s], rtol=1e-6)  # 1 - lambda/(2a)


def test_a_users_model_predicts_its_own_loss_and_latex(user_module):
    U0 = _U0()
    t = np.linspace(0, 8, 17)
    curves = sim.predict(TASK, sim.symmetric_init(U0), t, model="symmetric-wd")
    plain = sim.predict(TASK, sim.symmetric_init(U0), t, model="symmetric")
    assert np.abs(curves.W[-1] - plain.W[-1]).max() > 0.05  # the weight decay changes the flow
    penalty = 0.5 * user_module.LAM * np.trace(curves.W, axis1=-2, axis2=-1)
    np.testing.assert_allclose(curves.train_loss, sim.train_loss(TASK, curves.W) + penalty)
    assert set(curves.latex) == {"symmetric_weight_decay.diagonal", "symmetric_weight_decay.fixed_point"}
    assert "lambda" in curves.latex["symmetric_weight_decay.fixed_point"]


@pytest.mark.parametrize("loss", ["sim", "mse"])
def test_gd_on_a_users_network_approaches_its_flow_in_proportion_to_lr(user_module, loss):
    """simulate.train builds the user's network from the registry (with its weight decay, scaled to the loss
    convention), flow_limit integrates the user's field from each member's start: the gap is O(lr)."""
    from simtheory.simulate import Init, Model, flow_limit, train

    U0s = np.stack([_U0(seed) for seed in (3, 4)])
    t_end = 3.0
    gaps = []
    for lr in (0.04, 0.02):
        factor = 1.0 if loss == "sim" else 2.0 / TASK.d
        steps = int(round(t_end / (lr * factor)))
        run = train(
            TASK,
            Model("symmetric-wd"),
            Init("given", arrays=(U0s,)),
            lr=lr,
            steps=steps,
            record=[0, steps],
            seeds=(0, 1),
            n=40,
            loss=loss,
        )
        assert run.curves.model == "gd-symmetric-wd" and run.curves.meta["model_penalty"] == "u_penalty"
        flow = flow_limit(run)
        gaps.append(np.abs(run.curves.W[:, -1] - flow[:, -1]).max())
        # the recorded training loss holds the penalty (in flow units, whatever the loss convention)
        U = run.params[0]
        data = sim.train_loss(run.A_n[:, None], run.curves.W[:, -1:])[:, 0]
        np.testing.assert_allclose(
            run.curves.train_loss[:, -1], data + 0.5 * user_module.LAM * (U**2).sum((1, 2))
        )
    assert 1.8 < gaps[0] / gaps[1] < 2.2, gaps  # error proportional to lr
    assert gaps[1] < 0.02


def test_sim_runs_and_compare_curves_on_a_users_model(user_module, sim_runs, compare_curves):
    from simtheory.simulate import Init, Model, flow_limit

    U0 = _U0()
    run = sim_runs(TASK, Model("symmetric-wd"), Init("given", arrays=(U0,)), lr=0.005, steps=1200, n=40)
    flow = flow_limit(run)
    compare_curves(run.curves.W, flow, rtol=0, atol=0.01)
    # the same comparison against the model without weight decay fails, with the member and time named
    plain = sim.symmetric_flow(run.A_n, sim.symmetric_init(U0)[None], run.curves.times)
    with pytest.raises(AssertionError, match="comparison figure"):
        compare_curves(run.curves.W, plain, rtol=0, atol=0.01)


def test_a_network_without_a_jacobian_gets_it_by_autograd(user_module):
    """A user's network may give only its forward pass: the recorded Jacobian (autograd) equals the
    built-in MLP's exact one, member by member."""
    from simtheory.simulate import Init, Model, train

    builtin = models.get("mlp").network
    spec = models.register(
        models.ModelSpec(
            "test-mlp-autograd",
            "mlp without a Jacobian",
            network=models.Network(builtin.shapes, builtin.forward, n_widths=(1, None), bias=True),
        )
    )
    try:
        kw = dict(lr=0.05, steps=20, record=[0, 10, 20], seeds=(0, 1), n=10)
        ours = train(TASK, Model(spec.name, (5,), bias=True), Init("default"), **kw)
        ref = train(TASK, Model("mlp", (5,), bias=True), Init("default"), **kw)
        np.testing.assert_allclose(ours.curves.W, ref.curves.W, rtol=1e-12, atol=1e-14)
        assert np.abs(ref.curves.W).max() > 0.1
    finally:
        models._REGISTRY.pop(spec.name)


def test_predict_and_export_a_users_model_from_the_command_line(user_module, tmp_path):
    from simtheory.cli import main

    out = tmp_path / "run" / "symwd.npz"
    argv = ["predict", "--mu", "1", "1.6", "--d", "3", "--t-max", "6", "--n-times", "7", "--out", str(out)]
    assert main([*argv, "--model-module", "user_models", "--model", "symmetric-wd"]) == 0
    assert main(["export", str(out.parent), "--out", str(tmp_path / "export")]) == 0
    curves = sim.Curves.load(out)
    W0 = models.initial_state("symmetric", 3)
    np.testing.assert_allclose(curves.W, sim.predict(curves.task, W0, curves.times, model="symmetric-wd").W)
    import csv

    with open(tmp_path / "export" / "symwd_tidy.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["quantity"] == "train_loss"]
    np.testing.assert_allclose([float(r["value"]) for r in rows], curves.train_loss)  # penalty included
    dat = np.loadtxt(tmp_path / "export" / "symwd.dat", skiprows=1)
    np.testing.assert_allclose(dat[:, 2], curves.ood_loss)
    assert dat.shape[0] == 7 and (tmp_path / "export" / "derivations.tex").exists()


def test_flow_limit_names_a_wrong_init_from_factors(user_module):
    from simtheory.simulate import Init, Model, flow_limit, train

    spec = models.get("symmetric-wd")
    models.register(dataclasses.replace(spec, init_from_factors=sim.symmetric_init))  # takes U, not [U]
    try:
        run = train(TASK, Model("symmetric-wd"), Init("given", arrays=(_U0(),)), lr=0.01, steps=5)
        with pytest.raises(ValueError, match="check its init_from_factors"):
            flow_limit(run)
    finally:
        models.register(spec)


def test_user_model_specs_are_checked():
    with pytest.raises(ValueError, match="flow must be a function"):
        models.ModelSpec("x", "y", flow="W")
    with pytest.raises(ValueError, match="init_from_factors must be given"):
        models.ModelSpec("x", "y", lambda *a, **k: None, network=models.get("linear").network)
    with pytest.raises(ValueError, match="network must be"):
        models.ModelSpec("x", "y", network="mlp")
    with pytest.raises(ValueError, match="name must be"):
        models.ModelSpec(" x", "y")
    with pytest.raises(ValueError, match="shapes and product must be functions"):
        models.linear_network([(3, 3)], None)


def test_curves_need_sorted_unique_times():
    with pytest.raises(ValueError, match="t must be sorted and unique for curves"):
        sim.predict(sim.SIMTask([1.0, 2.0], 0.05, d=2), 0.01 * np.eye(2), [0.0, 2.0, 1.0])


def test_a_flow_of_the_wrong_shape_is_named():
    from simtheory import models

    models.register(
        models.ModelSpec("my-flat-flow", "returns W without the time axis", lambda task, W0, t, **k: W0)
    )
    try:
        with pytest.raises(ValueError, match="my-flat-flow model's flow returned shape \\(2, 2\\)"):
            sim.predict(
                sim.SIMTask([1.0, 2.0], 0.05, d=2), 0.01 * np.eye(2), [0.0, 1.0], model="my-flat-flow"
            )
    finally:
        models._REGISTRY.pop("my-flat-flow")


def test_parameter_flow_keeps_a_batch_and_its_conservation_law():
    """The diagonal network's parameter flow from a batch of starts: u^2 - v^2 is conserved (the derived
    law) and each member equals its own solve."""
    import sympy as sp

    from simtheory.symbolic import descent, identity_loss, numeric_parameter_field

    def field(P, A):
        u, v = P
        W = lambda a, b: sp.diag(*[a[i, 0] * b[i, 0] for i in range(2)])  # noqa: E731
        return descent(lambda a, b: identity_loss(W(a, b), A), u, v)

    f = numeric_parameter_field(field, [(2, 1), (2, 1)], 2)
    product = lambda ps: np.einsum("bi,ij->bij", (ps[0] * ps[1])[..., 0], np.eye(2))  # noqa: E731
    rng = np.random.default_rng(0)
    u0, v0 = rng.uniform(0.05, 0.4, (3, 2, 1)), rng.uniform(0.05, 0.4, (3, 2, 1))
    task, t = sim.SIMTask([1.0, 2.0], 0.1, d=2), np.linspace(0, 4, 9)
    sol = sim.theory.parameter_flow(f, product, task, [u0, v0], t)
    assert sol.params[0].shape == (3, 9, 2, 1) and sol.W.shape == (3, 9, 2, 2)
    law = sol.params[0] ** 2 - sol.params[1] ** 2
    np.testing.assert_allclose(law, np.broadcast_to(law[:, :1], law.shape), atol=1e-8)
    one = sim.theory.parameter_flow(f, product, task, [u0[1], v0[1]], t)
    np.testing.assert_allclose(one.W, sol.W[1], atol=1e-9)
    with pytest.raises(ValueError, match="product\\(params\\) must return"):
        sim.theory.parameter_flow(f, lambda ps: ps[0], task, [u0[0], v0[0]], t)


def test_a_cell_names_its_arrays_dimensions_and_shares_a_time_axis(tmp_path):
    from simtheory import sweep

    res = sweep.run(_dims_cell, sweep.grid(a=[1.0, 2.0]), tmp_path / "s")
    ds = res.to_xarray()
    assert ds["loss"].dims == ("a", "t") and list(ds["t"].values) == [0.0, 1.0, 2.0]
    np.testing.assert_allclose(ds["loss"].sel(a=2.0).values, [0.0, 2.0, 4.0])


def _dims_cell(a: float):
    from simtheory import sweep

    t = np.arange(3.0)
    return sweep.Arrays({"t": t, "loss": a * t}, dims={"t": ("t",), "loss": ("t",)})


def test_compare_curves_broadcasts_one_prediction_over_an_ensemble():
    from simtheory.testing import assert_curves_close

    W = np.zeros((4, 2, 2))
    assert_curves_close(np.stack([W, W + 1e-14]), W)  # (E, T, d, d) against (T, d, d)
    with pytest.raises(AssertionError, match="select one member"):
        assert_curves_close(W, np.stack([W, W]))
