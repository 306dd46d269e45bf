"""Probes that map images to concept space ``C = (P(blue), P(small), ...)``.

* :class:`Probe`: a small CNN with one softmax head per concept, trained on all ``2^s`` classes
  (rendered fresh from a seed at each of the colour signals it will be used for), and a "disc" head
  trained against images without a shape (:func:`no_disc_images`: blank backgrounds, pixel noise,
  smooth blotches). Its concept reading is ``0.5 + P(disc) (P(value 1 | disc) - 0.5)``: an image
  without a shape (an untrained model's noise) reads as chance on every concept, never as a class.
  It measures its held-out accuracy per concept, on the disc question, and per delta, and refuses to
  run below ``min_accuracy`` (99%).
* :func:`analytic_probe`: colour and area read from the pixels, as a cross-check that needs no
  training (it knows the rendering rules and delta).
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from .data import ImageSpec, class_labels, classes, render


class ProbeAccuracyError(RuntimeError):
    """Raised when a probe below its accuracy threshold is asked to classify."""


class ProbeNet(nn.Module):
    """Two conv stages, mean- and max-pooled; two logits per concept, and two for "a shape is drawn"
    when ``disc`` (probes saved before the disc head existed have none)."""

    def __init__(self, n_concepts: int, width: int = 32, disc: bool = True):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, width, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(width, 2 * width, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.Conv2d(2 * width, 2 * width, 3, padding=1),
            nn.ReLU(),
        )
        self.disc = bool(disc)
        self.n_concepts = n_concepts
        self.heads = nn.Linear(4 * width, 2 * (n_concepts + self.disc))  # mean- and max-pooled features

    def forward(self, x):
        h = self.features(x * 2 - 1)
        h = torch.cat([h.mean(dim=(2, 3)), h.amax(dim=(2, 3))], dim=1)
        return self.heads(h).reshape(-1, self.n_concepts + self.disc, 2)  # logits per concept (+ disc)


class Probe:
    """Trained concept classifier; ``probe(images)`` -> ``P(value 1)`` per concept, ``(n, s)``, pulled to
    chance (0.5) by ``1 - P(disc)`` (:meth:`read` also returns ``P(disc)``)."""

    def __init__(self, net: ProbeNet, accuracy: dict, min_accuracy: float = 0.99):
        self.net = net.eval()
        self.accuracy = accuracy  # {"delta=0.6": {"colour": 0.998, "size": 0.995}, ...}
        self.min_accuracy = min_accuracy

    @property
    def worst_accuracy(self) -> float:
        return min(a for per in self.accuracy.values() for a in per.values())

    def require(self) -> Probe:
        """Raise :class:`ProbeAccuracyError` unless every held-out accuracy reaches ``min_accuracy``."""
        if self.worst_accuracy < self.min_accuracy:
            raise ProbeAccuracyError(
                f"probe held-out accuracy {self.worst_accuracy:.4f} is below min_accuracy = "
                f"{self.min_accuracy}; "
                f"per delta and concept: {self.accuracy}. Train it longer (steps) or on more data."
            )
        return self

    def read(self, images) -> tuple[np.ndarray, np.ndarray]:
        """``(concepts (n, s), disc (n,))``: the concept reading ``0.5 + P(disc) (P(value 1 | disc) - 0.5)``
        and ``P(disc)`` (1 for a probe without a disc head)."""
        self.require()
        x = torch.as_tensor(np.asarray(images, dtype=np.float32))
        out = []
        with torch.no_grad():
            for lo in range(0, len(x), 512):
                out.append(self.net(x[lo : lo + 512]).softmax(-1)[..., 1])
        p = torch.cat(out).numpy().astype(np.float64)
        s = self.net.n_concepts
        disc = p[:, s] if self.net.disc else np.ones(len(p))
        return 0.5 + disc[:, None] * (p[:, :s] - 0.5), disc

    def __call__(self, images) -> np.ndarray:
        return self.read(images)[0]

    def save(self, path) -> None:
        import io

        from simtheory.files import atomic_write_bytes, atomic_write_text

        buf = io.BytesIO()
        torch.save(
            {
                "state": self.net.state_dict(),
                "accuracy": self.accuracy,
                "n_concepts": self.net.n_concepts,
                "disc": self.net.disc,
                "min_accuracy": self.min_accuracy,
            },
            buf,
        )
        atomic_write_bytes(path, buf.getvalue())
        # its held-out accuracy beside it, readable without torch (committed with a run's records)
        atomic_write_text(
            Path(path).with_suffix(".json"),
            json.dumps({"accuracy": self.accuracy, "min_accuracy": self.min_accuracy}, indent=2),
        )

    @staticmethod
    def accuracy_of(run_dir) -> float:
        """The worst held-out accuracy of the probe of a run directory: from ``probe.json`` (written beside
        ``probe.pt``; what committed records keep), else from ``probe.pt``."""
        side = Path(run_dir) / "probe.json"
        if side.is_file():
            acc = json.loads(side.read_text())["accuracy"]
            return min(a for per in acc.values() for a in per.values())
        return Probe.load(Path(run_dir) / "probe.pt").worst_accuracy

    @classmethod
    def load(cls, path) -> Probe:
        blob = torch.load(path, weights_only=True)
        net = ProbeNet(blob["n_concepts"], disc=bool(blob.get("disc", False)))
        net.load_state_dict(blob["state"])
        return cls(net, blob["accuracy"], blob["min_accuracy"])


def train_probe(
    spec: ImageSpec,
    deltas=None,
    *,
    seed: int = 0,
    steps: int = 1500,
    n_per_class: int = 1024,
    n_test: int = 256,
    batch: int = 128,
    lr: float = 2e-3,
    min_accuracy: float = 0.99,
) -> Probe:
    """Train a :class:`Probe` on all classes at each colour signal in ``deltas`` (default:
    ``spec.delta``); held-out accuracy is measured on a fresh scene seed for every delta."""
    deltas = tuple(deltas) if deltas is not None else (spec.delta,)
    s = len(spec.concepts)
    labs = class_labels(classes(s), n_per_class)
    xs, ys = [], []
    for j, d in enumerate(deltas):
        sp = replace(spec, delta=d)
        xs.append(render(sp, labs, seed=10_000 * seed + j))
        ys.append(np.concatenate([labs, np.ones((len(labs), 1), dtype=labs.dtype)], axis=1))
    n_neg = len(labs) * len(deltas) // 2  # a third of the data has no shape
    xs.append(no_disc_images(n_neg, spec.resolution, seed=10_000 * seed + 9_000))
    ys.append(np.full((n_neg, s + 1), -100, dtype=labs.dtype))  # no concept label (ignored) ...
    ys[-1][:, s] = 0  # ... and no disc
    x, y = torch.as_tensor(np.concatenate(xs)), torch.as_tensor(np.concatenate(ys))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = ProbeNet(s)
        g = torch.Generator().manual_seed(seed)
        opt = torch.optim.Adam(net.parameters(), lr)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, lr, total_steps=steps)
        for _ in range(steps):
            idx = torch.randint(len(x), (batch,), generator=g)
            logits = net(x[idx])
            loss = F.cross_entropy(logits.reshape(-1, 2), y[idx].reshape(-1), ignore_index=-100)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    net.eval()
    accuracy = {}
    test_labs = class_labels(classes(s), n_test)
    blank = no_disc_images(len(test_labs), spec.resolution, seed=10_000 * seed + 9_500)
    with torch.no_grad():
        no_disc_right = float(np.mean(net(torch.as_tensor(blank)).argmax(-1).numpy()[:, s] == 0))
    for j, d in enumerate(deltas):
        xt = render(replace(spec, delta=d), test_labs, seed=10_000 * seed + 5_000 + j)
        with torch.no_grad():
            pred = net(torch.as_tensor(xt)).argmax(-1).numpy()
        accuracy[f"delta={d:g}"] = {
            **{c: float(np.mean(pred[:, p] == test_labs[:, p])) for p, c in enumerate(spec.concepts)},
            "disc": float(np.mean(pred[:, s] == 1)),
            "no disc": no_disc_right,
        }
    return Probe(net, accuracy, min_accuracy)


def no_disc_images(n: int, resolution: int, seed: int) -> np.ndarray:
    """``n`` images without a shape, ``(n, 3, H, H)`` float32 in [0, 1]: in equal parts blank backgrounds
    (uniform [0.8, 1] per channel, as in the data), backgrounds with pixel noise (sd U[0.05, 0.5]),
    clipped Gaussian noise around grey (sd U[0.1, 1]: what an untrained denoiser samples) and smooth
    blotches (noise upsampled from 2-4 px grids). The probe's "disc" head is trained against them."""
    rng = np.random.default_rng(seed)
    H = resolution
    kind = np.arange(n) % 4
    bg = rng.uniform(0.8, 1.0, size=(n, 3, 1, 1))
    out = np.broadcast_to(bg, (n, 3, H, H)).copy()
    noisy = kind == 1
    out[noisy] += rng.uniform(0.05, 0.5, size=(noisy.sum(), 1, 1, 1)) * rng.standard_normal(
        (noisy.sum(), 3, H, H)
    )
    grey = kind == 2
    out[grey] = 0.5 + rng.uniform(0.1, 1.0, size=(grey.sum(), 1, 1, 1)) * rng.standard_normal(
        (grey.sum(), 3, H, H)
    )
    for i in np.flatnonzero(kind == 3):
        g = int(rng.integers(2, 5))
        coarse = rng.uniform(0.0, 1.0, size=(3, g, g))
        rep = -(-H // g)
        out[i] = np.kron(coarse, np.ones((rep, rep)))[:, :H, :H]
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def analytic_probe(images, spec: ImageSpec) -> np.ndarray:
    """``(P(blue), P(small))`` read from pixels, ``(n, 2)``; needs no training.

    The green channel is ``0.5 - delta/2`` inside the shape for both colours and at least 0.8 in the
    background, so ``m = (bg_G - G) / (bg_G - (0.5 - delta/2))`` is the shape's coverage of a pixel (``bg``
    per image: the median of the pixels the shape does not cover). Area ``sum(m)`` gives the radius (small
    below ``0.4 + size_gap/2``, logistic of width 0.025); the shape's colour ``(x - bg (1 - m)) / m``,
    weighted by ``m^4`` (well-covered pixels), gives ``B - R`` (blue at ``+delta``, red at ``-delta``;
    logistic of width ``delta/4``).
    """
    x = np.asarray(images, dtype=np.float64)
    H = x.shape[-1]
    g_obj = 0.5 - spec.delta / 2
    G = x[:, 1]
    bg = np.quantile(x.reshape(len(x), 3, -1), 0.9, axis=-1)  # background covers >= ~45% of pixels
    m = np.clip((bg[:, 1, None, None] - G) / (bg[:, 1, None, None] - g_obj), 0, 1)
    area = m.sum(axis=(1, 2)) * (2.0 / H) ** 2
    radius = np.sqrt(area / np.pi)
    w = m**4  # weight the well-covered pixels (never all zero)
    col = (x - bg[:, :, None, None] * (1 - m[:, None])) / np.maximum(m[:, None], 1e-3)
    br = ((col[:, 2] - col[:, 0]) * w).sum(axis=(1, 2)) / np.maximum(w.sum(axis=(1, 2)), 1e-9)
    z_blue = np.clip(br / (spec.delta / 4), -50, 50)
    z_small = np.clip((0.4 + spec.size_gap / 2 - radius) / 0.025, -50, 50)
    return np.stack([1 / (1 + np.exp(-z_blue)), 1 / (1 + np.exp(-z_small))], axis=1)
