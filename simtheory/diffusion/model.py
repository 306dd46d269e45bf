"""Text encoder and conditional U-Net for epsilon prediction, written to run as an ensemble.

The modules use only operations with ``torch.func.vmap`` batching rules (convolutions,
group/layer norm, explicit attention), so K independent models train in one call: their
parameters are stacked along a leading axis (:class:`Ensemble`) and the forward pass is
``vmap(functional_call)``. A single model is the ensemble with K = 1.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn
from torch.nn import functional as F

from .data import MAX_TOKENS, VOCAB

CONDITIONINGS = ("text", "vector")
VECTOR_DIM = 4  # Park's vector prompt: (R, G, B, radius)


@dataclass(frozen=True)
class NetConfig:
    """Architecture. ``channels`` and ``mults`` set the widths per resolution level (the
    resolution halves between levels); cross-attention to the text tokens runs at resolutions
    ``<= attn_resolution``; the pooled text embedding also modulates every residual block (FiLM).

    ``conditioning="vector"`` is Park et al.'s prompt instead of text: a ``VECTOR_DIM``-vector
    ``(R, G, B, radius)`` mapped by a small MLP and added to the time embedding, which modulates every
    residual block (no text encoder, no cross-attention)."""

    resolution: int = 16
    channels: int = 32
    mults: tuple[int, ...] = (1, 2, 2)
    text_dim: int = 64
    attn_resolution: int = 8
    heads: int = 4
    conditioning: str = "text"

    def __post_init__(self):
        object.__setattr__(self, "mults", tuple(int(m) for m in self.mults))
        if self.conditioning not in CONDITIONINGS:
            raise ValueError(f"conditioning must be one of {CONDITIONINGS}; got {self.conditioning!r}")
        if self.resolution % (2 ** (len(self.mults) - 1)):
            raise ValueError(
                f"resolution {self.resolution} must be divisible by 2^(len(mults) - 1) = "
                f"{2 ** (len(self.mults) - 1)}"
            )
        for name in ("channels", "text_dim", "heads"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if self.channels % 8 or self.text_dim % self.heads:
            raise ValueError("channels must be a multiple of 8 (group norm) and text_dim of heads")

    def to_dict(self) -> dict:
        return asdict(self)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(8, ch)


def timestep_embedding(t: torch.Tensor, dim: int) -> torch.Tensor:
    """Sinusoidal embedding of the (integer) diffusion step, ``(B,) -> (B, dim)``."""
    half = dim // 2
    freqs = torch.exp(-math.log(10000.0) * torch.arange(half, dtype=torch.float32, device=t.device) / half)
    args = t.float()[:, None] * freqs[None]
    return torch.cat([torch.cos(args), torch.sin(args)], dim=-1)


def _attention(q, k, v, heads: int, key_mask=None):
    """Multi-head attention, explicit (vmap-safe). q (B, Nq, D), k/v (B, Nk, D), key_mask (B, Nk) bool."""
    B, Nq, D = q.shape
    hd = D // heads
    q = q.reshape(B, Nq, heads, hd).transpose(1, 2)
    k = k.reshape(B, -1, heads, hd).transpose(1, 2)
    v = v.reshape(B, -1, heads, hd).transpose(1, 2)
    logits = q @ k.transpose(-1, -2) / math.sqrt(hd)
    if key_mask is not None:
        logits = logits.masked_fill(~key_mask[:, None, None, :], -1e4)
    return (logits.softmax(-1) @ v).transpose(1, 2).reshape(B, Nq, D)


class TextEncoder(nn.Module):
    """Token + position embeddings and one pre-norm transformer layer; returns the token states
    ``(B, L, D)``, the padding mask and the masked mean (pooled) embedding ``(B, D)``."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.tok = nn.Embedding(len(VOCAB), dim)
        self.pos = nn.Parameter(0.02 * torch.randn(MAX_TOKENS, dim))
        self.ln1, self.ln2, self.ln_out = nn.LayerNorm(dim), nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, 2 * dim), nn.GELU(), nn.Linear(2 * dim, dim))

    def forward(self, tokens):
        mask = tokens != 0
        h = self.tok(tokens) + self.pos
        q, k, v = self.qkv(self.ln1(h)).chunk(3, dim=-1)
        h = h + self.proj(_attention(q, k, v, self.heads, mask))
        h = self.ln_out(h + self.mlp(self.ln2(h)))
        m = mask.to(h.dtype)[..., None]
        pooled = (h * m).sum(1) / m.sum(1).clamp_min(1.0)
        return h, mask, pooled


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice; the embedding (time + pooled text) scales and shifts the middle."""

    def __init__(self, cin: int, cout: int, emb: int):
        super().__init__()
        self.n1, self.c1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.film = nn.Linear(emb, 2 * cout)
        self.n2, self.c2 = _norm(cout), nn.Conv2d(cout, cout, 3, padding=1)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x, emb):
        h = self.c1(F.silu(self.n1(x)))
        scale, shift = self.film(F.silu(emb))[:, :, None, None].chunk(2, dim=1)
        h = self.n2(h) * (1 + scale) + shift
        return self.skip(x) + self.c2(F.silu(h))


class CrossAttention(nn.Module):
    """Image positions attend to the text tokens (residual)."""

    def __init__(self, ch: int, text_dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.norm = _norm(ch)
        self.q = nn.Linear(ch, text_dim)
        self.kv = nn.Linear(text_dim, 2 * text_dim)
        self.out = nn.Linear(text_dim, ch)

    def forward(self, x, text, mask):
        B, C, H, W = x.shape
        h = self.norm(x).reshape(B, C, H * W).transpose(1, 2)
        k, v = self.kv(text).chunk(2, dim=-1)
        a = self.out(_attention(self.q(h), k, v, self.heads, mask))
        return x + a.transpose(1, 2).reshape(B, C, H, W)


class UNet(nn.Module):
    """Conditional U-Net: ``eps = net(x_t, t, prompt)``; the prompt is token ids ``(B, MAX_TOKENS)``
    (text, with its own text encoder) or vectors ``(B, VECTOR_DIM)`` (``conditioning="vector"``)."""

    def __init__(self, config: NetConfig = NetConfig()):
        super().__init__()
        cfg = self.config = config
        c, emb = cfg.channels, 4 * cfg.channels
        text = cfg.conditioning == "text"
        if text:  # created first: the initialisation of text models is as before the vector mode existed
            self.text = TextEncoder(cfg.text_dim, cfg.heads)
        self.time_mlp = nn.Sequential(nn.Linear(c, emb), nn.SiLU(), nn.Linear(emb, emb))
        if text:
            self.text_mlp = nn.Linear(cfg.text_dim, emb)
        else:
            self.vector_mlp = nn.Sequential(nn.Linear(VECTOR_DIM, emb), nn.SiLU(), nn.Linear(emb, emb))
        self.conv_in = nn.Conv2d(3, c, 3, padding=1)
        widths = [c * m for m in cfg.mults]
        res = [cfg.resolution // 2**i for i in range(len(widths))]
        self.down, self.down_attn, self.downsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        cin = c
        for i, w in enumerate(widths):
            self.down.append(ResBlock(cin, w, emb))
            self.down_attn.append(self._attn(w, res[i]))
            self.downsample.append(
                nn.Conv2d(w, w, 3, stride=2, padding=1) if i < len(widths) - 1 else nn.Identity()
            )
            cin = w
        self.mid1, self.mid2 = ResBlock(cin, cin, emb), ResBlock(cin, cin, emb)
        self.mid_attn = self._attn(cin, 0)
        self.up, self.up_attn, self.upsample = nn.ModuleList(), nn.ModuleList(), nn.ModuleList()
        for i in reversed(range(len(widths))):
            self.up.append(ResBlock(cin + widths[i], widths[i], emb))
            self.up_attn.append(self._attn(widths[i], res[i]))
            self.upsample.append(
                nn.Conv2d(widths[i], widths[i - 1], 3, padding=1) if i > 0 else nn.Identity()
            )
            cin = widths[i - 1] if i > 0 else widths[0]
        self.norm_out = _norm(widths[0])
        self.conv_out = nn.Conv2d(widths[0], 3, 3, padding=1)
        nn.init.zeros_(self.conv_out.weight)
        nn.init.zeros_(self.conv_out.bias)

    def _attn(self, ch: int, resolution: int):
        if self.config.conditioning == "text" and resolution <= self.config.attn_resolution:
            return CrossAttention(ch, self.config.text_dim, self.config.heads)
        return None

    @staticmethod
    def _apply_attn(block, h, text, mask):
        return h if block is None else block(h, text, mask)

    def forward(self, x, t, prompt):
        emb = self.time_mlp(timestep_embedding(t, self.config.channels))
        if self.config.conditioning == "text":
            text, mask, pooled = self.text(prompt)
            emb = emb + self.text_mlp(pooled)
        else:
            text = mask = None
            emb = emb + self.vector_mlp(prompt)
        h = self.conv_in(x)
        skips = []
        for block, attn, down in zip(self.down, self.down_attn, self.downsample):
            h = self._apply_attn(attn, block(h, emb), text, mask)
            skips.append(h)
            h = down(h)
        h = self.mid2(self._apply_attn(self.mid_attn, self.mid1(h, emb), text, mask), emb)
        for block, attn, up in zip(self.up, self.up_attn, self.upsample):
            h = self._apply_attn(attn, block(torch.cat([h, skips.pop()], dim=1), emb), text, mask)
            if not isinstance(up, nn.Identity):
                h = up(F.interpolate(h, scale_factor=2.0, mode="nearest"))
        return self.conv_out(F.silu(self.norm_out(h)))


def n_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


def build(config: NetConfig, seed: int) -> UNet:
    """A freshly initialised U-Net; the initialisation depends on ``seed`` only."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return UNet(config)


class Ensemble:
    """K models of one architecture with stacked parameters, evaluated with ``vmap``.

    ``params`` is a dict of leaf tensors of shape ``(K, ...)``; an elementwise optimiser over them
    (AdamW) is exactly K independent optimisers. ``forward(x, t, tokens)`` takes ``(K, B, ...)``.
    """

    def __init__(self, config: NetConfig, seeds, device="cpu"):
        from torch.func import stack_module_state

        models = [build(config, int(s)) for s in seeds]
        params, buffers = stack_module_state(models)
        if buffers:
            raise RuntimeError("the U-Net is expected to have no buffers")
        self.config = config
        self.K = len(models)
        self.base = build(config, 0).to("meta")
        self.params = {k: v.detach().to(device).requires_grad_(True) for k, v in params.items()}

    def _single(self, params, x, t, tokens):
        from torch.func import functional_call

        return functional_call(self.base, params, (x, t, tokens))

    def forward(self, x, t, tokens, params=None):
        from torch.func import vmap

        return vmap(self._single)(self.params if params is None else params, x, t, tokens)

    __call__ = forward

    def member(self, k: int) -> UNet:
        """Model k as an ordinary ``nn.Module`` (a copy)."""
        m = UNet(self.config)
        m.load_state_dict({n: p[k].detach().cpu() for n, p in self.params.items()})
        return m
