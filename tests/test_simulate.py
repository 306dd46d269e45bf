import numpy as np
import pytest
import torch
from scipy.integrate import solve_ivp

import simtheory as sim
from simtheory.simulate import Init, Model, forward, init_params, jacobian, train

TASK = sim.SIMTask([1.0, 1.5], 0.05, d=3)


def test_same_seed_same_numbers_and_members_are_independent():
    a = train(TASK, Model("symmetric"), Init("gaussian", 0.1), lr=0.05, steps=50, seeds=[3, 4], n=20)
    b = train(TASK, Model("symmetric"), Init("gaussian", 0.1), lr=0.05, steps=50, seeds=[3, 4], n=20)
    np.testing.assert_array_equal(a.curves.W, b.curves.W)
    alone = train(TASK, Model("symmetric"), Init("gaussian", 0.1), lr=0.05, steps=50, seeds=[4], n=20)
    np.testing.assert_allclose(a.curves.W[1], alone.curves.W[0], rtol=1e-12, atol=1e-14)


def test_linear_gd_is_exact_and_float32_is_close():
    run = train(TASK, Model("linear"), Init("gaussian", 0.3), lr=0.1, steps=80, seeds=[0, 1], n=30)
    W0 = init_params(Model("linear"), Init("gaussian", 0.3), 3, [0, 1])[0][0].numpy()
    exact = sim.linear_gd(run.A_n, W0, 0.1, np.asarray(run.curves.meta["steps"]))
    np.testing.assert_allclose(run.curves.W, exact, rtol=0, atol=1e-12)
    r32 = train(
        TASK, Model("linear"), Init("gaussian", 0.3), lr=0.1, steps=80, seeds=[0, 1], n=30, dtype="float32"
    )
    sim.testing.assert_curves_close(r32.curves.W.astype(np.float32), exact, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "model",
    [Model("untied", (5,)), Model("deep", (4, 6)), Model("mlp", (7,), bias=True), Model("mlp", (5, 5))],
)
def test_jacobian_matches_autograd(model):
    w, b = init_params(model, Init("default"), 3, [0, 1])
    x = torch.tensor([[1.0, 1.5, 0.0], [0.3, -0.2, 0.1]], dtype=torch.float64)
    J = jacobian(model, w, b, x)
    for e in range(2):
        f = lambda z: forward(model, [p[e : e + 1] for p in w], [p[e : e + 1] for p in b], z[None, None, :])[
            0, 0
        ]
        ref = torch.autograd.functional.jacobian(f, x[e])
        torch.testing.assert_close(J[e], ref)


def test_mse_loss_time_convention():
    """F.mse_loss = (2/d) L, so lr x steps x 2/d is the gradient-flow time."""
    sim_run = train(
        TASK, Model("linear"), Init("gaussian", 0.1), lr=0.03, steps=100, record=[100], seeds=[0], n=30
    )
    mse_run = train(
        TASK,
        Model("linear"),
        Init("gaussian", 0.1),
        lr=0.03 * 3 / 2,
        steps=100,
        record=[100],
        seeds=[0],
        n=30,
        loss="mse",
    )
    assert mse_run.curves.times[-1] == pytest.approx(sim_run.curves.times[-1])
    np.testing.assert_allclose(mse_run.curves.W, sim_run.curves.W, atol=1e-12)


def test_sgd_is_seeded_and_approaches_gd():
    kw = dict(lr=0.02, steps=400, record=[400], seeds=[0], n=50)
    s1 = train(TASK, Model("linear"), Init("gaussian", 0.1), batch_size=32, **kw)
    s2 = train(TASK, Model("linear"), Init("gaussian", 0.1), batch_size=32, **kw)
    gd = train(TASK, Model("linear"), Init("gaussian", 0.1), **kw)
    np.testing.assert_array_equal(s1.curves.W, s2.curves.W)
    assert np.linalg.norm(s1.curves.W - gd.curves.W) < 0.05


def test_records_outputs_at_all_compositions():
    run = train(
        sim.SIMTask([1.0, 2.0, 3.0], 0.1),
        Model("mlp", (8,), bias=True),
        Init("default"),
        lr=0.01,
        steps=10,
        seeds=[0],
        n=10,
    )
    c = run.curves
    assert c.composition_outputs.shape == (1, c.times.size, 8, 3)
    x = np.array([1.0, 2.0, 3.0])  # the OOD point sum_p mu_p e_p, written out
    # the OOD loss by hand from the recorded output at the OOD point, and the output at the origin
    np.testing.assert_allclose(c.ood_loss, 0.5 * np.sum((c.ood_output - x) ** 2, axis=-1))
    assert np.all(np.abs(c.composition_outputs[:, :, 0]) > 0)  # biases: the MLP does not map 0 to 0
    lin = train(
        sim.SIMTask([1.0, 2.0, 3.0], 0.1),
        Model("linear"),
        Init("gaussian", 0.3),
        lr=0.01,
        steps=10,
        seeds=[0],
        n=10,
    ).curves
    # a linear model's recorded outputs are W x: checked against the recorded weights
    np.testing.assert_allclose(lin.ood_output, lin.W @ x, rtol=1e-5, atol=1e-6)
    v = np.array([1.0, 0.0, 1.0])
    k = next(i for i, u in enumerate(lin.task.compositions()) if np.array_equal(u, v))
    np.testing.assert_allclose(lin.composition_outputs[..., k, :], lin.W @ (v * x), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, exc, match",
    [
        (dict(lr=50.0), RuntimeError, "training diverged: member 0"),
        (dict(inputs=np.full((10, 3), np.nan)), ValueError, "inputs must be finite"),
        (dict(inputs=np.ones((10, 2))), ValueError, "inputs must have shape"),
        (dict(lr=-0.1), ValueError, "lr must be a finite number > 0"),
        (dict(batch_size=10_000), ValueError, "batch_size must be <= N"),
        (dict(record=[5000]), ValueError, "record must be integer steps"),
        (dict(loss="l1"), ValueError, "loss must be one of"),
        (dict(dtype="float16"), ValueError, "dtype must be"),
        (dict(seeds=[]), ValueError, "seeds must hold at least one seed"),
        (dict(tasks=[TASK, sim.SIMTask([1.0], 0.1, d=3)], seeds=[0, 1]), ValueError, "share s, d and origin"),
    ],
)
def test_bad_input_stops_with_a_clear_error(kwargs, exc, match):
    args = dict(
        tasks=TASK, model=Model("linear"), init=Init("gaussian", 0.1), lr=0.1, steps=100, seeds=[0], n=10
    )
    args.update(kwargs)
    with pytest.raises(exc, match=match):
        train(**args)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(kind="cnn"), "model kind"),
        (dict(kind="deep"), "at least one hidden"),
        (dict(kind="linear", bias=True), "bias is only"),
        (dict(kind="untied", widths=(2, 3)), "at most one"),
    ],
)
def test_bad_model(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Model(**kwargs)


def test_bad_init():
    with pytest.raises(ValueError, match="init scale"):
        Init("gaussian", -1.0)
    with pytest.raises(ValueError, match="needs arrays"):
        Init("given")
    with pytest.raises(ValueError, match=r"init.arrays\[0\] must have shape"):
        train(TASK, Model("linear"), Init("given", arrays=(np.eye(2),)), lr=0.1, steps=1, seeds=[0], n=5)


@pytest.mark.parametrize(
    "kind, widths", [("deep", (2, 2)), ("untied", (3,)), ("symmetric", ()), ("linear", ())]
)
def test_flow_limit_is_approached_with_error_proportional_to_lr(kind, widths):
    from simtheory.simulate import flow_limit

    task = sim.SIMTask([1.0, 2.0], 0.05, d=2)
    init = Init("gaussian", 0.1) if kind == "symmetric" else Init("default")
    errors = []
    for lr in (0.02, 0.01):
        steps = int(round(20.0 / lr))
        run = train(
            task,
            Model(kind, widths),
            init,
            lr=lr,
            steps=steps,
            seeds=[0, 1],
            n=32,
            record=np.linspace(0, steps, 11).astype(int),
        )
        errors.append(np.abs(flow_limit(run) - run.curves.W).max())
    assert 1.8 < errors[0] / errors[1] < 2.2
    pop = flow_limit(run, population=True)
    assert pop.shape == run.curves.W.shape and not np.allclose(pop, flow_limit(run))


def test_flow_limit_refuses_relu_networks():
    from simtheory.simulate import flow_limit

    run = train(
        sim.SIMTask([1.0, 2.0], 0.05), Model("mlp", (4,), bias=True), Init("default"), lr=0.01, steps=2
    )
    with pytest.raises(ValueError, match="mlp model has no gradient-flow prediction .a ReLU MLP"):
        flow_limit(run)


def test_one_model_trains_exactly_as_a_plain_torch_sgd_loop():
    # the published code's loop (torch.optim.SGD, F.mse_loss, full batch) on the same data and init
    task = sim.SIMTask([1.0, 1.5], 0.05, d=3)
    X = task.sample(20, seed=3).inputs
    U0 = np.random.default_rng(0).random((3, 3)) / 5
    run = train(
        task, Model("symmetric"), Init("given", arrays=(U0,)), lr=0.05, steps=60, inputs=X, loss="mse"
    )
    U = torch.nn.Parameter(torch.tensor(U0))
    opt = torch.optim.SGD([U], lr=0.05)
    Xt = torch.tensor(X)
    for _ in range(60):
        opt.zero_grad()
        torch.nn.functional.mse_loss(Xt @ U @ U.T, Xt).backward()
        opt.step()
    np.testing.assert_allclose(run.params[0][0], U.detach().numpy(), rtol=0, atol=1e-13)


def test_sgd_takes_each_point_once_per_epoch_in_a_fresh_order():
    from simtheory.simulate import _Batches, _setup

    setup = _setup(
        TASK,
        lr=0.1,
        steps=20,
        record=None,
        n=5,
        seeds=[0, 1, 2],
        data_seeds=None,
        inputs=None,
        batch_size=4,
        loss="sim",
        dtype="float64",
        device="cpu",
    )
    N = setup.X.shape[1]  # 5 points per cluster, 2 concepts: 10 points, batches of 4, 4, 2
    batches = _Batches(setup, torch.Generator().manual_seed(0))
    epochs = []
    for e in range(2):
        parts = [batches(e * 3 + j) for j in range(3)]
        assert [p.shape[1] for p in parts] == [4, 4, 2]
        epoch = torch.cat(parts, dim=1)
        for m in range(3):  # every member sees each of its own points exactly once
            order = np.lexsort(epoch[m].numpy().T)
            np.testing.assert_array_equal(
                epoch[m].numpy()[order], setup.X[m].numpy()[np.lexsort(setup.X[m].numpy().T)]
            )
        epochs.append(epoch)
    assert not torch.equal(epochs[0], epochs[1])  # reshuffled
    assert not torch.equal(epochs[0][0], setup.X[0])  # shuffled at all
    assert N == 10


def test_full_batch_sgd_equals_gd():
    kw = dict(lr=0.05, steps=30, record=[0, 30], seeds=[0, 1], n=10)
    gd = train(TASK, Model("symmetric"), Init("gaussian", 0.1), **kw)
    sgd = train(TASK, Model("symmetric"), Init("gaussian", 0.1), batch_size=20, **kw)
    np.testing.assert_allclose(sgd.curves.W, gd.curves.W, rtol=0, atol=1e-12)


def test_thread_policy_override_and_restore():
    from threadpoolctl import threadpool_info

    from simtheory import _threads

    assert _threads.for_work(1e3) == 1  # small work: one thread
    assert 1 <= _threads.for_work(1e12) <= _threads.cores()
    assert 1 <= _threads.free_cores() <= _threads.cores()
    with sim.threads(2):
        assert _threads.for_work(1e3) == 2
        with sim.threads(None):
            assert _threads.for_work(1e3) == 1
    before = torch.get_num_threads()
    blas_before = [p["num_threads"] for p in threadpool_info()]
    with _threads.limited(1, torch=True):
        assert torch.get_num_threads() == 1
        assert all(p["num_threads"] == 1 for p in threadpool_info())
    assert torch.get_num_threads() == before
    assert [p["num_threads"] for p in threadpool_info()] == blas_before
    with pytest.raises(ValueError, match="threads"):
        with sim.threads(0):
            pass


def test_linear_flow_with_weight_decay_solves_its_field():
    rng = np.random.default_rng(4)
    A = sim.symmetric_init(rng.normal(size=(3, 3))) / 3 + 0.1 * np.eye(3)  # not diagonal
    W0 = rng.normal(0, 0.3, (3, 3))
    lam = 0.4
    t = np.array([0.0, 0.5, 2.0, 8.0])
    W = sim.linear_flow(A, W0, t, weight_decay=lam)
    field = lambda _, y: (-(y.reshape(3, 3) - np.eye(3)) @ A - lam * y.reshape(3, 3)).ravel()
    ref = solve_ivp(field, (0, 8.0), W0.ravel(), method="DOP853", t_eval=t, rtol=1e-12, atol=1e-12).y.T
    np.testing.assert_allclose(W.reshape(4, -1), ref, atol=1e-10)
    fixed = A @ np.linalg.inv(A + lam * np.eye(3))  # the minimiser of the penalised loss
    np.testing.assert_allclose(sim.linear_flow(A, W0, [1e4], weight_decay=lam)[0], fixed, atol=1e-12)
    np.testing.assert_array_equal(sim.linear_flow(A, W0, t, weight_decay=0.0), sim.linear_flow(A, W0, t))
    with pytest.raises(ValueError, match="weight_decay"):
        sim.linear_flow(A, W0, t, weight_decay=-1.0)


def test_weight_decay_trains_as_torch_sgd_and_gd_approaches_its_flow():
    lam, kw = 0.3, dict(steps=200, seeds=[0, 1], n=10)
    run = train(TASK, Model("linear"), Init("gaussian", 0.2), lr=0.05, weight_decay=lam, **kw)
    assert run.curves.meta["weight_decay"] == lam
    # the same as torch.optim.SGD(weight_decay=lam) on the same data and init
    W = torch.nn.Parameter(torch.tensor(run.initial[0][0]))
    opt = torch.optim.SGD([W], lr=0.05, weight_decay=lam)
    X = torch.tensor(run.inputs[0])
    for _ in range(200):
        opt.zero_grad()
        (0.5 * ((X @ W.T - X) ** 2).sum(-1).mean()).backward()
        opt.step()
    np.testing.assert_allclose(run.params[0][0], W.detach().numpy(), atol=1e-13)
    # the recorded training loss is the penalised objective
    W0 = run.initial[0]
    expected = sim.train_loss(run.A_n, W0) + 0.5 * lam * np.sum(W0**2, axis=(-2, -1))
    np.testing.assert_allclose(run.curves.train_loss[:, 0], expected, rtol=1e-12)
    # GD -> the weight-decay flow with error proportional to lr
    errs = []
    for lr in (0.04, 0.02):
        r = train(
            TASK,
            Model("linear"),
            Init("gaussian", 0.2),
            lr=lr,
            weight_decay=lam,
            **{**kw, "steps": int(4 / lr)},
        )
        errs.append(np.abs(r.curves.W - sim.simulate.flow_limit(r)).max())
    assert errs[0] / errs[1] == pytest.approx(2.0, rel=0.1)
    # without the decay in the prediction the gap does not shrink with lr
    plain = sim.linear_flow(r.A_n, r.initial[0], r.curves.times)
    assert np.abs(r.curves.W - plain).max() > 20 * errs[1]


def test_mse_weight_decay_is_rescaled_to_flow_time():
    kw = dict(lr=0.05, steps=300, seeds=[0], n=10, loss="mse", weight_decay=0.1)
    run = train(TASK, Model("linear"), Init("gaussian", 0.2), **kw)
    half = train(TASK, Model("linear"), Init("gaussian", 0.2), **{**kw, "lr": 0.025, "steps": 600})
    e1 = np.abs(run.curves.W - sim.simulate.flow_limit(run)).max()
    e2 = np.abs(half.curves.W - sim.simulate.flow_limit(half)).max()
    assert e1 / e2 == pytest.approx(2.0, rel=0.15)


def test_a_penalty_is_trained_recorded_and_not_predicted():
    def l1(weights):
        return 0.01 * sum(W.abs().sum(dim=(-2, -1)) for W in weights)

    run = train(TASK, Model("linear"), Init("gaussian", 0.2), lr=0.05, steps=20, seeds=[0], n=10, penalty=l1)
    assert run.curves.meta["penalty"].endswith("l1")
    W0 = run.initial[0]
    np.testing.assert_allclose(
        run.curves.train_loss[:, 0], sim.train_loss(run.A_n, W0) + 0.01 * np.abs(W0).sum(axis=(-2, -1))
    )
    with pytest.raises(ValueError, match="no prediction for the run's own penalty"):
        sim.simulate.flow_limit(run)
    with pytest.raises(ValueError, match="penalty must be a function"):
        train(TASK, Model("linear"), Init("gaussian", 0.2), lr=0.05, steps=2, n=10, penalty=3.0)
    with pytest.raises(ValueError, match="weight decay is predicted for the linear model only"):
        sim.simulate.flow_limit(
            train(TASK, Model("symmetric"), Init("gaussian", 0.2), lr=0.05, steps=2, n=10, weight_decay=0.1)
        )


def test_epoch_steps_is_epochs_times_the_batches_per_epoch():
    from simtheory.simulate import epoch_steps

    assert epoch_steps(100, 32, 3) == 12  # 4 batches an epoch (the last one short)
    assert epoch_steps(64, 32, 1) == 2 and epoch_steps(64, 64, 5) == 5


@pytest.mark.parametrize("bias", [False, True])
def test_default_init_is_pytorchs_uniform_within_one_over_root_fan_in(bias):
    model = Model("mlp", (40,), bias=bias)
    w, b = init_params(model, Init("default"), 30, list(range(8)))
    for k, (out_, in_) in enumerate(model.shapes(30)):
        bound = 1 / np.sqrt(in_)
        for x in [w[k]] + ([b[k]] if bias else []):
            x = x.numpy()
            assert np.abs(x).max() <= bound and x.max() > 0.9 * bound and x.min() < -0.9 * bound
            assert abs(x.mean()) < 0.05 * bound


def test_uniform_init_draws_from_zero_to_the_scale():
    w, _ = init_params(Model("untied", (20,)), Init("uniform", 0.3), 20, [0, 1, 2])
    for x in w:
        x = x.numpy()
        assert x.min() >= 0 and x.max() < 0.3 and x.max() > 0.29 and x.mean() == pytest.approx(0.15, rel=0.05)


def _registered_copy(monkeypatch, base: str, name: str, **network_changes):
    import dataclasses

    from simtheory import models

    monkeypatch.setattr(models, "_REGISTRY", dict(models._REGISTRY))
    spec = models.get(base)
    net = dataclasses.replace(spec.network, **network_changes)
    models.register(dataclasses.replace(spec, name=name, network=net))
    return Model(name, (5,))


def test_a_network_without_a_jacobian_gets_it_by_autograd(monkeypatch):
    plain = Model("untied", (5,))
    bare = _registered_copy(monkeypatch, "untied", "untied-no-jacobian", jacobian=None)
    w, b = init_params(plain, Init("gaussian", 0.5), 3, [0, 1])
    x = torch.tensor([[1.0, 1.5, 0.0], [0.3, -0.2, 0.1]], dtype=torch.float64)
    torch.testing.assert_close(jacobian(bare, w, b, x), jacobian(plain, w, b, x))
    run = train(TASK, bare, Init("gaussian", 0.1), lr=0.05, steps=5, seeds=[0], n=10)
    assert np.all(np.isfinite(run.curves.W))


def test_a_jacobian_of_the_wrong_shape_is_refused_before_training(monkeypatch):
    bad = _registered_copy(monkeypatch, "untied", "untied-bad-jacobian", jacobian=lambda w, b, x: w[0])
    with pytest.raises(ValueError, match=r"network's jacobian .* returned shape \(1, 5, 3\); it must return"):
        train(TASK, bad, Init("gaussian", 0.1), lr=0.05, steps=5, seeds=[0], n=10)


def test_training_inputs_need_at_least_one_point():
    with pytest.raises(ValueError, match="inputs must have shape"):
        train(
            TASK, Model("linear"), Init("gaussian", 0.1), lr=0.1, steps=5, seeds=[0], inputs=np.zeros((0, 3))
        )


def test_progress_bars_show_where_asked_and_by_default_only_when_switched_on(capsys):
    from simtheory.simulate import progress_bars

    def shown(**kw):
        train(TASK, Model("linear"), Init("gaussian", 0.1), lr=0.1, steps=3, seeds=[0], n=5, **kw)
        return "train linear x1" in capsys.readouterr().err

    assert shown(progress=True) and not shown(progress=False) and not shown()
    with progress_bars():
        assert shown() and not shown(progress=False)


def test_given_starts_may_differ_per_member_and_must_match_the_ensemble():
    W0 = np.stack([np.eye(3) * 0.1, np.eye(3) * 0.2])  # (E, d, d): one start per member
    run = train(TASK, Model("linear"), Init("given", arrays=(W0,)), lr=0.01, steps=2, seeds=[0, 1], n=5)
    np.testing.assert_allclose(run.curves.W[:, 0], W0, rtol=1e-6)
    with pytest.raises(ValueError, match=r"init.arrays\[0\] must have shape \(3, 3\) or \(3, 3, 3\)"):
        train(TASK, Model("linear"), Init("given", arrays=(W0,)), lr=0.01, steps=2, seeds=[0, 1, 2], n=5)


def test_data_seeds_must_be_one_per_member():
    with pytest.raises(ValueError, match="data_seeds must hold 2 seeds, got 1"):
        lin, start = Model("linear"), Init("gaussian", 0.1)
        train(TASK, lin, start, lr=0.1, steps=2, seeds=[0, 1], n=5, data_seeds=[7])


def test_inputs_of_one_axis_are_refused_by_name():
    with pytest.raises(ValueError, match="inputs must have shape"):
        # three members and three values: the leading axis alone matches the ensemble
        train(TASK, Model("linear"), Init("gaussian", 0.1), lr=0.1, steps=2, seeds=[0, 1, 2],
              inputs=np.ones(3))  # fmt: skip


def test_a_run_diverging_between_guards_is_caught_at_its_last_step():
    # 20 steps: the guard looks at step 0 and at the last step; lr = 2.5 > 2 / a_max (a_max = 1.5^2 / 2 +
    # 0.05^2) multiplies the error along e_2 by ~1.8 a step: the loss grows ~1e10-fold, finite
    with pytest.raises(RuntimeError, match="training diverged: member 0 .* at step 19"):
        lin, start = Model("linear"), Init("gaussian", 0.1)
        train(TASK, lin, start, lr=2.5, steps=20, seeds=[0], n=10, max_growth=10.0)
    # a longer run is caught at the first look past the blow-up (every 32 steps), not at its end
    with pytest.raises(RuntimeError, match="training diverged: member 0 .* at step 32 "):
        train(TASK, lin, start, lr=2.5, steps=100, seeds=[0], n=10, max_growth=10.0)


def test_a_jacobian_of_too_few_columns_and_a_forward_on_one_point_are_named(monkeypatch):
    narrow = _registered_copy(monkeypatch, "untied", "untied-narrow", jacobian=lambda w, b, x: w[1][..., :2])
    with pytest.raises(ValueError, match=r"jacobian .* returned shape \(1, 3, 2\); it must return"):
        train(TASK, narrow, Init("gaussian", 0.1), lr=0.05, steps=5, seeds=[0], n=10)
    cut = _registered_copy(monkeypatch, "untied", "untied-cut", forward=lambda w, b, x: x[..., :2])
    with pytest.raises(ValueError, match=r"it must return \(E, N, d\) = \(1, 1, 3\)"):
        train(TASK, cut, Init("gaussian", 0.1), lr=0.05, steps=5, seeds=[0], inputs=np.ones((1, 3)))


def test_flow_limit_members_are_checked_on_both_sides_and_by_type():
    from simtheory.simulate import flow_limit

    run = train(TASK, Model("linear"), Init("gaussian", 0.1), lr=0.1, steps=3, seeds=[0, 1], n=5)
    assert flow_limit(run, members=[-2]).shape[0] == 1
    for bad in ([2], [-3], []):
        with pytest.raises(ValueError, match="members must index the 2 ensemble members"):
            flow_limit(run, members=bad)
    with pytest.raises(ValueError, match="members must be integer indices of the 2 ensemble members"):
        flow_limit(run, members=["a"])
