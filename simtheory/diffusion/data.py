"""Synthetic concept images (after Park et al. 2024), captions and the word-level tokenizer.

Every image is one soft-edged shape on a light random background. Concepts are binary; class
``(0, ..., 0)`` is the base (red, large, circle, ...) and value 1 flips a concept. The
geometry of an image (position, radius, background, colour jitter) is drawn from the seed alone,
so the same ``data_seed`` renders the same scenes at every colour signal ``delta``: a sweep over
``delta`` changes nothing else.

Conventions (``../shared/design.md``, "Diffusion arm"): canvas ``[-1, 1]^2``; position uniform in
``[-0.5, 0.5]^2``; background uniform ``[0.8, 1]`` per channel; red
``(.5 + delta/2, .5 - delta/2, .5 - delta/2)``, blue ``(.5 - delta/2, .5 - delta/2, .5 + delta/2)``,
training colours jittered uniformly by ``+-delta/8`` per channel; radius ``U[0.4 + gap, 0.7 + gap]`` (large;
``size_gap``
= 0.1 gives the paper's ``U[0.5, 0.8]``) or ``U[0.1, 0.4]`` (small); the mask is rendered with 4x4
supersampling and blurred by a Gaussian whose standard deviation ``blur`` is given in canvas units, so that
resolutions are comparable (Park et al.: one pixel at 32x32, ``blur = 2/32 = 0.0625``; one pixel at resolution
H is ``2/H``). A square has the area of the circle of the same radius.

Park's vector prompt (``condition_vectors``, ``class_vectors``) is ``(R, G, B, radius)``: each training
image's own values, and the class means at test.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass

import numpy as np

#: concept name -> (word for value 0, word for value 1)
CONCEPTS: dict[str, tuple[str, str]] = {
    "colour": ("red", "blue"),
    "size": ("large", "small"),
    "shape": ("circle", "square"),
}
SMALL = (0.1, 0.4)
SIZE_GAP = 0.1  # large radii are U[0.4 + gap, 0.7 + gap]: U[0.5, 0.8] by default
PAPER_DELTAS = (0.137, 0.247, 0.358, 0.468, 0.579, 0.689)
BLUR = 2 / 32  # Gaussian blur sd in canvas units (the canvas is [-1, 1]): Park's one pixel at 32x32
_SUPERSAMPLE = 4


def _check_concepts(concepts) -> tuple[str, ...]:
    concepts = tuple(concepts)
    if (
        len(concepts) < 2
        or concepts[:2] != ("colour", "size")
        or len(set(concepts)) != len(concepts)
        or any(c not in CONCEPTS for c in concepts)
    ):
        raise ValueError(f"concepts must start with ('colour', 'size') and may add 'shape'; got {concepts!r}")
    return concepts


def classes(n_concepts: int) -> np.ndarray:
    """All ``2^s`` classes as 0/1 rows, in binary order (row 0 the base, the last row all ones)."""
    return np.array(list(itertools.product((0, 1), repeat=n_concepts)), dtype=np.int64)


def training_classes(n_concepts: int) -> np.ndarray:
    """The classes seen in training: the base and each single concept flipped (the SIM axes).

    For two concepts this is red-large, blue-large and red-small; the held-out (OOD)
    composition is the all-ones class (blue-small).
    """
    return classes(n_concepts)[training_rows(n_concepts)]


def training_rows(n_concepts: int) -> np.ndarray:
    """Indices of the training classes among :func:`classes` (rows with at most one concept flipped)."""
    return np.flatnonzero(classes(n_concepts).sum(axis=1) <= 1)


@dataclass(frozen=True)
class ImageSpec:
    """How images are drawn: resolution, colour signal ``delta`` and concepts."""

    resolution: int = 16
    delta: float = 0.6
    concepts: tuple[str, ...] = ("colour", "size")
    jitter: bool = True
    size_gap: float = SIZE_GAP
    blur: float = BLUR

    def __post_init__(self):
        if (
            isinstance(self.blur, bool)
            or not isinstance(self.blur, (int, float, np.integer, np.floating))
            or not np.isfinite(self.blur)
            or not 0 <= self.blur <= 0.5
        ):
            raise ValueError(
                f"blur (Gaussian sd in canvas units, one pixel = 2/resolution) must lie in [0, 0.5]; "
                f"got {self.blur!r}"
            )
        if not np.isfinite(self.size_gap) or not 0 <= self.size_gap <= 0.3:
            raise ValueError(
                f"size_gap must lie in [0, 0.3] (large radii U[0.4 + gap, 0.7 + gap]); got {self.size_gap!r}"
            )
        if not isinstance(self.resolution, (int, np.integer)) or self.resolution < 8:
            raise ValueError(f"resolution must be an integer >= 8, got {self.resolution!r}")
        if not np.isfinite(self.delta) or not 0 < self.delta <= 0.8:
            raise ValueError(
                f"delta (colour signal) must lie in (0, 0.8] so colours stay in [0, 1]; got {self.delta!r}"
            )
        object.__setattr__(self, "concepts", _check_concepts(self.concepts))

    def colour(self, value) -> np.ndarray:
        """Base RGB of colour value 0 (red) or 1 (blue), shape ``(n, 3)``."""
        value = np.asarray(value)[:, None]
        d = self.delta / 2
        red = np.array([0.5 + d, 0.5 - d, 0.5 - d])
        blue = np.array([0.5 - d, 0.5 - d, 0.5 + d])
        return np.where(value == 1, blue, red)


def scene_params(labels: np.ndarray, seed: int, size_gap: float = SIZE_GAP) -> dict[str, np.ndarray]:
    """Geometry of one image per label row, from ``seed`` only (independent of delta)."""
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    u_pos = rng.uniform(-0.5, 0.5, size=(n, 2))
    u_rad = rng.uniform(size=n)
    background = rng.uniform(0.8, 1.0, size=(n, 3))
    jitter = rng.uniform(-1.0, 1.0, size=(n, 3))
    small = labels[:, 1] == 1
    lo = np.where(small, SMALL[0], SMALL[1] + size_gap)
    hi = np.where(small, SMALL[1], SMALL[1] + 0.3 + size_gap)
    return {"position": u_pos, "radius": lo + (hi - lo) * u_rad, "background": background, "jitter": jitter}


def _gauss_kernel(sd_px: float) -> np.ndarray:
    half = max(1, int(np.ceil(3 * sd_px)))
    x = np.arange(-half, half + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sd_px) ** 2) if sd_px > 0 else (x == 0).astype(np.float64)
    return k / k.sum()


def _blur(mask: np.ndarray, sd_px: float) -> np.ndarray:
    """Separable Gaussian blur of ``sd_px`` pixels (zero padding: the shape fades out at the border)."""
    k = _gauss_kernel(sd_px)
    pad = len(k) // 2
    m = np.pad(mask, ((0, 0), (pad, pad), (0, 0)))
    m = sum(k[i] * m[:, i : i + mask.shape[1], :] for i in range(len(k)))
    m = np.pad(m, ((0, 0), (0, 0), (pad, pad)))
    return sum(k[i] * m[:, :, i : i + mask.shape[2]] for i in range(len(k)))


def render(spec: ImageSpec, labels, seed: int, chunk: int = 1024) -> np.ndarray:
    """Images for the label rows, ``(n, 3, H, H)`` float32 in [0, 1], deterministic in ``seed``."""
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 2 or labels.shape[1] != len(spec.concepts) or not np.isin(labels, (0, 1)).all():
        raise ValueError(
            f"labels must be 0/1 rows of length {len(spec.concepts)} (one per concept); got shape "
            f"{labels.shape}"
        )
    p = scene_params(labels, seed, spec.size_gap)
    H, S = spec.resolution, _SUPERSAMPLE
    g = (np.arange(H * S) + 0.5) / (H * S) * 2 - 1  # sub-pixel centres on [-1, 1]
    out = np.empty((len(labels), 3, H, H), dtype=np.float32)
    has_shape = "shape" in spec.concepts
    for lo in range(0, len(labels), chunk):
        sl = slice(lo, lo + chunk)
        cx, cy = p["position"][sl, 0, None, None], p["position"][sl, 1, None, None]
        r = p["radius"][sl, None, None]
        dx, dy = g[None, None, :] - cx, g[None, :, None] - cy
        mask = (dx**2 + dy**2 <= r**2).astype(np.float64)
        if has_shape:
            half = r * np.sqrt(np.pi) / 2
            square = ((np.abs(dx) <= half) & (np.abs(dy) <= half)).astype(np.float64)
            mask = np.where(labels[sl, 2, None, None] == 1, square, mask)
        mask = mask.reshape(-1, H, S, H, S).mean(axis=(2, 4))
        mask = _blur(mask, spec.blur * H / 2)[:, None]
        col = spec.colour(labels[sl, 0])
        if spec.jitter:
            col = col + p["jitter"][sl] * spec.delta / 8
        img = p["background"][sl, :, None, None] * (1 - mask) + col[:, :, None, None] * mask
        out[sl] = np.clip(img, 0.0, 1.0)
    return out


def condition_vectors(spec: ImageSpec, labels, seed: int) -> np.ndarray:
    """Park's vector prompt of each rendered image: its own ``(R, G, B, radius)``, ``(n, 4)`` float32.

    The same scene draw as :func:`render` (same ``seed``): the jittered colour and the radius of each
    image."""
    labels = np.asarray(labels, dtype=np.int64)
    p = scene_params(labels, seed, spec.size_gap)
    col = spec.colour(labels[:, 0])
    if spec.jitter:
        col = col + p["jitter"] * spec.delta / 8
    return np.concatenate([col, p["radius"][:, None]], axis=1).astype(np.float32)


def class_vectors(spec: ImageSpec, class_rows, colour_scale: float = 1.0) -> np.ndarray:
    """The class-mean vector prompts ``(R, G, B, radius)`` of ``class_rows``, ``(n, 4)`` float32.

    ``colour_scale > 1`` exaggerates the colour away from grey (R and B move ``colour_scale`` times as far
    from 0.5 as the class colour; G is shared by both colours and kept): the over-prompting test of hidden
    capabilities (Park et al.)."""
    rows = np.asarray(class_rows, dtype=np.int64)
    col = spec.colour(rows[:, 0]).copy()
    col[:, [0, 2]] = 0.5 + colour_scale * (col[:, [0, 2]] - 0.5)
    small = rows[:, 1] == 1
    radius = np.where(small, sum(SMALL) / 2, SMALL[1] + spec.size_gap + 0.15)
    return np.concatenate([col, radius[:, None]], axis=1).astype(np.float32)


def class_labels(class_rows, n_per_class: int) -> np.ndarray:
    """``n_per_class`` copies of each class row, class-major."""
    class_rows = np.asarray(class_rows, dtype=np.int64)
    return np.repeat(class_rows, n_per_class, axis=0)


# --- captions and tokenizer -------------------------------------------------------------------

_TEMPLATES = (
    "a {size} {colour} {shape}",
    "a {colour} {size} {shape}",
    "{size} {colour} {shape}",
    "a {shape} that is {size} and {colour}",
    "a {shape} that is {colour} and {size}",
    "a {colour} {shape} that is {size}",
    "a {size} {shape} that is {colour}",
)
PAD, NULL = "<pad>", "<null>"
VOCAB: tuple[str, ...] = (
    PAD,
    NULL,
    "a",
    "that",
    "is",
    "and",
    *sorted({w for pair in CONCEPTS.values() for w in pair}),
)
MAX_TOKENS = 8


def caption(label, concepts=("colour", "size"), template: int = 0) -> str:
    """Text prompt for one class, e.g. ``"a small blue circle"`` (template 0 is the canonical one)."""
    concepts = _check_concepts(concepts)
    words = {c: CONCEPTS[c][int(v)] for c, v in zip(concepts, label)}
    words.setdefault("shape", "circle")
    return _TEMPLATES[template % len(_TEMPLATES)].format(**words)


class Tokenizer:
    """Word-level tokenizer over the fixed vocabulary :data:`VOCAB`; pads to ``MAX_TOKENS``.

    The null prompt (for classifier-free guidance) is ``<null>`` followed by padding.
    """

    vocab = VOCAB
    max_tokens = MAX_TOKENS

    def __init__(self):
        self.index = {w: i for i, w in enumerate(self.vocab)}

    def encode(self, text: str) -> np.ndarray:
        words = re.findall(r"[a-z]+", text.lower())
        unknown = [w for w in words if w not in self.index]
        if unknown:
            raise ValueError(
                f"prompt {text!r} has words outside the vocabulary: {unknown}; known: {list(self.vocab[2:])}"
            )
        if not words or len(words) > self.max_tokens:
            raise ValueError(f"prompt {text!r} must have 1 to {self.max_tokens} words")
        ids = [self.index[w] for w in words]
        return np.array(ids + [0] * (self.max_tokens - len(ids)), dtype=np.int64)

    def null(self) -> np.ndarray:
        return np.array([self.index[NULL]] + [0] * (self.max_tokens - 1), dtype=np.int64)

    def batch(self, texts) -> np.ndarray:
        return np.stack([self.encode(t) for t in texts])


def captions_for(labels, concepts, seed: int) -> np.ndarray:
    """Token ids ``(n, MAX_TOKENS)``, one caption per image with a seeded random word order."""
    rng = np.random.default_rng([seed, 1])
    templates = rng.integers(len(_TEMPLATES), size=len(labels))
    tok = Tokenizer()
    cache: dict = {}
    out = np.empty((len(labels), MAX_TOKENS), dtype=np.int64)
    for i, (lab, tpl) in enumerate(zip(map(tuple, labels), templates)):
        key = (lab, int(tpl))
        if key not in cache:
            cache[key] = tok.encode(caption(lab, concepts, int(tpl)))
        out[i] = cache[key]
    return out


def concept_signal(spec: ImageSpec, n: int = 512, seed: int = 12345) -> dict[str, float]:
    """Pixel-space signal of each concept: ``|E[x | c = 1] - E[x | c = 0]|`` (per pixel, RMS).

    The analogue of the SIM centroid distance ``mu_p``: two balanced sets differing only in
    concept p are rendered from the same scene seed and their mean images compared.
    """
    out = {}
    base = np.zeros((n, len(spec.concepts)), dtype=np.int64)
    for p, name in enumerate(spec.concepts):
        flipped = base.copy()
        flipped[:, p] = 1
        diff = render(spec, flipped, seed).mean(axis=0) - render(spec, base, seed).mean(axis=0)
        out[name] = float(np.sqrt(np.mean(diff**2)))
    return out
