import csv
import json

import numpy as np
import pytest

import simtheory as sim
from simtheory.curves import atomic_write_text


@pytest.fixture
def curves():
    task = sim.SIMTask([1.0, 1.5], 0.05, d=3)
    W0 = sim.symmetric_init(np.random.default_rng(0).random((3, 3)) / 5)
    return sim.predict(task, W0, np.linspace(0, 10, 21), convention="paper-code")


def test_curves_are_frozen_and_consistent(curves):
    with pytest.raises(ValueError):
        curves.W[0, 0, 0] = 1.0
    with pytest.raises(AttributeError):
        curves.model = "x"
    # independent answers: the OOD loss by hand at x = sum_p mu_p e_p, the training loss by Monte Carlo
    x = np.zeros(curves.task.d)
    x[: curves.task.s] = curves.task.mu
    np.testing.assert_allclose(curves.ood_loss, 0.5 * np.sum((curves.W @ x - x) ** 2, axis=-1), rtol=1e-12)
    X = curves.task.sample(100_000, seed=3).inputs
    W = curves.W[-1]
    mc = 0.5 * np.mean(np.sum((X @ W.T - X) ** 2, axis=-1))
    assert curves.train_loss[-1] == pytest.approx(mc, rel=0.02)
    assert "symmetric.V" in curves.latex and "\\" in curves.latex["symmetric.logistic"]


def test_npz_round_trip_with_sidecar(curves, tmp_path):
    path, side = curves.to_npz(tmp_path / "c.npz")
    meta = json.loads(side.read_text())
    assert meta["convention"] == "paper-code" and meta["task"]["mu"] == [1.0, 1.5]
    assert "numpy" in meta["provenance"]
    back = sim.Curves.load(path)
    np.testing.assert_array_equal(back.W, curves.W)
    np.testing.assert_array_equal(back.ood_loss, curves.ood_loss)
    assert back.task == curves.task and back.convention == curves.convention


def test_csv_has_one_row_per_time_at_full_precision(curves, tmp_path):
    p = curves.to_csv(tmp_path / "c.csv")
    rows = list(csv.DictReader(p.open()))
    assert len(rows) == curves.times.size
    assert float(rows[7]["ood_loss"]) == curves.ood_loss[7]
    assert float(rows[7]["w_12"]) == curves.W[7, 0, 1]


def test_batched_curves_export(tmp_path):
    task = sim.SIMTask([1.0, 2.0], 0.1)
    W0 = np.stack([np.diag([0.01, 0.02]), np.diag([0.1, 0.001])])
    c = sim.predict(task, W0, [0.0, 1.0, 2.0])
    assert c.batch_shape == (2,)
    rows = list(csv.DictReader(c.to_csv(tmp_path / "b.csv").open()))
    assert len(rows) == 6 and {r["setting"] for r in rows} == {"0", "1"}


def test_predict_rejects_bad_model_and_convention():
    task = sim.SIMTask([1.0], 0.1)
    with pytest.raises(ValueError, match="model must be one of"):
        sim.predict(task, np.eye(1), [1.0], model="resnet")
    with pytest.raises(ValueError, match="'mlp' has no gradient-flow prediction"):
        sim.predict(task, np.eye(1), [1.0], model="mlp")
    with pytest.raises(ValueError, match="convention must be one of .*symmetric model only"):
        sim.predict(task, np.eye(1), [1.0], model="linear-flow", convention="paper")
    with pytest.raises(ValueError, match="pair"):
        sim.predict(task, np.eye(1), [1.0], model="untied")


def test_untied_and_linear_predict(tmp_path):
    task = sim.SIMTask([1.0, 2.0], 0.1)
    c = sim.predict(task, (0.1 * np.eye(2), 0.1 * np.eye(2)), [0.0, 50.0], model="untied")
    np.testing.assert_allclose(c.W[-1], np.eye(2), atol=1e-8)
    lin = sim.predict(task, np.zeros((2, 2)), [0.0, 1.0], model="linear-flow")
    np.testing.assert_allclose(lin.ood_loss[0], 0.5 * (1 + 4))


def test_every_predictable_model_of_the_registry_predicts_and_deep_with_two_factors_is_untied():
    from simtheory import models

    task = sim.SIMTask([1.0, 2.0], 0.1)
    t = [0.0, 1.0, 5.0]
    W1, W2 = 0.1 * np.eye(2) + 0.02, 0.1 * np.eye(2)
    deep = sim.predict(task, [W1, W2], t, model="deep")
    untied = sim.predict(task, (W1, W2), t, model="untied")
    np.testing.assert_allclose(deep.W, untied.W, rtol=1e-7, atol=1e-10)
    assert set(models.names(predictable=True)) == {"linear", "symmetric", "untied", "deep"}
    from simtheory.simulate import MODELS

    assert set(MODELS) == {"linear", "symmetric", "untied", "deep", "mlp"}


def test_atomic_write_leaves_no_partial_file(tmp_path, monkeypatch):
    target = tmp_path / "out.txt"
    atomic_write_text(target, "old")

    def boom(*_):
        raise OSError("disk full")

    monkeypatch.setattr("os.replace", boom)
    with pytest.raises(OSError):
        atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_loss_at_agrees_with_composition_losses_for_every_model():
    from simtheory.simulate import Init, Model, train

    task = sim.SIMTask([1.0, 2.0], 0.1)
    mlp = train(
        task, Model("mlp", (8,), bias=True), Init("default"), lr=0.05, steps=20, seeds=[0], n=20
    ).curves
    comps = task.compositions()
    np.testing.assert_allclose(mlp.loss_at(comps), mlp.composition_losses())
    np.testing.assert_allclose(mlp.loss_at(np.ones(2)), mlp.ood_loss)
    # the Jacobian at the OOD point is not the MLP's map: W x(v) misses its loss at the other compositions
    assert not np.allclose(sim.ood_loss(task, mlp.W, comps), mlp.composition_losses())
    with pytest.raises(ValueError, match="binary"):
        mlp.loss_at([0.5, 0.5])
    lin = sim.predict(task, 0.1 * np.eye(2), [0.0, 1.0, 3.0], model="linear")
    np.testing.assert_allclose(lin.loss_at(comps), sim.ood_loss(task, lin.W, comps))
