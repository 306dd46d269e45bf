"""The reliability contract at the public boundary: a bad input is a ValueError that names the parameter
(or file, or flag) before any side effect; a good input gives a finite result that matches a reference;
nothing hangs; a file pair is written and read as one unit."""

from __future__ import annotations

import json
import math
import os
import stat

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import simtheory as sim
from simtheory import swingby
from simtheory.curves import Curves, atomic_write_text
from simtheory.simulate import Init, Model, train
from simtheory.task import truncated_variance_factor
from validation import closed_form

TASK = sim.SIMTask([1.0, 2.0], 0.1, d=2)
W0 = 0.01 * np.ones((2, 2))
NAN = float("nan")


# -- every case of the audit, by family ------------------------------------------------------------

SOLVER_OPTIONS = [
    (lambda: sim.untied_flow(TASK, 0.1 * np.eye(2), 0.1 * np.eye(2), [0, 1.0], rtol=NAN), "rtol"),
    (lambda: sim.untied_flow(TASK, 0.1 * np.eye(2), 0.1 * np.eye(2), [0, 1.0], atol=NAN), "atol"),
    (lambda: sim.deep_flow(TASK, [0.1 * np.eye(2)] * 3, [0, 1.0], rtol=NAN), "rtol"),
    (lambda: sim.symmetric_flow(TASK, W0, [0, 1.0], rtol=-1e-3), "rtol"),
    (lambda: sim.symmetric_flow(TASK, W0, [0, 1.0], rtol="tight"), "rtol"),
    (lambda: sim.symmetric_flow(TASK, W0, [0, 1.0], method="Euler"), "method"),
    (lambda: sim.deep_flow(TASK, [0.1 * np.eye(2)] * 2, [0, 1.0], method=None), "method"),
    (lambda: sim.symmetric_flow(TASK, W0, [0, 1.0], convention=["paper"]), "convention"),
    (lambda: sim.symmetric_flow(TASK, W0, [0.0, 1e21]), "t must be <="),
]
VALUES = [
    (lambda: sim.SIMTask([1e200, 1.0], 0.1), "mu and sigma are too large"),
    (lambda: sim.SIMTask([1 + 1j, 1.0], 0.1), "mu must be real"),
    (lambda: sim.linear_flow(TASK, np.eye(2) * (1 + 1j), [1.0]), "W0 must be real"),
    (lambda: sim.linear_flow(TASK, np.diag([1e16, 0.1]), [0.0, 1.0]), "W0 must have entries of magnitude"),
    (lambda: sim.symmetric_flow(TASK, np.diag([1e16, 0.1]), [0.0, 1.0]), "W0 must have entries"),
    (lambda: sim.SIMTask([1.0], 0.1, d=10**12), "d must be an integer"),
    (lambda: sim.SIMTask.from_dict({}), "missing mu, sigma, d"),
    (lambda: swingby.classify([0, 1, 2], [1, 0.5, 0.2], failure_frac=NAN), "failure_frac"),
    (lambda: swingby.classify([0, 1, 2], [1, 0.5, 0.2], failure_frac=-1), "failure_frac"),
    (lambda: swingby.predict_swingby(TASK, W0, ratio=NAN), "ratio"),
    (lambda: swingby.predict_swingby(TASK, W0, init_scale=-1), "init_scale"),
    (lambda: sim.deep_flow(TASK, None, [0, 1.0]), "factors must be a list"),
    (lambda: sim.linear_flow(TASK, np.zeros((2**14, 2, 2)), np.linspace(0, 1, 2**13)), "GiB"),
    (lambda: truncated_variance_factor(0.0), "c must be"),
]
APPROX = [  # the closed-form approximations and the criterion built on them
    (lambda: sim.symmetric_approx(TASK, W0, [0, 1.0], form="exact"), "form must be one of"),
    (lambda: sim.symmetric_approx(TASK, -np.eye(2), [0, 1.0]), "W0"),
    (lambda: sim.symmetric_approx(TASK, W0, [1.0, NAN]), "t"),
    (lambda: sim.symmetric_approx(TASK, W0, [0, 1.0], convention="fast"), "convention"),
    (lambda: sim.symmetric_approx_ood_loss(TASK, W0, [0, 1.0], x=np.ones(3)), "x must have shape"),
    (lambda: sim.symmetric_approx_ood_loss(np.eye(2), W0, [0, 1.0]), "task must be a SIMTask"),
    (lambda: swingby.predict_swingby(TASK, W0, criterion="best"), "criterion must be one of"),
    (lambda: swingby.predict_swingby(TASK, np.stack([W0, W0]), criterion="approx"), "single d x d"),
    (lambda: swingby.predict_swingby(TASK, W0, criterion="approx", rel_tol=2.0), "rel_tol"),
    (lambda: closed_form.agreement_study(4, d=(5, 3)), "low <= high"),
    (lambda: closed_form.agreement_study(4, scale=(0.0, 0.1)), "scale must be positive"),
    (lambda: closed_form.agreement_study(4, families=("uniform",)), "families"),
    (lambda: closed_form.agreement_study(4, criterion="approx2"), "criterion"),
    (lambda: swingby.shape([0, 1, 2], np.ones((2, 4))), "last axis"),
    (lambda: closed_form.phase_diagram("ratio", (0.5,), (0.02,), n=1), "ratios >= 1"),
    (lambda: closed_form.phase_diagram("ratio", (2.0,), (0.0,), n=1), "scales"),
    (lambda: closed_form.approximation_error(TASK, W0, (1e-2, NAN)), "scales"),
    (
        lambda: swingby.approx_verdicts(
            np.eye(2)[None], W0[None], np.ones((1, 2)), [0, 1.0], forms=("exact",)
        ),
        "forms",
    ),
]
SIMULATE = [
    (lambda: Init("gaussian", scale="a"), "init scale"),
    (lambda: Model("mlp", 5), "widths must be a tuple"),
    (lambda: Model(["linear"]), "model kind"),
    (lambda: train(TASK, Model("linear"), Init(), lr=0.1, steps=2, seeds=5), "seeds"),
    (lambda: train(TASK, Model("linear"), Init(), lr=0.1, steps=2, seeds=[1.7]), "seeds"),
    (lambda: train(TASK, Model("linear"), Init(), lr=0.1, steps=2, seeds=[2**62]), "seeds"),
    (lambda: train(TASK, Model("linear"), Init(), lr=0.1, steps=2, max_growth=NAN), "max_growth"),
    (lambda: train(TASK, Model("linear"), Init(), lr=0.1, steps=2, max_growth=-1), "max_growth"),
    (lambda: train(TASK, Model("linear"), Init(), lr=0.1, steps=2, device="foo"), "device"),
    (lambda: train(TASK, Model("linear"), Init(), lr=0.1, steps=2, device="cuda:99"), "device"),
    (lambda: train(TASK, Model("linear"), Init(), lr=NAN, steps=2), "lr"),
    (lambda: train(TASK, "linear", Init(), lr=0.1, steps=2), "model must be"),
]
DIFFUSION = [
    (lambda: _run_config(seeds=(1.7,)), "seeds"),
    (lambda: _run_config(guidance=NAN), "guidance"),
    (lambda: _run_config(weight_decay=-1), "weight_decay"),
    (lambda: _run_config(T=0), "T must be"),
    (lambda: _run_config(device="foo"), "device"),
    (lambda: _run_config(sample_steps=5000), "sample_steps"),
    (lambda: _run_config_from({}), "needs resolution"),
]


def _run_config(**changes):
    from simtheory.diffusion.train import RunConfig

    return RunConfig(**changes)


def _run_config_from(record):
    from simtheory.diffusion.train import RunConfig

    return RunConfig.from_dict(record)


@pytest.mark.parametrize("call, names", SOLVER_OPTIONS + VALUES + APPROX + SIMULATE + DIFFUSION)
def test_bad_input_is_a_clear_error(call, names):
    with pytest.raises(ValueError, match=names.replace("(", r"\(")):
        call()


def test_a_bad_run_configuration_writes_nothing(tmp_path):
    from simtheory.diffusion.train import RunConfig, read_config

    with pytest.raises(ValueError, match="T must be"):
        RunConfig(T=0)
    assert not any(tmp_path.iterdir())
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json: not a valid run configuration"):
        read_config(tmp_path)
    with pytest.raises(ValueError, match="no such run directory"):
        read_config(tmp_path / "missing")


def test_training_for_zero_steps_records_the_initialisation():
    run = train(TASK, Model("linear"), Init("gaussian", 0.1), lr=0.1, steps=0, seeds=[0], n=5)
    assert run.curves.times.tolist() == [0.0]
    np.testing.assert_array_equal(run.curves.W[0, 0], run.initial[0][0])


def test_the_truncation_factor_is_right_for_small_cuts():
    # the variance of N(0, 1) cut at +-c is c^2/3 (1 - c^2/15 ...) for small c: the closed form cancelled
    # to 36% error at c = 1e-5 and went negative below 1e-8
    import mpmath as mp

    mp.mp.dps = 40
    for c in (1e-12, 1e-8, 1e-5, 1e-3, 0.05, 0.1, 0.5, 2.0):
        exact = 1 - 2 * mp.mpf(c) * mp.npdf(c) / (2 * mp.ncdf(c) - 1)
        assert truncated_variance_factor(c) == pytest.approx(float(exact), rel=1e-13)


def test_symmetric_flow_at_d_64_with_a_long_horizon_does_not_pick_an_implicit_method():
    rng = np.random.default_rng(0)
    task = sim.SIMTask([1.0, 2.0], 0.05, d=64)
    U0 = 0.01 * rng.standard_normal((64, 64))
    t = [0.0, 20.0, 100.0]  # 3200 e-folds of the fastest mode: the stiff regime of "auto"
    # auto must stay explicit at this size (Radau's 4096 x 4096 blocks did not finish in 200 s)
    W = sim.symmetric_flow(task, U0 @ U0.T, t)
    np.testing.assert_array_equal(W, sim.symmetric_flow(task, U0 @ U0.T, t, method="DOP853"))
    # and the concept entries have converged to 1 (a_1 = 0.5, a_2 = 2)
    np.testing.assert_allclose(np.diag(W[-1])[:2], 1.0, atol=1e-6)


# -- files: one unit, validated, named --------------------------------------------------------------


@pytest.fixture
def saved(tmp_path):
    c = sim.predict(TASK, W0, np.linspace(0, 5, 11))
    return c, *c.to_npz(tmp_path / "c.npz")


def test_a_torn_pair_is_refused(saved, tmp_path):
    c, npz, side = saved
    other = sim.predict(sim.SIMTask([1.0, 3.0], 0.1, d=2), W0, np.linspace(0, 5, 11))
    old_side = side.read_text()
    other.to_npz(npz)  # new arrays ...
    side.write_text(old_side)  # ... with the old sidecar: a kill between the two renames
    with pytest.raises(ValueError, match="does not belong to"):
        Curves.load(npz)


@pytest.mark.parametrize(
    "damage, match",
    [
        (lambda npz, side: npz.write_bytes(b"t,ood_loss\n0,1\n"), "not a curves .npz"),
        (lambda npz, side: npz.write_bytes(npz.read_bytes()[:100]), "not a curves .npz"),
        (lambda npz, side: side.write_text("{"), "not a JSON sidecar"),
        (lambda npz, side: side.unlink(), "no such file"),
    ],
)
def test_a_damaged_file_is_named(saved, damage, match):
    c, npz, side = saved
    damage(npz, side)
    with pytest.raises(ValueError, match=match) as e:
        Curves.load(npz)
    assert npz.name in str(e.value) or side.name in str(e.value)


def _rewrite(npz, side, **arrays):
    """Rewrite the pair with changed arrays and a matching hash: only the contents are wrong."""
    import hashlib
    import io

    with np.load(npz) as z:
        data = {k: z[k] for k in z.files}
    data.update(arrays)
    buf = io.BytesIO()
    np.savez(buf, **data)
    npz.write_bytes(buf.getvalue())
    meta = json.loads(side.read_text())
    meta["arrays_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    side.write_text(json.dumps(meta))


def test_inconsistent_contents_are_refused(saved):
    c, npz, side = saved
    _rewrite(npz, side, ood_loss=np.full(11, NAN))
    with pytest.raises(ValueError, match="finite"):
        Curves.load(npz)
    _rewrite(npz, side, ood_loss=c.ood_loss, W=c.W[:5])
    with pytest.raises(ValueError, match="W must have shape"):
        Curves.load(npz)
    _rewrite(npz, side, W=c.W, times=np.stack([c.times, c.times]))
    with pytest.raises(ValueError, match="times must be"):
        Curves.load(npz)
    _rewrite(npz, side, times=c.times)
    meta = json.loads(side.read_text())
    meta["task"]["d"] = 5  # the sidecar's task disagrees with W
    side.write_text(json.dumps(meta))
    with pytest.raises(ValueError):
        Curves.load(npz)
    del meta["model"]
    meta["task"]["d"] = 3
    side.write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=rf"{side.name}: the sidecar misses model"):
        Curves.load(npz)


def test_a_derived_array_of_the_right_rank_but_the_wrong_shape_is_refused(tmp_path):
    c = sim.predict(TASK, W0, np.linspace(0, 1, 11))
    npz, side = c.to_npz(tmp_path / "c.npz")
    bad = np.asarray(c.composition_outputs)[:, :3]  # (T, 3, d): the rank of (T, 2^s, d), not its shape
    _rewrite(npz, side, composition_outputs=bad)
    with pytest.raises(ValueError, match=r"composition_outputs must have shape \(11, 4, 2\)"):
        Curves.load(npz)


def test_flow_limit_names_bad_members():
    from simtheory.simulate import Init, Model, flow_limit, train

    run = train(TASK, Model("linear"), Init("gaussian", 0.1), lr=0.1, steps=3, seeds=[0, 1])
    with pytest.raises(ValueError, match="members must be integer indices of the 2 ensemble members"):
        flow_limit(run, members=["a"])


def test_writes_leave_no_temporary_files_and_get_the_umask_mode(tmp_path):
    from simtheory.files import HOST

    stale = tmp_path / f".x.json.{HOST}.{2**22 + 4321}.abc123.tmp"  # a writer on this host that died
    stale.write_text("left by a killed writer")
    path = atomic_write_text(tmp_path / "x.json", "{}")
    assert not stale.exists() and [p.name for p in tmp_path.iterdir()] == ["x.json"]
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask


def test_curves_select_out_of_range_is_named():
    c = sim.predict(TASK, np.stack([W0, 2 * W0]), np.linspace(0, 1, 3))
    with pytest.raises(ValueError, match="does not index the batch shape"):
        c.select(5)


# -- derivations fail, they do not crash ------------------------------------------------------------


def _wrong_forms():
    import sympy as sp

    from derivations import one_layer_weight_decay as wd
    from simtheory.symbolic import descent, identity_loss

    return {
        # the logistic at half the rate: log((1 - omega)/omega) is complex where the numeric fallback samples
        # omega > 1; this raised "Cannot convert complex to float" instead of failing
        "symmetric": (
            "logistic",
            lambda a_, t_, w0_, kappa_: w0_ / (w0_ + (1 - w0_) * sp.exp(-kappa_ * a_ * t_)),
        ),
        # the penalty's gradient doubled: the derivation's closed form no longer solves its field
        "one_layer_weight_decay": (
            "flow",
            lambda W, A: descent(lambda Z: identity_loss(Z, A) + wd.lam * sum(z**2 for z in Z), W)[0],
        ),
    }


# test_derivations.py doubles the time in every closed form; these are wrong forms of other kinds: a
# half-rate logistic whose numeric check meets complex logarithms, and a wrong penalty in a vector field
@pytest.mark.parametrize("name", ["symmetric", "one_layer_weight_decay"])
def test_verify_reports_a_wrong_form_as_failed_checks(monkeypatch, name):
    import importlib

    import derivations

    module = importlib.import_module(f"derivations.{name}")
    attr, wrong = _wrong_forms()[name]
    monkeypatch.setattr(module, attr, wrong)
    v = type(module.DERIVATION)().verify()  # a fresh instance: formulas are built again with the wrong form
    assert not v.passed, str(v)
    failed = [c for c in v.checks if not c.passed]
    assert failed and all(c.detail for c in failed)
    assert derivations.get(name) is module.DERIVATION  # the registered instance is not rebuilt


def test_check_zero_names_the_residual_and_the_point():
    import sympy as sp

    from simtheory.symbolic import check_zero

    x = sp.Symbol("x", positive=True)
    c = check_zero("x - x^2 = 0", x - x**2)
    assert not c.passed and "residual" in c.detail and "x" in c.detail
    assert not check_zero("1/(x - x) = 0", 1 / (x - x)).passed  # zoo: a failed check, not an exception
    assert check_zero("cancel", (sp.exp(2 * x) - 1) / (sp.exp(x) + 1) - (sp.exp(x) - 1)).passed


# -- the fuzz test: a clear error or a finite result that matches a reference -----------------------

_numbers = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True, width=64),
    st.integers(-(10**30), 10**30),
    st.sampled_from([None, "a", [1.0, 2.0], 1 + 1j, True]),
)


def _clear(exc: Exception, *names: str) -> bool:
    return isinstance(exc, (ValueError, TypeError)) and any(n in str(exc) for n in names)


@settings(max_examples=60, deadline=None)
@given(mu=_numbers, sigma=_numbers, t_max=_numbers, w=_numbers)
def test_fuzz_linear_flow(mu, sigma, t_max, w):
    try:
        task = sim.SIMTask([mu, 1.0], sigma, d=2)
        W0 = np.eye(2) * np.asarray(w, dtype=object)  # whatever w is; linear_flow must judge it
        W = sim.linear_flow(task, W0, [0.0, t_max])
    except Exception as exc:
        assert _clear(exc, "mu", "sigma", "W0", "t", "a_p"), repr(exc)
        return
    assert np.all(np.isfinite(W))
    # reference: W(t) = I - (I - W0) exp(-A t) for diagonal A, written out
    W0 = W0.astype(float)
    ref = np.eye(2) - (np.eye(2) - W0) @ np.diag(np.exp(-task.a * float(t_max)))
    np.testing.assert_allclose(W[-1], ref, rtol=1e-9, atol=1e-9 * max(1.0, np.abs(W0).max()))


@settings(max_examples=40, deadline=None)
@given(scale=_numbers, rtol=_numbers, t_max=_numbers, method=st.sampled_from(["auto", "DOP853", "x", 3]))
def test_fuzz_symmetric_flow(scale, rtol, t_max, method):
    U0 = np.array([[0.3, 0.1], [0.05, 0.2]])
    try:
        W = sim.symmetric_flow(TASK, scale * (U0 @ U0.T), [0.0, t_max], rtol=rtol, method=method)
    except Exception as exc:
        assert _clear(exc, "W0", "t", "rtol", "method", "must be"), repr(exc)
        return
    assert np.all(np.isfinite(W))
    ev = np.linalg.eigvalsh(W[-1])
    assert ev.min() > -1e-6 and ev.max() < 1 + 1e-6  # PSD, and W never overshoots the identity


@settings(max_examples=40, deadline=None)
@given(t=st.lists(_numbers, min_size=0, max_size=4), ff=_numbers, rel=_numbers)
def test_fuzz_classify(t, ff, rel):
    try:
        res = swingby.classify(t, [1.0 / (1 + k) for k in range(len(t))], rel_tol=rel, failure_frac=ff)
    except Exception as exc:
        assert _clear(exc, "t", "loss", "failure_frac", "rel_tol", "increasing"), repr(exc)
        return
    assert res.kind in ("monotone", "failure", "swing-by", "multiple descent")
    assert math.isfinite(res.final_loss)
