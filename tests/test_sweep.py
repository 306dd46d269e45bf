"""simtheory.sweep: cells, resumption after a kill, a real Dask LocalCluster, xarray / pandas round trips."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import sweep_cells
import xarray as xr

import simtheory as sim
from simtheory import sweep
from simtheory.cli import main

TESTS = str(Path(__file__).resolve().parent)


@pytest.fixture(scope="module")
def client():
    """A real LocalCluster: 2 worker processes, one thread each (they import tests/sweep_cells.py)."""
    distributed = pytest.importorskip("distributed")
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = TESTS + (os.pathsep + old if old else "")
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    c = distributed.Client(cluster)
    yield c
    c.close()
    cluster.close()
    if old is None:
        os.environ.pop("PYTHONPATH", None)
    else:
        os.environ["PYTHONPATH"] = old


PREDICT = dict(mu_1=2.0, d=3, t_max=30.0, n_times=60)
PREDICT_GRID = dict(mu_2=[0.5, 1.5], init=["rand", "normal"], seed=[0, 1])
TRAIN = dict(mu=[1.0, 2.0], steps=150, members=2, lr=0.05)


def _same(a: xr.Dataset, b: xr.Dataset):
    assert set(a.data_vars) == set(b.data_vars)
    for v in a.data_vars:
        assert np.array_equal(a[v].values, b[v].values), v  # bit-identical, not close


def test_dask_cluster_gives_the_in_process_arrays(tmp_path, client):
    cells = sweep.grid(**PREDICT_GRID)
    local = sweep.run(sweep.predict_cell, cells, tmp_path / "local", fixed=PREDICT)
    dask = sweep.run(
        sweep.predict_cell, cells, tmp_path / "dask", fixed=PREDICT, executor="dask", client=client
    )
    assert len(local.computed) == len(dask.computed) == 8
    a, b = local.to_xarray(), dask.to_xarray()
    _same(a, b)
    assert a["W"].dims[:3] == ("mu_2", "init", "seed") and a["W"].shape[:3] == (2, 2, 2)
    # each cell is the prediction it names: not a shuffled or a constant grid
    one = sim.predict(
        sim.SIMTask([2.0, 1.5], 0.05, d=3),
        sim.models.initial_state("symmetric", 3, init="normal", scale=0.2, seed=1),
        np.linspace(0, 30, 60),
    )
    assert np.array_equal(a["W"].sel(mu_2=1.5, init="normal", seed=1).values, one.W)
    assert not np.array_equal(a["W"].sel(mu_2=1.5, seed=0).values, a["W"].sel(mu_2=1.5, seed=1).values)
    # torch cells too (simulate.train: ensembles of GD runs)
    seeds = sweep.grid(seed=[0, 5])
    t_local = sweep.run(sweep.train_cell, seeds, tmp_path / "tl", fixed=TRAIN)
    # through the scheduler's address, as a user with a cluster would (dask-jobqueue, Kubernetes)
    address = client.scheduler.address
    t_dask = sweep.run("train", seeds, tmp_path / "td", fixed=TRAIN, executor="dask", scheduler=address)
    _same(t_local.to_xarray(), t_dask.to_xarray())


def _kill_mid_way(run_dir: Path, settings, total: int) -> set:
    """Start the sweep in a subprocess, SIGKILL it once some cells are written; the keys done then."""
    code = (
        "import sys, json; from simtheory import sweep; import sweep_cells; "
        f"sweep.run(sweep_cells.slow_cell, json.loads(sys.argv[1]), {str(run_dir)!r})"
    )
    env = {**os.environ, "PYTHONPATH": TESTS + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen([sys.executable, "-c", code, json.dumps(settings)], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list((run_dir / "cells").glob("*.json"))) < 3:
            assert proc.poll() is None, "the sweep ended before it could be killed"
            assert time.monotonic() < deadline, "no cells written in 120 s"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    done = {c.key for c in sweep.open_run(run_dir).cells} - {c.key for c in sweep.open_run(run_dir).missing()}
    assert 0 < len(done) < total, f"killed with {len(done)} of {total} cells done"
    return done


def test_killed_sweep_resumes_computing_only_the_missing_cells(tmp_path, client):
    settings = [{"x": float(x), "delay": 0.4} for x in np.linspace(0.1, 2.0, 12)]
    reference = sweep.run(sweep_cells.slow_cell, settings, tmp_path / "ref")
    run_dir = tmp_path / "killed"
    done = _kill_mid_way(run_dir, settings, len(settings))
    before = {p.name: p.stat().st_mtime_ns for p in (run_dir / "cells").iterdir()}
    resumed = sweep.run(sweep_cells.slow_cell, settings, run_dir, executor="dask", client=client)
    assert set(resumed.skipped) == done
    assert set(resumed.computed) == {c.key for c in resumed.cells} - done
    assert not resumed.missing()
    for name, mtime in before.items():  # finished cells were not rewritten
        if name.endswith(".json") and name[:-5] in done:
            assert (run_dir / "cells" / name).stat().st_mtime_ns == mtime
    _same(reference.to_xarray(), resumed.to_xarray())
    again = sweep.run(sweep_cells.slow_cell, settings, run_dir)
    assert again.computed == [] and len(again.skipped) == len(settings)


def test_a_users_model_runs_on_dask_workers(tmp_path, client):
    """A user's model (tests/user_models.py registers "symmetric-wd") in the built-in cells: the worker
    processes import ``model_module`` themselves (their registry starts with the built-in models only), and
    the cells equal the in-process ones to the bit; an unimportable module is named."""
    fixed = dict(TRAIN, model="symmetric-wd", model_module="user_models", widths=[3], d=3, steps=60)
    on_workers = client.run(sweep_cells.registered, "symmetric-wd")
    assert not any(on_workers.values())  # so the cells below must import the module there
    dask = sweep.run(
        sweep.train_cell,
        [{"seed": 0}, {"seed": 5}],
        tmp_path / "dask",
        fixed=fixed,
        executor="dask",
        client=client,
    )
    local = sweep.run(sweep.train_cell, [{"seed": 0}, {"seed": 5}], tmp_path / "local", fixed=fixed)
    _same(local.to_xarray(), dask.to_xarray())
    pred = dict(PREDICT, model="symmetric-wd", model_module="user_models")
    res = sweep.run(
        sweep.predict_cell, [{"seed": 1}], tmp_path / "pred", fixed=pred, executor="dask", client=client
    )
    assert res.to_xarray()["ood_loss"].size > 0
    with pytest.raises(ValueError, match="model_module 'no_such_models' cannot be imported"):
        sweep.run(
            sweep.predict_cell,
            [{"seed": 1}],
            tmp_path / "bad",
            fixed=dict(pred, model_module="no_such_models"),
        )
    with pytest.raises(ValueError, match="model_module must be a dotted module name"):
        sweep.run(sweep.predict_cell, [{"seed": 1}], tmp_path / "bad2", fixed=dict(pred, model_module="x; y"))


def test_local_cluster_started_by_the_sweep(tmp_path, monkeypatch):
    pytest.importorskip("distributed")
    monkeypatch.setenv("PYTHONPATH", TESTS + os.pathsep + os.environ.get("PYTHONPATH", ""))
    settings = [{"x": 0.5}, {"x": 0.25}]
    res = sweep.run(sweep_cells.slow_cell, settings, tmp_path / "own", executor="dask", workers=2)
    assert len(res.computed) == 2
    ds = res.to_xarray()  # a list of settings: a "cell" dimension with the parameters as coordinates
    assert ds["y"].dims == ("cell", "y_0") and list(ds["x"].values) == [0.5, 0.25]
    assert np.array_equal(ds["y"].values, [np.arange(4) * 0.5, np.arange(4) * 0.25])


def test_a_torn_cell_is_recomputed(tmp_path):
    settings = [{"x": 0.5}, {"x": 0.75}]
    first = sweep.run(sweep_cells.slow_cell, settings, tmp_path)
    victim = first.cells[1].key
    npz = tmp_path / "cells" / f"{victim}.npz"
    npz.write_bytes(npz.read_bytes()[:-10])  # torn: the sidecar's hash no longer matches
    assert [c.key for c in first.missing()] == [victim]
    again = sweep.run(sweep_cells.slow_cell, settings, tmp_path)
    assert again.computed == [victim] and again.skipped == [first.cells[0].key]
    assert np.array_equal(again.load(victim)["y"], np.arange(4) * 0.75)


def test_a_failing_cell_names_itself_and_keeps_finished_cells(tmp_path):
    settings = [{"x": 0.5}, {"x": 2.0}, {"x": 0.25}]
    with pytest.raises(ValueError, match=r"sweep cell \w+ \{'x': 2.0\}: x must be <= 1"):
        sweep.run(sweep_cells.failing_cell, settings, tmp_path)
    res = sweep.open_run(tmp_path)
    assert [c.params for c in res.missing()] == [{"x": 2.0}, {"x": 0.25}]
    with pytest.raises(ValueError, match="2 of 3 cells .* have no result yet"):
        res.to_xarray()


def test_bad_sweeps_are_clear_errors(tmp_path):
    with pytest.raises(ValueError, match="axis 'mu' must be a number"):
        sweep.grid(mu=[[1, 2]])
    with pytest.raises(ValueError, match="axis 'seed' repeats a value"):
        sweep.grid(seed=[1, 1])
    with pytest.raises(ValueError, match="axis 'seed' has no values"):
        sweep.grid(seed=[])
    with pytest.raises(ValueError, match="must be finite"):
        sweep.grid(x=[float("nan")])
    with pytest.raises(ValueError, match="named, module-level function"):
        sweep.run(lambda x: {"y": x}, [{"x": 1}], tmp_path / "a")
    with pytest.raises(ValueError, match="which fixed also sets"):
        sweep.run(sweep_cells.slow_cell, [{"x": 1.0}], tmp_path / "b", fixed={"x": 2.0})
    with pytest.raises(ValueError, match="repeats settings"):
        sweep.run(sweep_cells.slow_cell, [{"x": 1.0}, {"x": 1.0}], tmp_path / "c")
    with pytest.raises(ValueError, match="executor must be one of"):
        sweep.run(sweep_cells.slow_cell, [{"x": 1.0}], tmp_path / "d", executor="ray")
    with pytest.raises(ValueError, match="workers apply to executor='processes' or 'dask' only"):
        sweep.run(sweep_cells.slow_cell, [{"x": 1.0}], tmp_path / "e", workers=2)
    with pytest.raises(ValueError, match="scheduler and client apply to executor='dask' only"):
        sweep.run(
            sweep_cells.slow_cell, [{"x": 1.0}], tmp_path / "e", executor="processes", scheduler="tcp://x:1"
        )
    with pytest.raises(ValueError, match="unknown parameters \\['bogus'\\]"):
        sweep.run("predict", [{"bogus": 1}], tmp_path / "f", fixed={"mu": [1.0, 2.0]})
    with pytest.raises(ValueError, match="must be 'predict', 'train' or 'package.module:function'"):
        sweep.resolve("os.system")
    with pytest.raises(ValueError, match="dotted Python names"):
        sweep.resolve("os:system('ls')")
    # a run directory belongs to one function and one set of fixed arguments
    sweep.run(sweep_cells.slow_cell, [{"x": 1.0}], tmp_path / "g")
    with pytest.raises(ValueError, match="holds a sweep of sweep_cells:slow_cell"):
        sweep.run(sweep_cells.failing_cell, [{"x": 1.0}], tmp_path / "g")
    with pytest.raises(ValueError, match="with fixed"):
        sweep.run(sweep_cells.slow_cell, [{"x": 1.0}], tmp_path / "g", fixed={"delay": 0.0})
    with pytest.raises(ValueError, match="not a sweep run directory"):
        sweep.open_run(tmp_path / "nowhere")


def test_a_grown_grid_reuses_the_cells_it_has(tmp_path):
    sweep.run("predict", sweep.grid(seed=[0, 1]), tmp_path, fixed=PREDICT | {"mu_2": 1.0})
    res = sweep.run("predict", sweep.grid(seed=[0, 1, 2]), tmp_path, fixed=PREDICT | {"mu_2": 1.0})
    assert len(res.skipped) == 2 and len(res.computed) == 1


def test_curves_xarray_round_trips_through_netcdf(tmp_path):
    task = sim.SIMTask([1.0, 2.0], 0.05, d=3)
    W0 = np.stack([sim.models.initial_state("symmetric", 3, seed=k) for k in range(3)])
    c = sim.predict(task, W0, np.linspace(0, 5, 9))
    ds = c.to_xarray()
    assert ds["W"].dims == ("setting", "time", "i", "j") and ds["W"].shape == (3, 9, 3, 3)
    assert ds["composition_v"].values.tolist() == task.compositions().astype(int).tolist()
    path = tmp_path / "c.nc"
    ds.to_netcdf(path, engine="scipy")
    with xr.open_dataset(path, engine="scipy") as back:
        c2 = sim.Curves.from_xarray(back.load())
    for name in ("times", "W", "ood_output", "ood_loss", "train_loss", "composition_outputs"):
        assert np.array_equal(getattr(c2, name), getattr(c, name)), name
    assert c2.task.to_dict() == task.to_dict() and c2.model == "symmetric" and c2.latex == c.latex
    with pytest.raises(ValueError, match="not a Dataset written by Curves.to_xarray"):
        sim.Curves.from_xarray(xr.Dataset({"W": ("time", np.zeros(3))}))
    bad = ds.copy()
    bad["ood_loss"] = bad["ood_loss"].transpose("time", "setting")
    with pytest.raises(ValueError, match="must end in dimensions"):
        sim.Curves.from_xarray(bad)


def test_curves_pandas_round_trips_through_csv(tmp_path):
    task = sim.SIMTask([1.0, 2.0], 0.05)
    c = sim.predict(task, np.eye(2) * 0.01, np.linspace(0, 5, 6))
    df = c.to_pandas()
    d = task.d
    assert list(df.columns) == ["t", "quantity", "value"]  # no batch: no setting column
    assert len(df) == 6 * (2 + d + d * d)
    w12 = df[df.quantity == "w_12"].value.to_numpy()
    assert np.array_equal(w12, c.W[:, 0, 1])
    assert np.array_equal(df[df.quantity == "ood_loss"].t.to_numpy(), c.times)
    path = tmp_path / "c.csv"
    df.to_csv(path, index=False)
    back = pd.read_csv(path)
    assert np.array_equal(back.value.to_numpy(), df.value.to_numpy())  # every digit survives
    assert np.array_equal(back.t.to_numpy(), df.t.to_numpy())
    assert back.quantity.tolist() == df.quantity.astype(str).tolist()
    batched = sim.predict(task, np.stack([np.eye(2) * 0.01, np.eye(2) * 0.1]), c.times).to_pandas()
    assert list(batched.columns[:2]) == ["setting", "t"]
    ood = batched[batched.quantity == "ood_loss"]
    assert np.array_equal(
        ood[ood.setting == 1].value.to_numpy(), sim.predict(task, np.eye(2) * 0.1, c.times).ood_loss
    )


def test_sweep_to_pandas_has_the_parameters_as_columns(tmp_path):
    res = sweep.run("predict", sweep.grid(mu_2=[0.5, 1.5], seed=[0, 1]), tmp_path, fixed=PREDICT)
    df = res.to_pandas()
    assert list(df.columns[:4]) == ["mu_2", "seed", "t", "quantity"]
    ds = res.to_xarray()
    ood = df[(df.quantity == "ood_loss") & (df.mu_2 == 1.5) & (df.seed == 1)].value.to_numpy()
    assert np.array_equal(ood, ds["ood_loss"].sel(mu_2=1.5, seed=1).values)
    assert "task" not in ds.attrs  # the cells' tasks differ: no single task describes the Dataset
    path = tmp_path / "sweep.nc"
    ds.to_netcdf(path, engine="scipy")
    with xr.open_dataset(path, engine="scipy") as back:
        assert np.array_equal(back["W"].values, ds["W"].values)


def test_cli_sweep_writes_resumes_and_exports(tmp_path, capsys):
    cfg = tmp_path / "s.json"
    cfg.write_text(
        json.dumps({"function": "predict", "grid": {"seed": [0, 1]}, "fixed": PREDICT | {"mu_2": 1}})
    )
    out = tmp_path / "run"
    args = ["sweep", str(cfg), "--out", str(out), "--quiet"]
    assert main(args + ["--netcdf", str(tmp_path / "s.nc"), "--csv", str(tmp_path / "s.csv")]) == 0
    assert "2 cells, 2 computed and 0 already done (local" in capsys.readouterr().out
    assert main(args) == 0
    assert "0 computed and 2 already done" in capsys.readouterr().out
    with xr.open_dataset(tmp_path / "s.nc", engine="scipy") as ds:
        assert ds["W"].dims[0] == "seed"
    assert list(pd.read_csv(tmp_path / "s.csv").columns[:2]) == ["seed", "t"]
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"function": "predict", "grid": {"seed": [0]}, "settings": []}))
    assert main(["sweep", str(bad), "--out", str(tmp_path / "b")]) == 2
    assert "exactly one of 'grid' and 'settings'" in capsys.readouterr().err
    bad.write_text("{not json")
    assert main(["sweep", str(bad)]) == 2
    assert "does not parse" in capsys.readouterr().err


def test_progress_bars_reach_every_training_run(capsys):
    from simtheory.simulate import Init, Model, progress_bars, train

    task = sim.SIMTask([1.0, 2.0], 0.05)
    train(task, Model("linear"), Init("gaussian", 1e-2), lr=0.05, steps=20, seeds=[0])
    assert "train linear" not in capsys.readouterr().err
    with progress_bars():
        train(task, Model("linear"), Init("gaussian", 1e-2), lr=0.05, steps=20, seeds=[0])
        train(task, Model("linear"), Init("gaussian", 1e-2), lr=0.05, steps=20, seeds=[0], progress=False)
    assert capsys.readouterr().err.count("train linear x1") >= 1
    train(task, Model("linear"), Init("gaussian", 1e-2), lr=0.05, steps=20, seeds=[0])
    assert "train linear" not in capsys.readouterr().err  # the block's setting is gone after it


def test_a_cells_thread_count_is_also_the_policys(tmp_path):
    # the sweep's threads bind simtheory's own calls in the cell too (train on a big ensemble would take
    # every free core otherwise, and executors would not agree bit for bit)
    res = sweep.run(sweep_cells.threads_cell, [{"x": 1.0}], tmp_path, threads=1)
    value = res.load(res.cells[0])
    assert value["policy"].tolist() == [1] and value["torch"].tolist() == [1]


def test_a_cell_must_return_a_non_empty_mapping_of_arrays(tmp_path):
    for kind in ("empty", "list"):
        with pytest.raises(ValueError, match="must return Curves, sweep.Record or a non-empty dict"):
            sweep.run(sweep_cells.shaped_cell, [{"x": 1.0}], tmp_path / kind, fixed={"kind": kind})


def test_records_keep_nan(tmp_path):
    res = sweep.run(sweep_cells.shaped_cell, [{"x": 1.0}], tmp_path / "r", fixed={"kind": "nan"})
    ((_, rec),) = list(sweep.open_run(res.run_dir))
    assert rec["x"] == 1.0 and np.isnan(rec["v"])


def test_a_cell_whose_arrays_are_gone_is_missing_not_an_error(tmp_path):
    res = sweep.run(sweep_cells.slow_cell, [{"x": 0.1}, {"x": 0.2}], tmp_path / "run")
    key = res.cells[1].key
    next((res.run_dir / "cells").glob(f"{key}*.npz")).unlink()  # the sidecar stays
    assert [c.key for c in sweep.open_run(res.run_dir).missing()] == [key]
    again = sweep.run(sweep_cells.slow_cell, [{"x": 0.1}, {"x": 0.2}], tmp_path / "run")
    assert again.computed == [key]


def test_stacking_cells_of_other_shapes_names_the_cell(tmp_path):
    settings = [{"x": 2.0}, {"x": 2.0 + 1e-9}, {"x": 3.0}]  # the third has three values, the others two
    res = sweep.run(sweep_cells.shaped_cell, settings, tmp_path / "s")
    with pytest.raises(
        ValueError, match=r"cell \{'x': 3.0\} has other variables or shapes than \{'x': 2.0\}"
    ):
        res.to_xarray()
    extra = [{"x": 2.0, "kind": "arrays"}, {"x": 2.0, "kind": "extra"}]  # the second has one more variable
    res = sweep.run(sweep_cells.shaped_cell, extra, tmp_path / "e")
    with pytest.raises(ValueError, match=r"cell \{'x': 2.0, 'kind': 'extra'\} has other variables or shapes"):
        res.to_xarray()


def test_worker_processes_may_be_bounded(tmp_path):
    res = sweep.run(
        sweep_cells.slow_cell, [{"x": 0.1}, {"x": 0.2}], tmp_path / "p", executor="processes", workers=1
    )
    assert len(res.computed) == 2


def test_each_cells_seconds_are_its_own_wall_time(tmp_path):
    start = time.perf_counter()
    res = sweep.run(sweep_cells.slow_cell, [{"x": 0.1, "delay": 0.3}], tmp_path / "s")
    wall = time.perf_counter() - start
    side = json.loads(next((tmp_path / "s" / "cells").glob("*.json")).read_text())
    assert 0.3 <= side["sweep"]["seconds"] <= wall and len(res.computed) == 1


def test_threads_per_cell_default_to_every_core_in_process_and_one_per_worker():
    from simtheory._threads import cores

    assert sweep.executor_options("local")["threads"] == cores()
    assert sweep.executor_options("processes")["threads"] == 1
    assert sweep.executor_options("dask")["threads"] == 1
    assert sweep.executor_options("dask", threads=3)["threads"] == 3


def test_a_module_that_cannot_be_imported_is_named():
    with pytest.raises(
        ValueError, match=r"function 'no_such_module_xyz:f': cannot import 'no_such_module_xyz'"
    ):
        sweep.resolve("no_such_module_xyz:f")


def test_threads_per_cell_go_up_to_4096(tmp_path):
    res = sweep.run(sweep_cells.shaped_cell, [{"x": 2.0}], tmp_path / "t", threads=4096)
    assert len(res.computed) == 1
    with pytest.raises(ValueError, match="threads"):
        sweep.run(sweep_cells.shaped_cell, [{"x": 2.0}], tmp_path / "u", threads=4097)
