"""Input corruption for denoising training: the encoder sees corrupt(x), the decoder explains x."""

from __future__ import annotations

import torch


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Return a corrupted copy of ``x`` (B, *shape).

    kind: ``none``; ``gaussian`` (add N(0, level²)); ``mask`` (zero each value with probability
    ``level``); ``salt-pepper`` (set each value to 0 or 1, equally likely, with probability ``level``).
    """
    if kind == "none" or level == 0:
        return x
    if kind == "gaussian":
        return x + level * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    if kind == "mask":
        return x * (u >= level)
    if kind == "salt-pepper":
        salt = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < 0.5
        return torch.where(u < level, salt.to(x.dtype), x)
    raise ValueError(f"unknown corruption {kind!r}")
