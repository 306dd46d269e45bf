"""simtheory.diffusion: data, tokenizer, model/ensemble, schedule and sampler, probes, runs
(resume, ensemble = separate runs), analysis, and the quick end-to-end validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from simtheory.diffusion import analysis
from simtheory.diffusion.data import (
    PAPER_DELTAS,
    ImageSpec,
    Tokenizer,
    caption,
    captions_for,
    class_labels,
    classes,
    concept_signal,
    render,
    training_classes,
)
from simtheory.diffusion.model import Ensemble, NetConfig, build
from simtheory.diffusion.probe import (
    Probe,
    ProbeAccuracyError,
    ProbeNet,
    analytic_probe,
)
from simtheory.diffusion.schedule import Cosine, ddim_sample
from simtheory.diffusion.train import RunConfig, checkpoint_steps, cpu_config, train

TINY_NET = NetConfig(16, 8, (1, 2), 16, attn_resolution=8, heads=2)


def tiny(**changes) -> RunConfig:
    base = dict(deltas=(0.6,), steps=12, batch=8, n_per_class=32, net=TINY_NET, n_checkpoints=3, n_generate=2,
                sample_steps=3, probe_steps=400)
    return cpu_config(**{**base, **changes})


# --- data -------------------------------------------------------------------------------------

def test_render_is_deterministic_in_the_seed_and_in_range():
    spec = ImageSpec(16, 0.5)
    labs = class_labels(classes(2), 5)
    a, b, c = render(spec, labs, 3), render(spec, labs, 3), render(spec, labs, 4)
    assert a.shape == (20, 3, 16, 16) and a.dtype == np.float32
    assert np.array_equal(a, b) and not np.allclose(a, c)
    assert a.min() >= 0 and a.max() <= 1


def test_delta_changes_only_the_colour():
    labs = class_labels(classes(2), 8)
    lo, hi = render(ImageSpec(16, 0.2, jitter=False), labs, 1), render(ImageSpec(16, 0.7, jitter=False), labs, 1)
    # background pixels (far from the shape) are identical; the green channel of the shape differs by the
    # known amount only where the shape is
    bg = np.all(np.abs(lo - hi) < 1e-6, axis=1)
    assert bg.mean() > 0.3
    assert not np.allclose(lo, hi)


def test_classes_and_training_classes():
    assert classes(2).tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    tc = training_classes(2).tolist()
    assert tc == [[0, 0], [0, 1], [1, 0]] and [1, 1] not in tc
    assert len(training_classes(3)) == 4 and [1, 1, 1] not in training_classes(3).tolist()


def test_colour_signal_grows_with_delta_and_crosses_the_size_signal():
    sig = [concept_signal(ImageSpec(16, d), n=128) for d in (0.137, 0.4, 0.689)]
    colour = [s["colour"] for s in sig]
    assert colour[0] < colour[1] < colour[2]
    assert sig[0]["colour"] < sig[0]["size"] and sig[2]["colour"] > sig[2]["size"] * 0.9
    cross = analysis.signal_crossing(16)
    assert 0.137 < cross < 0.8


@pytest.mark.parametrize("kwargs, name", [({"delta": 0.0}, "delta"), ({"delta": 0.9}, "delta"),
                                          ({"resolution": 4}, "resolution"), ({"size_gap": 0.5}, "size_gap"),
                                          ({"concepts": ("size", "colour")}, "concepts")])
def test_image_spec_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        ImageSpec(**kwargs)


def test_render_rejects_bad_labels():
    with pytest.raises(ValueError, match="labels"):
        render(ImageSpec(), np.array([[0, 2]]), 0)


def test_three_concepts_render_squares_and_captions():
    spec = ImageSpec(16, 0.6, ("colour", "size", "shape"))
    x = render(spec, class_labels(classes(3), 2), 0)
    assert x.shape == (16, 3, 16, 16)
    assert caption([1, 1, 1], spec.concepts) == "a small blue square"


# --- tokenizer --------------------------------------------------------------------------------

def test_tokenizer_word_orders_share_words_and_reject_unknown_words():
    tok = Tokenizer()
    ids = [tok.encode(caption([1, 1], template=k)) for k in range(7)]
    content = {tok.index[w] for w in ("small", "blue", "circle")}
    assert all(content <= set(i.tolist()) for i in ids)
    assert len({tuple(i) for i in ids}) == 7  # the orders differ
    assert tok.encode("A small, blue circle.").tolist() == tok.encode("a small blue circle").tolist()
    assert tok.null()[0] == tok.index["<null>"]
    with pytest.raises(ValueError, match="vocabulary.*green"):
        tok.encode("a green circle")
    captions = captions_for(class_labels(classes(2), 50), ("colour", "size"), 0)
    assert captions.shape == (200, 8) and len({tuple(c) for c in captions}) > 4


# --- model ------------------------------------------------------------------------------------

def test_ensemble_forward_equals_its_members():
    cfg = NetConfig(16, 8, (1, 2), 16, heads=2)
    ens = Ensemble(cfg, [3, 5])
    x = torch.randn(2, 4, 3, 16, 16)
    t = torch.randint(0, 1000, (2, 4))
    tok = torch.as_tensor(Tokenizer().batch(["a small blue circle"] * 4)).expand(2, 4, 8)
    with torch.no_grad():
        # the zero-initialised output conv gives zeros: perturb every parameter to compare real outputs
        for p in ens.params.values():
            p.add_(0.05 * torch.randn_like(p))
        y = ens(x, t, tok)
        for k in range(2):
            m = ens.member(k)
            assert torch.allclose(y[k], m(x[k], t[k], tok[k]), atol=1e-5)
    assert not torch.allclose(build(cfg, 3).conv_in.weight, build(cfg, 5).conv_in.weight)
    assert torch.equal(build(cfg, 3).conv_in.weight, build(cfg, 3).conv_in.weight)


def test_net_config_rejects_bad_sizes():
    with pytest.raises(ValueError, match="resolution"):
        NetConfig(10, 8, (1, 2, 2))
    with pytest.raises(ValueError, match="channels"):
        NetConfig(16, 12)


# --- schedule ---------------------------------------------------------------------------------

def test_cosine_schedule_and_ddim_with_an_oracle_recovers_the_data():
    s = Cosine(1000)
    ab = s.alpha_bar
    assert torch.all(ab[1:] < ab[:-1]) and 0.99 < ab[0] <= 1 and 0 <= ab[-1] < 1e-3
    x0 = torch.rand(6, 3, 8, 8) * 2 - 1
    noise = torch.randn_like(x0)

    def oracle(x, t, tokens):  # the exact epsilon for data concentrated on x0
        a = s.alpha_bar[t][:, None, None, None]
        return (x - a.sqrt() * x0) / (1 - a).sqrt()

    out = ddim_sample(oracle, s, noise, None, steps=10)
    assert torch.allclose(out, x0, atol=1e-4)
    xt = s.noisy(x0, torch.full((6,), 500), noise)
    assert torch.allclose(oracle(xt, torch.full((6,), 500), None), noise, atol=1e-4)


def test_ddim_rejects_bad_arguments():
    with pytest.raises(ValueError, match="steps"):
        ddim_sample(lambda x, t, c: x, Cosine(10), torch.zeros(1, 3, 8, 8), None, steps=11)
    with pytest.raises(ValueError, match="null_tokens"):
        ddim_sample(lambda x, t, c: x, Cosine(10), torch.zeros(1, 3, 8, 8), None, steps=5, guidance=2.0)


# --- probes -----------------------------------------------------------------------------------

@pytest.mark.parametrize("delta", [PAPER_DELTAS[0], PAPER_DELTAS[-1]])
@pytest.mark.parametrize("gap", [0.1, 0.3])
def test_analytic_probe_reads_clean_images(delta, gap):
    spec = ImageSpec(16, delta, size_gap=gap)
    labs = class_labels(classes(2), 100)
    p = analytic_probe(render(spec, labs, 7), spec)
    assert ((p > 0.5) == labs).mean(axis=0).min() >= 0.99


def test_probe_refuses_below_its_accuracy_threshold(tmp_path):
    probe = Probe(ProbeNet(2), {"delta=0.6": {"colour": 1.0, "size": 0.95}})
    with pytest.raises(ProbeAccuracyError, match="0.95"):
        probe(np.zeros((1, 3, 16, 16), np.float32))
    ok = Probe(ProbeNet(2), {"delta=0.6": {"colour": 1.0, "size": 0.995}})
    x = np.random.default_rng(0).uniform(size=(3, 3, 16, 16)).astype(np.float32)
    ok.save(tmp_path / "p.pt")
    again = Probe.load(tmp_path / "p.pt")
    assert np.array_equal(ok(x), again(x)) and again.accuracy == ok.accuracy


# --- runs -------------------------------------------------------------------------------------

def test_checkpoint_steps_are_quadratic():
    k = checkpoint_steps(12000, 60)
    assert k[0] == 0 and k[-1] == 12000 and 55 <= len(k) <= 61
    gaps = np.diff(k)
    assert gaps[-1] > 10 * gaps[1]


@pytest.mark.parametrize("kwargs, name", [({"lr": -1.0}, "lr"), ({"steps": 0}, "steps"), ({"p_uncond": 1.0}, "p_uncond"),
                                          ({"deltas": (0.0,)}, "delta"), ({"resolution": 32}, "resolution"),
                                          ({"guidance": 3.0, "p_uncond": 0.0}, "guidance")])
def test_run_config_rejects_bad_input(kwargs, name):
    with pytest.raises(ValueError, match=name):
        tiny(**kwargs)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    cfg = tiny(deltas=(0.3, 0.6))
    d = tmp_path_factory.mktemp("runs") / "full"
    train(cfg, d, progress=False)
    return cfg, d


def test_run_directory_holds_config_probe_state_and_records(full_run):
    cfg, d = full_run
    assert RunConfig.from_dict(json.loads((d / "config.json").read_text())) == cfg
    rec = analysis.load(d)
    assert rec.steps.tolist() == checkpoint_steps(cfg.steps, cfg.n_checkpoints).tolist()
    C, K = len(rec.steps), 2
    assert rec.probs.shape == (C, K, 4, cfg.n_generate, 2)
    assert np.all((rec.probs >= 0) & (rec.probs <= 1))
    assert rec.ood_images.shape[:2] == (C, K) and rec.ood_images.dtype == np.uint8
    assert np.isfinite(rec.train_loss[1:]).all()


def test_resumed_run_equals_uninterrupted_run(full_run, tmp_path):
    cfg, d = full_run
    part = tmp_path / "part"
    train(cfg, part, stop_at=3, progress=False)
    assert analysis.load(part).steps[-1] < cfg.steps
    train(cfg, part, progress=False)  # resume
    a, b = analysis.load(d), analysis.load(part)
    assert np.array_equal(a.steps, b.steps)
    assert np.array_equal(a.probs, b.probs) and np.array_equal(a.train_loss, b.train_loss, equal_nan=True)


def test_ensemble_members_equal_separate_runs(full_run, tmp_path):
    _, d = full_run
    both = analysis.load(d)
    alone = analysis.load(train(tiny(deltas=(0.6,)), tmp_path / "alone", progress=False))
    np.testing.assert_allclose(both.train_loss[1:, 1], alone.train_loss[1:, 0], rtol=1e-4)


def test_run_directory_refuses_another_config(full_run):
    _, d = full_run
    with pytest.raises(ValueError, match="different configuration"):
        train(tiny(deltas=(0.3, 0.6), lr=5e-4), d, progress=False)


# --- analysis ---------------------------------------------------------------------------------

def test_learning_times_and_non_monotone_on_synthetic_curves():
    steps = np.arange(0, 1000, 10.0)
    C = np.stack([1 / (1 + np.exp(-(steps - 300) / 30)), 1 / (1 + np.exp(-(steps - 700) / 30))], axis=1)
    t = analysis.learning_times(steps, C, 0.8)
    assert 300 < t[0] < 400 and 700 < t[1] < 800
    bump = np.exp(-steps / 200) + 0.5 * np.exp(-((steps - 500) / 80) ** 2)
    assert analysis.non_monotone(steps, bump)[0]
    assert not analysis.non_monotone(steps, np.exp(-steps / 200))[0]
    rate, r2 = analysis.fit_exponential_decay(steps, 3 * np.exp(-2.0 * steps / 1000))
    assert rate == pytest.approx(2.0) and r2 == pytest.approx(1.0)


def test_sim_fit_recovers_the_rate_ratio_of_a_sim_trajectory():
    from simtheory.theory import symmetric_flow

    steps = np.linspace(0, 8000, 40)
    a = np.array([0.9, 0.3])
    U0 = np.array([[0.2, 0.0], [0.05, 0.15]])
    C = symmetric_flow(np.diag(a), U0 @ U0.T, steps / 1000).sum(axis=-1)
    fit = analysis.sim_fit(steps, C)
    assert fit["rms"] < 1e-3
    assert fit["a"][0] / fit["a"][1] == pytest.approx(3.0, rel=0.05)


# --- end to end -------------------------------------------------------------------------------

def test_quick_diffusion_validation_passes(tmp_path):
    """Smoke test: the pipeline runs and the in-distribution prompts get the right colour."""
    from validation import diffusion

    report = diffusion.run(quick=True, out=tmp_path)
    assert report.passed, str(report)
    assert (tmp_path / "diffusion_figure6.png").exists()


@pytest.mark.slow
def test_full_diffusion_validation_composes(tmp_path):
    """CPU default at delta = 0.6 (about 26 minutes on 2 cores): the OOD prompt composes."""
    from validation import diffusion

    report = diffusion.run(quick=False, out=tmp_path)
    assert report.passed, str(report)


def test_report_section_embeds_an_existing_diffusion_run(full_run, tmp_path):
    from simtheory.report import Config, _Report, _section_diffusion

    cfg, d = full_run
    r = _Report(Config(out=tmp_path, verify=False, diffusion_run=d))
    _section_diffusion(r)
    text = "\n".join(r.lines)
    assert "## 7. Text-conditioned diffusion model" in text
    assert "### `validation.diffusion`" in text and "| delta | seed |" in text
    assert (tmp_path / "figures" / "diffusion_figure6.png").exists()
    assert r.summary["diffusion"]["checks"]
    assert analysis.load(d).steps[-1] == cfg.steps  # analysed, not retrained


def test_cli_reproduce_has_diffusion_flags():
    from simtheory.cli import build_parser

    args = build_parser().parse_args(["reproduce", "--diffusion-run", "somewhere"])
    assert args.diffusion_run == "somewhere" and not args.diffusion


@pytest.mark.slow
def test_three_concept_run_and_analysis(tmp_path):
    """The three-concept variant end to end (about 1.5 minutes: the 32x32 probe dominates)."""
    # shape needs 32x32: at 16x16 a small square and a small circle cover the same pixel or two,
    # and the probe (rightly) refuses to run at 0.91 held-out shape accuracy
    cfg = tiny(concepts=("colour", "size", "shape"), resolution=32, net=NetConfig(32, 8, (1, 2), 16, attn_resolution=16, heads=2),
               probe_steps=1000)
    rec = analysis.load(train(cfg, tmp_path / "three", progress=False))
    assert rec.probs.shape[2:] == (8, cfg.n_generate, 3)
    res = analysis.analyse(rec, fit=False)
    assert len(res["members"]) == 1 and np.isfinite(res["members"][0]["final_mse"])


def test_merge_runs_that_differ_in_seeds(full_run, tmp_path):
    cfg, d = full_run
    other = train(tiny(deltas=(0.3, 0.6), seeds=(1,)), tmp_path / "seed1", progress=False)
    a, b = analysis.load(d), analysis.load(other)
    m = analysis.merge([b, a])
    assert m.members == [(0.3, 0), (0.3, 1), (0.6, 0), (0.6, 1)]
    assert np.array_equal(m.probs[:, 1], b.probs[:, 0]) and np.array_equal(m.probs[:, 2], a.probs[:, 1])
    assert np.array_equal(m.train_loss[:, 3], b.train_loss[:, 1], equal_nan=True)
    with pytest.raises(ValueError, match="more than one run"):
        analysis.merge([a, a])
    with pytest.raises(ValueError, match="same configuration"):
        analysis.merge([a, analysis.load(train(tiny(deltas=(0.3, 0.6), seeds=(2,), lr=5e-4), tmp_path / "lr", progress=False))])
    from validation import diffusion

    rep = diffusion.run(run_dir=[d, other])
    assert len(rep.metrics["members"]) == 4
