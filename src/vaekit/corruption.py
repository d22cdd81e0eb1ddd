"""Input corruption for denoising training: the encoder sees corrupt(x), the decoder explains x.

Each kind of noise is a function registered in ``CORRUPTIONS``; ``corrupt`` applies one by name.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from vaekit.registry import Registry

Corruption = Callable[[torch.Tensor, float, "torch.Generator | None"], torch.Tensor]
CORRUPTIONS: Registry[Corruption] = Registry("noise")
UNIT_LEVEL = ("mask", "salt-pepper")  # kinds whose level is a probability, in [0, 1]


@CORRUPTIONS.register("none")
def _none(x: torch.Tensor, level: float, generator: torch.Generator | None) -> torch.Tensor:
    return x


@CORRUPTIONS.register("gaussian")
def _gaussian(x: torch.Tensor, level: float, generator: torch.Generator | None) -> torch.Tensor:
    """x + N(0, level²)."""
    return x + level * torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)


@CORRUPTIONS.register("mask")
def _mask(x: torch.Tensor, level: float, generator: torch.Generator | None) -> torch.Tensor:
    """Each value zeroed with probability ``level``."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    return x * (u >= level)


@CORRUPTIONS.register("salt-pepper")
def _salt_pepper(x: torch.Tensor, level: float, generator: torch.Generator | None) -> torch.Tensor:
    """Each value set to 0 or 1 (equally likely) with probability ``level``."""
    u = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    salt = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype) < 0.5
    return torch.where(u < level, salt.to(x.dtype), x)


def corrupt(x: torch.Tensor, kind: str, level: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """A corrupted copy of ``x`` (B, *shape) (``x`` itself for ``none`` or level 0); ``kind`` is a
    name of ``CORRUPTIONS``."""
    if level == 0:
        return x
    return CORRUPTIONS[kind](x, level, generator)
