"""Property-guided design in a molecule VAE's latent space (Gómez-Bombarelli et al. 2018).

1. ``fit_predictor``: a small network f(z) is fitted, after training, to a property of training molecules
   at their posterior means (the property computed by RDKit; ``vaekit.molecules.properties``).
2. ``optimise``: gradient ascent on f(z) − λ·||z||²/2 (the second term is log p(z) up to a constant, so the
   search stays where the decoder has seen codes) from several starting codes at once; every few steps
   every path is decoded greedily, and each new valid molecule is scored by RDKit, one property
   evaluation each. The result ranks what was found, novel molecules (not in the training set) first.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from vaekit.errors import ConfigError
from vaekit.molecules import chem
from vaekit.molecules.properties import property_of


@dataclass
class Predictor:
    """f(z): an MLP from codes (N, L) to the property, fitted on standardised values (``mean``, ``std``
    undo that); ``r2``: its R² on the held-out fifth of the molecules it was fitted to."""

    net: nn.Module
    mean: float
    std: float
    r2: float

    def __call__(self, z: torch.Tensor) -> torch.Tensor:
        return self.net(z).squeeze(-1) * self.std + self.mean  # (N,)


def fit_predictor(codes: torch.Tensor, values: torch.Tensor, *, epochs: int = 300, seed: int = 0) -> Predictor:
    """Fit f(z) to ``values`` (N,) at ``codes`` (N, L): 4/5 to fit (full-batch Adam), 1/5 held out for R²."""
    if len(codes) < 10:
        raise ConfigError(f"a property predictor needs at least 10 valid molecules, got {len(codes)}")
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(codes), generator=g)
    cut = len(codes) * 4 // 5
    fit, held = order[:cut], order[cut:]
    mean, std = float(values[fit].mean()), float(values[fit].std().clamp_min(1e-6))
    target = (values - mean) / std
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(codes.shape[1], 128), nn.SiLU(), nn.Linear(128, 128), nn.SiLU(), nn.Linear(128, 1))
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3, weight_decay=1e-4)
    for _ in range(epochs):
        optimizer.zero_grad(set_to_none=True)
        loss = (net(codes[fit]).squeeze(-1) - target[fit]).pow(2).mean()
        loss.backward()
        optimizer.step()
    net.eval().requires_grad_(False)
    with torch.no_grad():
        residual = (net(codes[held]).squeeze(-1) - target[held]).pow(2).mean()
        r2 = float(1 - residual / target[held].var().clamp_min(1e-12))
    return Predictor(net, mean, std, r2)


@dataclass
class Found:
    """A molecule the search decoded: its canonical SMILES, the property's value, whether it is novel, and
    the step it was first decoded at."""

    smiles: str
    value: float
    novel: bool
    step: int


@dataclass
class Design:
    """What ``optimise`` found: ``found`` every distinct valid molecule, best first (novel ones before the
    others at equal rank: see ``best``); ``evaluations`` the property evaluations made (one per distinct
    valid molecule); ``decoded`` the decodings made; ``invalid`` how many of them RDKit could not read."""

    found: list[Found] = field(default_factory=list)
    evaluations: int = 0
    decoded: int = 0
    invalid: int = 0

    def best(self, k: int = 3, *, novel: bool = True) -> list[Found]:
        """The ``k`` best molecules found (only the novel ones when ``novel``)."""
        return [f for f in self.found if f.novel or not novel][:k]


def optimise(
    decode,
    predictor: Predictor,
    starts: torch.Tensor,
    property_name: str,
    training: set[str],
    *,
    steps: int = 100,
    step_size: float = 0.05,
    prior_weight: float = 0.1,
    decode_every: int = 5,
) -> Design:
    """Gradient ascent on f(z) − ``prior_weight``·||z||²/2 from ``starts`` (M, L), decoding every path every
    ``decode_every`` steps with ``decode`` (codes (M, L) -> canonical-or-raw SMILES list) and scoring each new
    valid molecule with RDKit. ``training``: canonical SMILES of the training set (what is not novel)."""
    if steps < 1 or step_size <= 0 or prior_weight < 0 or decode_every < 1:
        raise ConfigError("the search needs steps >= 1, a positive step size, a non-negative prior weight and decode_every >= 1")
    z = starts.clone().requires_grad_(True)
    design, seen = Design(), {}
    for step in range(steps + 1):
        if step % decode_every == 0 or step == steps:
            _score(decode(z.detach()), step, property_name, training, design, seen)
        if step == steps:
            break
        objective = predictor(z) - prior_weight * 0.5 * z.pow(2).sum(-1)  # (M,)
        (grad,) = torch.autograd.grad(objective.sum(), z)
        with torch.no_grad():
            z += step_size * grad
    design.found = sorted(seen.values(), key=lambda f: -f.value)
    return design


def _score(smiles: list[str], step: int, property_name: str, training: set[str], design: Design, seen: dict[str, Found]) -> None:
    design.decoded += len(smiles)
    for s in smiles:
        canonical = chem.canonical(s)
        if canonical is None:
            design.invalid += 1
            continue
        if canonical in seen:
            continue
        value = property_of(property_name, canonical)
        design.evaluations += 1
        seen[canonical] = Found(canonical, value, canonical not in training, step)
