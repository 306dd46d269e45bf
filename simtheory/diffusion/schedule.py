"""DDPM with a cosine noise schedule (Nichol & Dhariwal 2021), epsilon prediction, and a
deterministic DDIM sampler with optional classifier-free guidance."""

from __future__ import annotations

import math

import torch


class Cosine:
    """``alpha_bar(t) = f(t)/f(0)``, ``f(t) = cos^2(((t/T + s)/(1 + s)) pi/2)``, betas clipped at 0.999."""

    def __init__(self, T: int = 1000, s: float = 0.008):
        if T < 2:
            raise ValueError(f"T (diffusion steps) must be >= 2, got {T}")
        self.T = T
        steps = torch.arange(T + 1, dtype=torch.float64) / T
        f = torch.cos((steps + s) / (1 + s) * math.pi / 2) ** 2
        ab = f / f[0]
        betas = (1 - ab[1:] / ab[:-1]).clamp(max=0.999)
        self.alpha_bar = torch.cumprod(1 - betas, dim=0).float()  # alpha_bar[t], t = 0..T-1

    def noisy(self, x0, t, eps):
        """``x_t = sqrt(ab_t) x0 + sqrt(1 - ab_t) eps`` for integer steps ``t`` (any leading shape)."""
        ab = self.alpha_bar.to(x0.device)[t].reshape(*t.shape, *([1] * (x0.dim() - t.dim())))
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps


def ddim_sample(
    eps_fn,
    schedule: Cosine,
    noise: torch.Tensor,
    tokens: torch.Tensor,
    *,
    steps: int = 25,
    guidance: float = 1.0,
    null_tokens: torch.Tensor | None = None,
    batch_dims: int = 1,
) -> torch.Tensor:
    """Deterministic DDIM (eta = 0) from ``noise`` to images in [-1, 1].

    ``eps_fn(x, t, tokens)`` is the network; ``t`` is passed with the leading ``batch_dims`` shape of
    ``noise`` (for an ensemble ``(K, B)``). With ``guidance != 1`` (classifier-free guidance),
    ``eps = eps(null) + guidance (eps(prompt) - eps(null))``. The predicted x0 is clipped to [-1, 1].
    """
    if steps < 1 or steps > schedule.T:
        raise ValueError(f"steps must be in [1, {schedule.T}], got {steps}")
    if guidance != 1.0 and null_tokens is None:
        raise ValueError("classifier-free guidance needs null_tokens")
    ts = torch.linspace(schedule.T - 1, 0, steps).round().long().tolist()
    ab = schedule.alpha_bar.to(noise.device)
    lead = noise.shape[:batch_dims]
    x = noise
    with torch.no_grad():
        for i, t in enumerate(ts):
            tt = torch.full(lead, t, dtype=torch.long, device=noise.device)
            eps = eps_fn(x, tt, tokens)
            if guidance != 1.0:
                eps_null = eps_fn(x, tt, null_tokens)
                eps = eps_null + guidance * (eps - eps_null)
            x0 = ((x - (1 - ab[t]).sqrt() * eps) / ab[t].sqrt()).clamp(-1, 1)
            if i + 1 == len(ts):
                x = x0
            else:
                a_next = ab[ts[i + 1]]
                eps = (x - ab[t].sqrt() * x0) / (1 - ab[t]).sqrt()
                x = a_next.sqrt() * x0 + (1 - a_next).sqrt() * eps
    return x
