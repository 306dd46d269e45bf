import csv
import json
import re

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


@pytest.fixture
def batched3():
    """Curves on a task with three concepts in d = 4, over a (2, 2) batch of settings."""
    task = sim.SIMTask([1.0, 1.5, 2.0], 0.1, d=4)
    rng = np.random.default_rng(1)
    W0 = np.stack([[sim.symmetric_init(rng.random((4, 4)) / 10) for _ in range(2)] for _ in range(2)])
    return sim.predict(task, W0, np.linspace(0, 6, 13))


def test_xarray_export_names_every_axis_with_its_coordinates_and_round_trips(batched3):
    ds = batched3.to_xarray()
    assert ds["W"].dims == ("setting_0", "setting_1", "time", "i", "j")
    assert ds["ood_loss"].dims == ("setting_0", "setting_1", "time")
    assert list(ds["i"].values) == [1, 2, 3, 4] and list(ds["j"].values) == [1, 2, 3, 4]
    assert list(ds["composition"].values) == list(range(8)) and list(ds["concept"].values) == [1, 2, 3]
    np.testing.assert_array_equal(ds["composition_v"].values, batched3.task.compositions())
    back = sim.Curves.from_xarray(ds)
    for name in ("W", "ood_loss", "train_loss", "ood_output", "composition_outputs"):
        np.testing.assert_array_equal(getattr(back, name), getattr(batched3, name))
    assert back.task == batched3.task and back.batch_shape == (2, 2)
    one = batched3.select((0, 1))
    assert one.to_xarray()["ood_loss"].dims == ("time",)
    np.testing.assert_array_equal(sim.Curves.from_xarray(one.to_xarray()).W, one.W)
    with pytest.raises(ValueError, match="not a Dataset written by Curves.to_xarray"):
        sim.Curves.from_xarray(ds.assign_attrs(simtheory_curves=0))
    with pytest.raises(ValueError, match=r"ds\['ood_loss'\] must end in dimensions \('time',\)"):
        sim.Curves.from_xarray(ds.assign(ood_loss=ds["ood_loss"].transpose("time", ...)))


def test_pandas_export_has_one_column_per_batch_axis(batched3):
    df = batched3.to_pandas()
    assert list(df.columns) == ["setting_0", "setting_1", "t", "quantity", "value"]
    row = df[(df.setting_0 == 1) & (df.setting_1 == 0) & (df.quantity == "ood_loss")]
    np.testing.assert_array_equal(row["value"], batched3.ood_loss[1, 0])
    single = batched3.select((1, 1)).to_pandas()
    assert list(single.columns) == ["t", "quantity", "value"]
    flat = sim.predict(batched3.task, batched3.W[0, :, 0], [0.0, 1.0])
    assert list(flat.to_pandas().columns) == ["setting", "t", "quantity", "value"]


def test_pgfplots_table_suffixes_columns_only_for_several_settings(batched3, tmp_path):
    one = batched3.select((0, 0))
    text = one.to_dat(tmp_path / "one.dat").read_text()
    assert text.endswith("\n") and not text.endswith("\n\n")
    lines = text.splitlines()
    header = lines[0].split()
    assert header[:3] == ["t", "train_loss", "ood_loss"] and len(lines) == 1 + one.times.size
    assert float(lines[5].split()[header.index("ood_loss")]) == one.ood_loss[4]
    pair = sim.predict(batched3.task, batched3.W[0, :, 0], [0.0, 1.0])  # two settings
    header2 = pair.to_dat(tmp_path / "two.dat").read_text().splitlines()[0].split()
    assert header2[:5] == ["t", "train_loss_s0", "train_loss_s1", "ood_loss_s0", "ood_loss_s1"]


def test_learning_times_read_each_concepts_own_one_hot_composition(batched3):
    """Concept p is learned when the output on its one-hot composition e_p (p-th coordinate) reaches
    level * mu_p; computed here from W directly."""
    flat = sim.predict(batched3.task, batched3.W[:, :, 0].reshape(4, 4, 4), np.linspace(0, 6, 61))
    got = flat.learning_times(0.9)
    mu = flat.task.mu
    for p in range(3):
        out = flat.W[..., p, p] * mu[p]  # f(mu_p e_p)_p = W_pp mu_p
        for b in range(4):
            above = np.flatnonzero(out[b] >= 0.9 * mu[p])
            want = flat.times[above[0]] if above.size else np.inf
            if np.isfinite(want) and above[0] > 0:  # interpolated between the two samples around it
                assert flat.times[above[0] - 1] <= got[b, p] <= want
            else:
                assert got[b, p] == want


def test_batched_curves_load_back_from_npz(batched3, tmp_path):
    path, _ = batched3.to_npz(tmp_path / "b.npz")
    back = sim.Curves.load(path)
    assert back.batch_shape == (2, 2)
    np.testing.assert_array_equal(back.composition_outputs, batched3.composition_outputs)


def test_unsorted_times_name_the_first_step_out_of_order():
    task = sim.SIMTask([1.0, 2.0], 0.1)
    for t, where in (
        ([0.0, 1.0, 2.0, 2.0, 3.0], "t[2] = 2.0 then 2.0"),
        ([0.0, 2.0, 1.0], "t[1] = 2.0 then 1.0"),
    ):
        with pytest.raises(
            ValueError, match=re.escape(f"t must be sorted and unique for curves, got {where}")
        ):
            sim.predict(task, np.eye(2) * 0.1, t)


def test_a_models_penalty_is_added_to_the_training_loss_and_its_shape_checked(monkeypatch):
    import dataclasses

    from simtheory import models

    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    base = models.get("symmetric")
    task = sim.SIMTask([1.0, 2.0], 0.1)
    W0 = np.stack([np.eye(2) * 0.1, np.eye(2) * 0.2])
    models.register(
        dataclasses.replace(base, name="sym-l1", penalty_of_W=lambda W: np.abs(W).sum(axis=(-2, -1)))
    )
    c, plain = sim.predict(task, W0, [0.0, 1.0], model="sym-l1"), sim.predict(task, W0, [0.0, 1.0])
    np.testing.assert_allclose(c.train_loss - plain.train_loss, np.abs(plain.W).sum(axis=(-2, -1)))
    models.register(dataclasses.replace(base, name="sym-bad", penalty_of_W=lambda W: np.zeros(3)))
    with pytest.raises(
        ValueError, match=r"penalty_of_W must map W \(2, 2, 2, 2\) to shape \(2, 2\), got \(3,\)"
    ):
        sim.predict(task, W0, [0.0, 1.0], model="sym-bad")


def test_csv_columns_are_named_from_1_as_in_the_paper(curves, tmp_path):
    header = next(csv.reader(curves.to_csv(tmp_path / "c.csv").open()))
    d = curves.task.d
    want = ["setting", "t", "train_loss", "ood_loss", *[f"ood_output_{k}" for k in range(1, d + 1)]]
    want += [f"w_{i}{j}" for i in range(1, d + 1) for j in range(1, d + 1)]
    assert header == want


def test_curves_at_one_time_save_and_load(curves, tmp_path):
    task = curves.task
    one = sim.predict(task, curves.W[0], [2.0], convention="paper-code")
    path, _ = one.to_npz(tmp_path / "one.npz")
    back = sim.Curves.load(path)
    assert back.times.tolist() == [2.0]
    np.testing.assert_array_equal(back.W, one.W)


def test_a_loaded_gradient_flow_curve_keeps_its_time_unit(tmp_path):
    task = sim.SIMTask([1.0, 1.5], 0.05, d=2)
    c = sim.predict(task, np.eye(2) * 0.1, np.linspace(0, 2, 5), convention="gradient-flow")
    path, _ = c.to_npz(tmp_path / "gf.npz")
    back = sim.Curves.load(path)  # the convention string comes from JSON: equal, not the same object
    assert back.sidecar()["time_unit"] == "gradient-flow time (lr x steps)"
    assert sim.Curves.from_xarray(c.to_xarray()).sidecar()["time_unit"] == "gradient-flow time (lr x steps)"


def test_from_xarray_refuses_weights_with_their_last_two_axes_swapped(batched3):
    ds = batched3.to_xarray()
    with pytest.raises(ValueError, match=r"ds\['W'\] must end in dimensions \('time', 'i', 'j'\)"):
        sim.Curves.from_xarray(ds.assign(W=ds["W"].transpose(..., "j", "i")))
