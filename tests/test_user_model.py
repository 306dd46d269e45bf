"""A model defined outside the package: a derivation's vector field, integrated by the package's solvers,
registered and predicted like a built-in model."""

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


def test_the_command_line_predicts_a_model_registered_by_a_users_module(tmp_path, monkeypatch, capsys):
    from pathlib import Path

    from simtheory.cli import main

    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    out = tmp_path / "wd.npz"
    argv = ["predict", "--mu", "1", "1.5", "--d", "3", "--t-max", "8", "--n-times", "9", "--out", str(out)]
    try:
        assert main([*argv, "--model-module", "user_models", "--model", "cli-linear-wd"]) == 0
        curves = sim.Curves.load(out)
        task = sim.SIMTask([1.0, 1.5], 0.05, d=3)
        U0 = models.initial_state("linear", 3)  # the same seeded start the command line built
        expected = sim.linear_flow(task, U0, curves.times, weight_decay=0.3)
        np.testing.assert_allclose(curves.W, expected, rtol=1e-7, atol=1e-9)
        assert curves.model == "cli-linear-wd"
    finally:
        models._REGISTRY.pop("cli-linear-wd", None)
    capsys.readouterr()
    assert main([*argv, "--model-module", "no_such_module_here", "--model", "x"]) == 2
    assert "--model-module 'no_such_module_here' cannot be imported" in capsys.readouterr().err
    assert main([*argv, "--model-module", "os; rm", "--model", "x"]) == 2
    assert "dotted module name" in capsys.readouterr().err
    assert main([*argv, "--model", "nonexistent"]) == 2
    assert "model must be one of" in capsys.readouterr().err
    assert not out.with_name("x.npz").exists()
