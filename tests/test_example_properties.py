"""Worked example of property tests against simulations -- copy this file to start your own.

It uses the simtheory pytest plugin (loaded automatically when simtheory is installed):
``sim_runs`` caches seeded GD runs across tests, ``compare_curves`` compares trajectories and writes
a comparison figure when they disagree; and the hypothesis strategies of ``simtheory.testing``.
"""

import numpy as np
import pytest
from hypothesis import given, settings

import simtheory as sim
from simtheory.simulate import Init, Model
from simtheory.testing import linear_inits, tasks

TASK = sim.SIMTask([1.0, 1.5], 0.05, d=3)
U0 = np.random.default_rng(2).random((3, 3)) / 5
RUN = dict(lr=0.005, steps=1200, seeds=[0], n=100)


def test_gd_on_U_follows_the_symmetric_flow(sim_runs, compare_curves):
    """Property: full-batch GD tracks the predicted flow (with the data's A_n) to O(lr)."""
    run = sim_runs(TASK, Model("symmetric"), Init("given", arrays=(U0,)), **RUN)
    pred = sim.symmetric_flow(run.A_n[0], U0 @ U0.T, run.curves.times)
    compare_curves(run.curves.W[0], pred, rtol=0, atol=0.01)


def test_same_run_is_served_from_the_cache(sim_runs):
    """The second request for the same run costs nothing: sim_runs returns the cached object."""
    a = sim_runs(TASK, Model("symmetric"), Init("given", arrays=(U0,)), **RUN)
    b = sim_runs(TASK, Model("symmetric"), Init("given", arrays=(U0,)), **RUN)
    assert a is b


def test_training_loss_never_increases(sim_runs):
    run = sim_runs(TASK, Model("symmetric"), Init("given", arrays=(U0,)), **RUN)
    assert np.all(np.diff(run.curves.train_loss[0]) <= 1e-12)


@settings(max_examples=10)
@given(tasks(min_s=2, max_s=2, max_extra_d=0), linear_inits(2))
def test_one_layer_prediction_is_exact_for_gd(task, W0):
    """Hypothesis-drawn tasks and initialisations: exact GD solution = simulated GD."""
    from simtheory.simulate import train

    run = train(task, Model("linear"), Init("given", arrays=(W0,)), lr=0.1, steps=30, seeds=[0], n=10)
    exact = sim.linear_gd(run.A_n, W0, 0.1, np.asarray(run.curves.meta["steps"]))
    np.testing.assert_allclose(run.curves.W, exact, atol=1e-10)


def test_a_failing_comparison_writes_a_figure(compare_curves, tmp_path_factory):
    """What a failure looks like: the message names the time, the entry and the figure file."""
    t_curves = sim.predict(TASK, U0 @ U0.T, np.linspace(0, 5, 21))
    wrong = np.array(t_curves.W)
    wrong[10:, 0, 1] += 0.05
    with pytest.raises(AssertionError, match="comparison figure: .*png") as err:
        compare_curves(wrong, t_curves)
    assert "worst entry W[0,1]" in str(err.value)
    figure = str(err.value).rsplit("comparison figure: ", 1)[1].strip()
    assert figure.endswith(".png") and __import__("os").path.getsize(figure) > 1000


def test_a_failing_comparison_of_batched_curves_writes_a_figure(sim_runs, compare_curves):
    """A ``sim_runs`` result is batched (one member per seed): the failure names the member and the time,
    and the figure is drawn over the time axis (it used to take the batch axis for time and crash)."""
    run = sim_runs(
        TASK, Model("symmetric"), Init("given", arrays=(U0,)), lr=0.01, steps=200, seeds=[0, 1], n=50
    )
    pred = np.broadcast_to(
        sim.symmetric_flow(run.A_n, U0 @ U0.T, run.curves.times), run.curves.W.shape
    ).copy()
    pred[1, -5:] += 0.1  # member 1 is wrong at the end
    with pytest.raises(AssertionError, match="comparison figure: .*png") as err:
        compare_curves(run.curves, pred, rtol=0, atol=0.01)
    assert "batch index (1,)" in str(err.value)
