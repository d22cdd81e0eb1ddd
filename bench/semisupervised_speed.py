"""M2's training step against the plain VAE's on MNIST-sized data: the K-fold decoder is the floor.

Times forward + backward + Adam of one step of 100 unlabelled and 100 labelled examples (784 inputs,
the M2 recipe of bench/semisupervised.py: MLP 500, z 50, K = 10), against the plain VAE's step on the
same 200 examples, and M2 with the encoder reading each (example, class) pair in full (the generic
path) against reading each example once (``Encoder.with_extra_inputs``), and M2 with a confident
classifier with subnormal floats kept against flushed to zero (``vaekit.threads``), and the ADGM (M2 with
an auxiliary variable a of 100, ``--auxiliary-dim 100``) against M2. One thread; run
it on an idle machine.

    python bench/semisupervised_speed.py
"""

from __future__ import annotations

import time

import torch

from vaekit.config import ModelConfig
from vaekit.data.base import Batch
from vaekit.models import build_model
from vaekit.models.networks import Encoder
from vaekit.objectives import ELBO, SemiSupervisedBound

STEPS, REPEATS = 20, 3


def step_seconds(model, objective, batch) -> float:
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        for _ in range(STEPS):
            optimizer.zero_grad(set_to_none=True)
            objective(model, batch).loss.mean().backward()
            optimizer.step()
        best = min(best, (time.perf_counter() - started) / STEPS)
    return best


def main() -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    x = (torch.rand(200, 1, 28, 28) < 0.3).float()
    labels = torch.cat([torch.full((100,), -1), torch.arange(100) % 10])
    common = dict(input_shape=(1, 28, 28), latent_dim=50, hidden=(500,), activation="silu")
    vae = build_model(ModelConfig(**common))
    m2 = build_model(ModelConfig(kind="m2", context_dim=10, **common))
    plain = step_seconds(vae, ELBO(), Batch(x, x))
    shared = step_seconds(m2, SemiSupervisedBound(alpha=5.0), Batch(x, x, context=labels))
    original = m2.encoder.with_extra_inputs
    m2.encoder.with_extra_inputs = lambda x, rows, extra: Encoder.with_extra_inputs(m2.encoder, x, rows, extra)  # the generic join
    generic = step_seconds(m2, SemiSupervisedBound(alpha=5.0), Batch(x, x, context=labels))
    m2.encoder.with_extra_inputs = original
    adgm = step_seconds(build_model(ModelConfig(kind="m2", context_dim=10, auxiliary_dim=100, **common)), SemiSupervisedBound(alpha=5.0),
                        Batch(x, x, context=labels))  # fmt: skip
    print(f"plain VAE step (200 examples):              {1000 * plain:7.1f} ms")
    print(f"M2 step, each (example, class) pair encoded: {1000 * generic:7.1f} ms  ({generic / plain:.2f}x the VAE's)")
    print(f"M2 step, each example's first layer once:    {1000 * shared:7.1f} ms  ({shared / plain:.2f}x the VAE's)")
    print(f"reading each example once: {generic / shared:.2f}x faster")
    print(f"ADGM step (a of 100):                        {1000 * adgm:7.1f} ms  ({adgm / shared:.2f}x M2's)")
    print("the floor: 100 x 10 + 100 = 1100 decoder rows against the VAE's 200, 5.5x")
    # a trained classifier is confident: q(y|x) of the wrong classes falls below float32's smallest
    # normal (1.2e-38), and the bound's gradient for those pairs, scaled by it, is subnormal throughout
    with torch.no_grad():
        m2.classifier.logits.bias.copy_(torch.where(torch.arange(10) == 3, 50.0, -50.0))  # q = e^-100 ≈ 4e-44
    torch.set_flush_denormal(False)
    kept = step_seconds(m2, SemiSupervisedBound(alpha=5.0), Batch(x, x, context=labels))
    flushed = step_seconds(m2, SemiSupervisedBound(alpha=5.0), Batch(x, x, context=labels)) if torch.set_flush_denormal(True) else kept
    print(f"M2 step, a confident classifier, subnormals kept:    {1000 * kept:7.1f} ms")
    print(f"M2 step, a confident classifier, subnormals flushed: {1000 * flushed:7.1f} ms  ({kept / flushed:.2f}x faster; vaekit flushes)")


if __name__ == "__main__":
    main()
