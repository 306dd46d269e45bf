"""DDPM with a cosine noise schedule (Nichol & Dhariwal 2021), epsilon prediction, and the DDIM-family
sampler (deterministic DDIM, eta = 0, and ancestral, eta = 1) with optional classifier-free guidance."""

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


SAMPLERS = ("ancestral", "ddim")


def sample(
    eps_fn,
    schedule: Cosine,
    noise: torch.Tensor,
    tokens: torch.Tensor,
    *,
    steps: int = 25,
    eta: float = 0.0,
    step_noise: torch.Tensor | None = None,
    guidance: float = 1.0,
    null_tokens: torch.Tensor | None = None,
    batch_dims: int = 1,
) -> torch.Tensor:
    """DDIM-family sampler (Song et al. 2021, eq. 12) from ``noise`` to images in [-1, 1].

    ``steps`` evenly spaced diffusion steps from ``T - 1`` down to 0. At each, the network's epsilon gives
    the predicted ``x0`` (clipped to [-1, 1]) and the step to the next time ``s`` is
    ``x_s = sqrt(ab_s) x0 + sqrt(1 - ab_s - sigma^2) eps + sigma z`` with
    ``sigma = eta sqrt((1 - ab_s) / (1 - ab_t)) sqrt(1 - ab_t / ab_s)``: ``eta = 0`` is deterministic DDIM,
    ``eta = 1`` the ancestral (DDPM posterior) sampler on the strided steps, which is how Park et al. read
    their checkpoints. ``step_noise`` holds the ``z`` of the ``steps - 1`` stochastic steps, shape
    ``(steps - 1, *noise.shape[batch_dims - 1:])`` or ``(steps - 1, *noise.shape)`` (broadcast over the
    leading ensemble axis); passing the same tensors at every checkpoint reads every checkpoint with the
    same sampler noise.

    ``eps_fn(x, t, tokens)`` is the network; ``t`` is passed with the leading ``batch_dims`` shape of
    ``noise`` (for an ensemble ``(K, B)``). With ``guidance != 1`` (classifier-free guidance),
    ``eps = eps(null) + guidance (eps(prompt) - eps(null))``.
    """
    if steps < 1 or steps > schedule.T:
        raise ValueError(f"steps must be in [1, {schedule.T}], got {steps}")
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must lie in [0, 1] (0: DDIM, 1: ancestral), got {eta}")
    if guidance != 1.0 and null_tokens is None:
        raise ValueError("classifier-free guidance needs null_tokens")
    if eta > 0 and (step_noise is None or len(step_noise) < steps - 1):
        raise ValueError(f"eta > 0 needs step_noise with steps - 1 = {steps - 1} rows")
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
                break
            a_t, a_s = ab[t], ab[ts[i + 1]]
            eps = (x - a_t.sqrt() * x0) / (1 - a_t).sqrt()  # consistent with the clipped x0
            sigma = eta * ((1 - a_s) / (1 - a_t) * (1 - a_t / a_s)).clamp_min(0).sqrt()
            x = a_s.sqrt() * x0 + (1 - a_s - sigma**2).clamp_min(0).sqrt() * eps
            if eta > 0:
                x = x + sigma * step_noise[i].to(noise.device)
    return x


def ddim_sample(eps_fn, schedule: Cosine, noise, tokens, *, steps: int = 25, **kwargs) -> torch.Tensor:
    """Deterministic DDIM (eta = 0): :func:`sample` with ``eta=0``."""
    return sample(eps_fn, schedule, noise, tokens, steps=steps, eta=0.0, **kwargs)


def ancestral_sample(eps_fn, schedule: Cosine, noise, tokens, step_noise, *, steps: int = 25, **kwargs):
    """Ancestral sampling (eta = 1, Park et al.'s reading): :func:`sample` with ``eta=1``."""
    return sample(eps_fn, schedule, noise, tokens, steps=steps, eta=1.0, step_noise=step_noise, **kwargs)
