"""Training runs: an ensemble of text-conditioned diffusion models over (delta, seed), with
checkpointed concept-space measurements, atomic saves and exact resume.

Members of an ensemble share the architecture and the scene geometry (``data_seed``); member
``(delta, seed)`` sees images rendered at colour signal ``delta`` and starts from the
initialisation and minibatch/noise stream of ``seed``. So two members that differ in delta
differ in nothing else. AdamW over the stacked parameters is exactly one AdamW per member
(it is elementwise and the loss is a sum of per-member losses).

At each checkpoint (a fixed grid, :func:`checkpoint_grid`: quadratically spaced up to
``checkpoint_ramp`` steps, then every ``checkpoint_every``; it does not depend on the run's length) every
member generates ``n_generate`` images per class from the same sampler noise at every checkpoint, as Park
et al. read their models: ancestral sampling (``sampler="ancestral"``, eta = 1, ``sample_steps`` steps)
from an exponential moving average of the weights (``ema`` decay, bias-corrected; 0 reads the raw
weights). Deterministic DDIM on a small, imperfect model draws off-distribution images (backgrounds
darker than any in the data), so it misreads the model; with ``compare_generate > 0`` the raw weights are
also read with DDIM on that many generations per class, a comparison column. The probe maps images to
concept space and the per-sample probabilities (and the probe's P(disc)) are stored.

The run directory holds ``config.json``, ``probe.pt``, ``state.pt`` (parameters, EMA, optimiser, random
streams, step) and ``records.npz`` — each written atomically after every checkpoint. Calling
:func:`train` on an existing run directory resumes it; the result is the same as an uninterrupted run (on
CPU at the same seed and thread count). A finished run resumes to a longer ``steps`` the same way (the
grid is fixed, so the records are those of a run trained to the longer budget from the start).
"""

from __future__ import annotations

import io
import json
import time
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from simtheory import _checks
from simtheory.files import atomic_write_bytes, atomic_write_text

from .data import (
    BLUR,
    PAPER_DELTAS,
    ImageSpec,
    Tokenizer,
    caption,
    captions_for,
    class_labels,
    class_vectors,
    classes,
    condition_vectors,
    render,
    training_classes,
)
from .model import VECTOR_DIM, Ensemble, NetConfig
from .probe import Probe, analytic_probe, train_probe
from .schedule import SAMPLERS, Cosine, sample

N_SHOW = 8  # OOD generations kept as images per checkpoint and member


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers (written to ``config.json``).

    ``blur`` is the Gaussian edge blur in canvas units (one pixel is ``2 / resolution``). The prompt
    is text unless ``net.conditioning == "vector"`` (Park's ``(R, G, B, radius)`` vector: each image's
    own values in training, the class means at test); ``over_prompt`` lists colour exaggerations
    (vector prompts only) at which the OOD class is also generated at every checkpoint (the
    over-prompting test of hidden capabilities). The learning rate is constant (no schedule).
    """

    resolution: int = 16
    concepts: tuple[str, ...] = ("colour", "size")
    deltas: tuple[float, ...] = (0.6,)
    seeds: tuple[int, ...] = (0,)
    size_gap: float = 0.1
    blur: float = BLUR
    data_seed: int = 0
    n_per_class: int = 2048
    net: NetConfig = field(default_factory=lambda: NetConfig(16, 24, (1, 2, 2), 32))
    steps: int = 12_000
    batch: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    p_uncond: float = 0.1
    T: int = 1000
    checkpoint_every: int | None = 250
    checkpoint_ramp: int = 2000
    n_checkpoints: int | None = None
    n_generate: int = 32
    sample_steps: int = 25
    sampler: str = "ancestral"
    ema: float = 0.995
    compare_generate: int = 0
    guidance: float = 1.0
    sample_seed: int = 1234
    probe_steps: int = 1500
    over_prompt: tuple[float, ...] = ()
    device: str = "cpu"

    def __post_init__(self):
        self._check_sequences()
        self._check_numbers()
        self._check_net()
        self._check_grid()
        self._check_combinations()

    def _check_sequences(self) -> None:
        object.__setattr__(self, "concepts", tuple(self.concepts))
        for name in ("concepts", "deltas", "seeds", "over_prompt"):
            if isinstance(getattr(self, name), (str, bytes)) or not hasattr(getattr(self, name), "__len__"):
                raise ValueError(f"{name} must be a tuple, got {getattr(self, name)!r}")
        object.__setattr__(
            self,
            "deltas",
            tuple(_checks.real_number(d, "deltas", low=0.0, low_open=True) for d in self.deltas),
        )
        object.__setattr__(self, "seeds", tuple(_checks.seed_value(s, "seeds") for s in self.seeds))
        object.__setattr__(
            self,
            "over_prompt",
            tuple(_checks.real_number(x, "over_prompt", low=0.0, low_open=True) for x in self.over_prompt),
        )

    def _check_numbers(self) -> None:
        for name in ("data_seed", "sample_seed"):
            _checks.seed_value(getattr(self, name), name)
        _checks.positive_int(self.T, "T", minimum=2, maximum=100_000)
        _checks.real_number(self.lr, "lr", low=0.0, low_open=True)
        _checks.real_number(self.guidance, "guidance", low=0.0)
        _checks.real_number(self.weight_decay, "weight_decay", low=0.0)
        _checks.real_number(self.p_uncond, "p_uncond", low=0.0, high=1.0, high_open=True)
        _checks.real_number(self.ema, "ema", low=0.0, high=1.0, high_open=True)
        if self.sampler not in SAMPLERS:
            raise ValueError(f"sampler must be one of {SAMPLERS}; got {self.sampler!r}")
        _checks.torch_device(self.device, here=False)  # a GPU configuration may be written on a CPU machine
        for name in ("steps", "batch", "n_per_class", "n_generate", "sample_steps", "probe_steps"):
            _checks.positive_int(getattr(self, name), name)
        if not isinstance(self.compare_generate, int) or not 0 <= self.compare_generate <= self.n_generate:
            raise ValueError(
                f"compare_generate must be an integer in [0, n_generate = {self.n_generate}]; "
                f"got {self.compare_generate!r}"
            )

    def _check_net(self) -> None:
        if not isinstance(self.net, (NetConfig, dict)):
            raise ValueError(f"net must be a NetConfig, got {self.net!r}")
        if isinstance(self.net, dict):
            object.__setattr__(self, "net", NetConfig(**self.net))
        if self.net.resolution != self.resolution:
            raise ValueError(
                f"net.resolution ({self.net.resolution}) must equal resolution ({self.resolution})"
            )
        for d in self.deltas:
            ImageSpec(
                self.resolution, d, self.concepts, size_gap=self.size_gap, blur=self.blur
            )  # validates them

    def _check_grid(self) -> None:
        if self.checkpoint_every is None:  # runs written before the fixed grid: about n_checkpoints, by steps
            _checks.positive_int(self.n_checkpoints, "n_checkpoints")
        else:
            _checks.positive_int(self.checkpoint_every, "checkpoint_every")
            _checks.positive_int(self.checkpoint_ramp, "checkpoint_ramp")
            if self.n_checkpoints is not None:
                raise ValueError("n_checkpoints is for the legacy grid only (checkpoint_every=None)")
            grid = checkpoint_grid(self.steps, self.checkpoint_every, self.checkpoint_ramp)
            if grid[-1] != self.steps:
                later = checkpoint_grid(
                    self.steps + self.checkpoint_every, self.checkpoint_every, self.checkpoint_ramp
                )
                raise ValueError(
                    f"steps ({self.steps}) must be a checkpoint of the grid (checkpoint_ramp "
                    f"{self.checkpoint_ramp}, checkpoint_every {self.checkpoint_every}): e.g. {grid[-1]} or "
                    f"{later[later > self.steps][0]}"
                )

    def _check_combinations(self) -> None:
        if self.sample_steps > self.T:
            raise ValueError(f"sample_steps must be <= T = {self.T} (DDIM uses a subset of the T steps)")
        if not self.deltas or not self.seeds:
            raise ValueError("deltas and seeds must be non-empty")
        if self.guidance != 1.0 and self.p_uncond == 0:
            raise ValueError("guidance != 1 needs a model trained with p_uncond > 0")
        if self.prompt == "vector" and len(self.concepts) != 2:
            raise ValueError(
                "the vector prompt (R, G, B, radius) covers colour and size only; got concepts "
                f"{self.concepts}"
            )
        if self.over_prompt and self.prompt != "vector":
            raise ValueError("over_prompt (colour exaggerations) needs net.conditioning='vector'")

    @property
    def prompt(self) -> str:
        """``"text"`` or ``"vector"`` (the network's conditioning)."""
        return self.net.conditioning

    @property
    def members(self) -> list[tuple[float, int]]:
        return [(d, s) for d in self.deltas for s in self.seeds]

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> RunConfig:
        if not isinstance(d, dict):
            raise ValueError(f"a run configuration must be a dict, got {type(d).__name__}")
        unknown = sorted(set(d) - {f.name for f in fields(cls)})
        if unknown:
            raise ValueError(f"unknown run configuration keys: {', '.join(unknown)}")
        # every record written since the first release holds these; later fields have defaults that
        # reproduce the runs written before them
        missing = [k for k in ("resolution", "deltas", "seeds", "net", "steps") if k not in d]
        if missing:
            raise ValueError(f"a run configuration record needs {', '.join(missing)}")
        d = dict(d)
        if "net" in d:
            net = d["net"]
            if not isinstance(net, dict) or "mults" not in net:
                raise ValueError(f"net must be a NetConfig record with mults, got {net!r}")
            try:
                d["net"] = NetConfig(**{**net, "mults": tuple(net["mults"])})
            except TypeError as exc:
                raise ValueError(f"bad net record: {exc}") from None
        d.setdefault("blur", 2 / d.get("resolution", 16))  # runs from before ``blur``: one pixel at any size
        # runs from before the fixed grid and the Park reading: a grid by steps, DDIM on the raw weights
        if "checkpoint_every" not in d:
            d.update(checkpoint_every=None, n_checkpoints=d.get("n_checkpoints", 60))
        d.setdefault("sampler", "ddim")
        d.setdefault("ema", 0.0)
        return cls(**d)

    def checkpoints(self) -> np.ndarray:
        """The checkpoint steps of this run, 0 and ``steps`` included."""
        if self.checkpoint_every is None:
            return checkpoint_steps(self.steps, self.n_checkpoints)
        return checkpoint_grid(self.steps, self.checkpoint_every, self.checkpoint_ramp)

    def extends(self, saved: RunConfig) -> bool:
        """True if this configuration is ``saved`` with a longer (or equal) budget on the same fixed grid:
        a run of ``saved`` resumes to it."""
        return (
            self.checkpoint_every is not None
            and self.steps >= saved.steps
            and replace(saved, steps=self.steps) == self
        )

    def spec(self, delta: float) -> ImageSpec:
        """The images of member delta ``delta``."""
        return ImageSpec(self.resolution, delta, self.concepts, size_gap=self.size_gap, blur=self.blur)


def read_config(run_dir) -> RunConfig:
    """The :class:`RunConfig` of a run directory's ``config.json``, or a ``ValueError`` naming the
    directory or the file (missing, not JSON, not a run configuration)."""
    path = Path(run_dir) / "config.json"
    if not Path(run_dir).is_dir():
        raise ValueError(f"{run_dir}: no such run directory")
    if not path.is_file():
        raise ValueError(f"{run_dir} is not a diffusion run directory (no config.json)")
    try:
        return RunConfig.from_dict(json.loads(path.read_text()))
    except (UnicodeDecodeError, json.JSONDecodeError, ValueError, TypeError) as exc:
        raise ValueError(f"{path}: not a valid run configuration ({exc})") from None


def cpu_config(**changes) -> RunConfig:
    """The CPU default: 16x16, a 0.49M-parameter U-Net, batch 64, 12k steps, one-pixel blur (``2/16``:
    the setting of the measured full run)."""
    return replace(RunConfig(blur=2 / 16), **changes)


def paper_config(**changes) -> RunConfig:
    """The paper-sized GPU setting: 32x32, channels 64/128/256, the paper's six deltas x 3 seeds,
    20k steps."""
    base = RunConfig(
        resolution=32,
        deltas=PAPER_DELTAS,
        seeds=(0, 1, 2),
        net=NetConfig(32, 64, (1, 2, 4), 128, 8),
        steps=20_000,
        batch=128,
        n_generate=64,
        device="cuda",
    )
    return replace(base, **changes)


def checkpoint_steps(steps: int, n: int) -> np.ndarray:
    """The legacy grid (runs written before :func:`checkpoint_grid`): about ``n + 1`` steps
    ``round(steps (k/n)^2)``, k = 0..n (duplicates at the start merged). It depends on ``steps``, so such a
    run cannot be extended."""
    return np.unique(np.round(steps * (np.arange(n + 1) / n) ** 2).astype(np.int64))


def checkpoint_grid(steps: int, every: int, ramp: int) -> np.ndarray:
    """The fixed checkpoint grid up to ``steps``: ``round(ramp (k/m)^2)`` for k = 0..m with
    ``m = max(1, round(2 ramp / every))`` (dense early, where the order of concepts is decided; the
    spacing grows to about ``every`` at ``ramp``), then every ``every`` steps. The grid does not depend on
    ``steps``, so a run can be extended."""
    m = max(1, round(2 * ramp / every))
    early = np.unique(np.round(ramp * (np.arange(m + 1) / m) ** 2).astype(np.int64))
    late = ramp + every * np.arange(1, max(0, (steps - ramp) // every) + 1, dtype=np.int64)
    grid = np.concatenate([early, late])
    return grid[grid <= steps]


class _Stream:
    """One member's random stream (minibatch indices, diffusion steps, noise, prompt dropout)."""

    def __init__(self, seed: int):
        self.g = torch.Generator().manual_seed(int(seed) * 1_000_003 + 7)

    def draw(self, n_data: int, batch: int, shape, T: int, p_uncond: float):
        idx = torch.randint(n_data, (batch,), generator=self.g)
        t = torch.randint(T, (batch,), generator=self.g)
        eps = torch.randn((batch, *shape), generator=self.g)
        drop = torch.rand(batch, generator=self.g) < p_uncond
        return idx, t, eps, drop


def make_optimizer(ens: Ensemble, config: RunConfig) -> torch.optim.AdamW:
    """AdamW over the stacked parameters (the fused kernel on CUDA: one launch for all members)."""
    fused = str(config.device).startswith("cuda")
    return torch.optim.AdamW(
        list(ens.params.values()),
        lr=config.lr,
        weight_decay=config.weight_decay,
        **({"fused": True} if fused else {}),
    )


class Run:
    """A run directory; :meth:`train` runs or resumes it."""

    def __init__(self, config: RunConfig, run_dir):
        if not isinstance(config, RunConfig):
            raise ValueError(f"config must be a RunConfig, got {type(config).__name__}")
        _checks.torch_device(config.device)  # before anything is written
        self.config = config
        self.dir = Path(run_dir)
        if self.dir.exists() and not self.dir.is_dir():
            raise ValueError(f"{self.dir} exists and is not a directory")
        self.dir.mkdir(parents=True, exist_ok=True)
        cfg_path = self.dir / "config.json"
        if cfg_path.exists():
            saved = read_config(self.dir)
            if saved != config and not config.extends(saved):
                longer = "" if saved.checkpoint_every is not None else " (its legacy grid cannot be extended)"
                raise ValueError(
                    f"{self.dir} holds a run with a different configuration{longer}; use another directory, "
                    "or the same configuration with more steps to extend it "
                    f"(saved: {saved}, given: {config})"
                )
            if saved != config:  # extended to a longer budget: the grid and everything else are the same
                atomic_write_text(cfg_path, json.dumps(config.to_dict(), indent=2))
        else:
            atomic_write_text(cfg_path, json.dumps(config.to_dict(), indent=2))
        self.schedule = Cosine(config.T)
        self.tok = Tokenizer()
        s = len(config.concepts)
        self.eval_classes = classes(s)
        self.train_labels = class_labels(training_classes(s), config.n_per_class)

    # --- pieces ---------------------------------------------------------------------------
    def spec(self, delta: float) -> ImageSpec:
        return self.config.spec(delta)

    def probe(self) -> Probe:
        path = self.dir / "probe.pt"
        if path.exists():
            return Probe.load(path)
        c = self.config
        probe = train_probe(c.spec(c.deltas[0]), c.deltas, seed=c.data_seed, steps=c.probe_steps)
        probe.save(path)
        return probe

    def data(self):
        """Training images ``(K, N, 3, H, W)`` in [-1, 1] and prompts: token ids ``(N, MAX_TOKENS)`` shared by
        the members (text), or each member's vectors ``(K, N, VECTOR_DIM)`` (vector prompt)."""
        c = self.config
        images = np.stack([render(self.spec(d), self.train_labels, c.data_seed) for d, _ in c.members])
        if c.prompt == "vector":
            prompts = np.stack(
                [condition_vectors(self.spec(d), self.train_labels, c.data_seed) for d, _ in c.members]
            )
        else:
            prompts = captions_for(self.train_labels, c.concepts, c.data_seed)
        return torch.as_tensor(images * 2 - 1), torch.as_tensor(prompts)

    def null_prompt(self) -> torch.Tensor:
        """The unconditional prompt (classifier-free guidance): ``<null>`` tokens, or the zero vector."""
        if self.config.prompt == "vector":
            return torch.zeros(VECTOR_DIM)
        return torch.as_tensor(self.tok.null())

    def eval_inputs(self):
        """Sampler noise (the same at every checkpoint: the initial noise and, for the ancestral sampler,
        the noise of every step) and the prompts, ``n_generate`` rows each: every class, then the
        over-prompts of the OOD class; ``(K, n, ...)`` per member."""
        c = self.config
        K = len(c.members)
        n_prompts = len(self.eval_classes) + len(c.over_prompt)
        g = torch.Generator().manual_seed(c.sample_seed)
        noise = torch.randn((n_prompts * c.n_generate, 3, c.resolution, c.resolution), generator=g)
        g_steps = torch.Generator().manual_seed(c.sample_seed + 1)
        step_noise = (
            torch.randn((c.sample_steps - 1, *noise.shape), generator=g_steps)
            if c.sampler == "ancestral"
            else None
        )
        if c.prompt == "vector":
            ood = self.eval_classes[-1:]
            per = [
                np.concatenate(
                    [class_vectors(self.spec(d), self.eval_classes)]
                    + [class_vectors(self.spec(d), ood, x) for x in c.over_prompt]
                )
                for d, _ in c.members
            ]
            prompts = torch.as_tensor(np.repeat(np.stack(per), c.n_generate, axis=1))
        else:
            text = [caption(lab, c.concepts) for lab in self.eval_classes]
            tokens = torch.as_tensor(np.repeat(self.tok.batch(text), c.n_generate, axis=0))
            prompts = tokens.expand(K, *tokens.shape)
        return noise, step_noise, prompts

    # --- state ----------------------------------------------------------------------------
    def _save(self, ens, ema, opt, streams, step, records):
        arrays = {k: np.stack(v) for k, v in records.items() if v}
        buf = io.BytesIO()
        np.savez_compressed(buf, **arrays)
        atomic_write_bytes(self.dir / "records.npz", buf.getvalue())
        buf = io.BytesIO()
        torch.save(
            {
                "step": step,
                "params": {k: v.detach().cpu() for k, v in ens.params.items()},
                "ema": {k: v.cpu() for k, v in ema.items()},
                "opt": opt.state_dict(),
                "streams": [s.g.get_state() for s in streams],
            },
            buf,
        )
        atomic_write_bytes(self.dir / "state.pt", buf.getvalue())

    def _load(self, ens, ema, opt, streams, records):
        path = self.dir / "state.pt"
        if not path.exists():
            return 0
        blob = torch.load(path, weights_only=True, map_location="cpu")
        with torch.no_grad():
            for k, v in ens.params.items():
                v.copy_(blob["params"][k])
            for k, v in ema.items():  # runs from before the EMA (ema = 0) saved none
                v.copy_(blob["ema"][k]) if "ema" in blob else v.zero_()
        opt.load_state_dict(blob["opt"])
        for s, st in zip(streams, blob["streams"]):
            s.g.set_state(st)
        with np.load(self.dir / "records.npz") as f:
            keep = f["step"] <= blob["step"]
            for k in records:
                if k == "disc" and k not in f.files:  # runs from before the disc head: a shape always drawn
                    records[k] = list(np.ones(f["probs"][keep].shape[:-1], dtype=np.float32))
                else:
                    records[k] = list(f[k][keep])
        return int(blob["step"])

    # --- main loop --------------------------------------------------------------------------
    def step(self, ens: Ensemble, opt, streams, images, prompts, null) -> torch.Tensor:
        """One AdamW step of every member; returns the per-member losses ``(K,)``."""
        c, K = self.config, ens.K
        draws = [s.draw(images.shape[1], c.batch, images.shape[2:], c.T, c.p_uncond) for s in streams]
        idx = torch.stack([d[0] for d in draws])
        members = torch.arange(K)[:, None]
        x0 = images[members.to(images.device), idx.to(images.device)].to(c.device)
        drop = torch.stack([d[3] for d in draws])
        chosen = (
            prompts[members, idx] if prompts.dim() == 3 else prompts[idx]
        )  # per-member vectors or shared tokens
        tok = torch.where(drop[..., None], null, chosen).to(c.device)
        t = torch.stack([d[1] for d in draws]).to(c.device)
        eps = torch.stack([d[2] for d in draws]).to(c.device)
        pred = ens(self.schedule.noisy(x0, t, eps), t, tok)
        loss_k = ((pred - eps) ** 2).mean(dim=tuple(range(1, pred.dim())))
        opt.zero_grad(set_to_none=True)
        loss_k.sum().backward()
        opt.step()
        return loss_k.detach()

    def _read(self, eps_fn, noise, step_noise, prompts, sampler: str, probe: Probe):
        """Generate from ``noise`` (``(n, 3, H, W)``, shared by the members) with ``sampler`` and probe the
        images: ``(images (K, n, 3, H, W) in [0, 1], concept probabilities (K, n, s), P(disc) (K, n))``."""
        c = self.config
        K, dev = len(c.members), c.device
        null = self.null_prompt().to(dev).expand(*prompts.shape)
        x = sample(
            eps_fn,
            self.schedule,
            noise.to(dev).expand(K, *noise.shape).contiguous(),
            prompts.to(dev),
            steps=c.sample_steps,
            eta=1.0 if sampler == "ancestral" else 0.0,
            step_noise=None if step_noise is None else step_noise[:, None].to(dev),
            guidance=c.guidance,
            null_tokens=null,
            batch_dims=2,
        )
        images = ((x + 1) / 2).clamp(0, 1).cpu().numpy()
        probs, disc = zip(*(probe.read(im) for im in images))
        return images, np.stack(probs), np.stack(disc)

    def evaluate(self, ens: Ensemble, ema: dict | None, probe: Probe, noise, step_noise, prompts) -> dict:
        """One checkpoint's reading: the configured sampler on the EMA weights (``ema``: the bias-corrected
        average, or None for the raw weights) and, with ``compare_generate``, DDIM on the raw weights."""
        c = self.config
        K, n_cls, n_gen, s = ens.K, len(self.eval_classes), c.n_generate, len(c.concepts)

        def net(params):
            return lambda x, t, tok: ens(x, t, tok, params=params)

        images, probs, disc = self._read(net(ema), noise, step_noise, prompts, c.sampler, probe)
        analytic = np.stack([analytic_probe(im, self.spec(d)) for im, (d, _) in zip(images, c.members)])
        ood = images.reshape(K, -1, n_gen, *images.shape[2:])[:, n_cls - 1, :N_SHOW]
        probs = probs.reshape(K, -1, n_gen, s)
        out = {
            "probs": probs[:, :n_cls].astype(np.float32),
            "disc": disc.reshape(K, -1, n_gen)[:, :n_cls].astype(np.float32),
            "analytic": analytic.reshape(K, -1, n_gen, 2)[:, :n_cls].astype(np.float32),
            "ood_images": np.round(ood * 255).astype(np.uint8),
        }
        if c.over_prompt:
            out["over_probs"] = probs[:, n_cls:].astype(np.float32)
        if c.compare_generate:
            n_c = c.compare_generate
            rows = (np.arange(n_cls)[:, None] * n_gen + np.arange(n_c)[None]).ravel()
            _, p_c, d_c = self._read(net(None), noise[rows], None, prompts[:, rows], "ddim", probe)
            out["probs_compare"] = p_c.reshape(K, n_cls, n_c, s).astype(np.float32)
            out["disc_compare"] = d_c.reshape(K, n_cls, n_c).astype(np.float32)
        return out

    def _empty_records(self) -> dict:
        """The record lists of a run, one entry per checkpoint each."""
        c = self.config
        names = ["step", "probs", "disc", "analytic", "ood_images", "train_loss", "wall_s"]
        names += ["over_probs"] * bool(c.over_prompt) + ["probs_compare", "disc_compare"] * bool(
            c.compare_generate
        )
        return {name: [] for name in names}

    def _ema_weights(self, ema: dict, step: int) -> dict | None:
        """The bias-corrected EMA ``ema / (1 - decay^step)`` (Adam-style, so early checkpoints are not pulled
        to the zero start), or None (raw weights) without EMA or at step 0."""
        d = self.config.ema
        if d == 0 or step == 0:
            return None
        return {k: v / (1 - d**step) for k, v in ema.items()}

    def train(
        self, *, stop_at: int | None = None, budget_s: float | None = None, progress: bool = True
    ) -> Path:
        """Train (or resume) to ``config.steps``; ``stop_at`` ends early after the first checkpoint at
        or past that step (as if the process were killed there), ``budget_s`` after the first checkpoint
        past that many seconds of this call (a later call resumes). Returns the run directory.

        The run directory is claimed while it trains (:func:`simtheory.files.claim`): a second process on
        it is refused with the first one's PID and host (the claim dies with its process, so a killed run
        is resumed by the next call)."""
        from simtheory.files import claim

        held = claim(self.dir / "run")
        if not held.acquire():
            raise ValueError(
                f"{self.dir} is being trained by {held.holder()}; wait for it or use another directory"
            )
        try:
            return self._train(stop_at, progress, budget_s)
        finally:
            held.release()

    def _train(self, stop_at: int | None, progress: bool, budget_s: float | None = None) -> Path:
        from tqdm.auto import tqdm

        call_start = time.perf_counter()
        c = self.config
        probe = self.probe().require()
        images, tokens = self.data()
        images = images.to(c.device)  # the training images stay on the device; minibatches are gathered there
        noise, step_noise, eval_tokens = self.eval_inputs()
        null = self.null_prompt()
        ens = Ensemble(c.net, [s for _, s in c.members], c.device)
        ema = {k: torch.zeros_like(v, requires_grad=False) for k, v in ens.params.items()}
        opt = make_optimizer(ens, c)
        streams = [_Stream(s) for _, s in c.members]
        records = self._empty_records()
        step = self._load(ens, ema, opt, streams, records)
        todo = [int(k) for k in c.checkpoints() if k > step or (k == 0 and not records["step"])]
        K = ens.K
        loss_sum, n_loss, last_ckpt = torch.zeros(K, device=c.device), 0, step
        bar = tqdm(total=c.steps, initial=step, disable=not progress, desc=f"diffusion x{K}", unit="step")
        t_start = time.perf_counter() - (records["wall_s"][-1] if records["wall_s"] else 0.0)
        params, averages = list(ens.params.values()), list(ema.values())
        for target in todo:
            while step < target:
                loss_sum += self.step(ens, opt, streams, images, tokens, null)  # no host sync per step
                if c.ema:
                    with torch.no_grad():
                        for avg, p in zip(averages, params):
                            avg.lerp_(p, 1.0 - c.ema)
                n_loss += 1
                step += 1
                bar.update(1)
            mean_loss = (loss_sum / max(n_loss, 1)).cpu().numpy() if n_loss else np.full(K, np.nan)
            if not np.isfinite(mean_loss).all() and n_loss:
                bad = [c.members[k] for k in range(K) if not np.isfinite(mean_loss[k])]
                raise FloatingPointError(
                    f"training diverged between steps {last_ckpt} and {step} for members (delta, seed) "
                    f"{bad}; lower lr (now {c.lr})"
                )
            rec = self.evaluate(ens, self._ema_weights(ema, step), probe, noise, step_noise, eval_tokens)
            for k, v in rec.items():
                records[k].append(v)
            records["step"].append(np.int64(step))
            records["train_loss"].append(mean_loss.astype(np.float32))
            records["wall_s"].append(np.float64(time.perf_counter() - t_start))
            loss_sum, n_loss, last_ckpt = torch.zeros(K, device=c.device), 0, step
            self._save(ens, ema, opt, streams, step, records)
            out_of_time = budget_s is not None and time.perf_counter() - call_start >= budget_s
            if (stop_at is not None and step >= stop_at) or out_of_time:
                break
        bar.close()
        return self.dir


def train(config: RunConfig, run_dir, **kwargs) -> Path:
    """Run (or resume) ``config`` in ``run_dir``; see :class:`Run`."""
    return Run(config, run_dir).train(**kwargs)
