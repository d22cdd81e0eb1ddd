"""The same numbers on a GPU as on the CPU, for each kind of model in the catalogue.

    python bench/device_check.py [--device cuda]

Each model (one-layer MLP VAE, gated HVAE + VampPrior, IAF and planar flows, conditional VAE, conv and
residual conv VAEs, plain autoencoder, M2 with an auxiliary variable (the ADGM), GRU sequence VAE) is
built on the CPU with random weights, copied to the device, and scored there and on the CPU at the
same fixed latent draws: the per-example negative ELBO (``example_scores``, 4 draws) and the
importance-weighted estimate (``iw_log_likelihood``, K = 64, common random numbers). Then one
bf16-autocast training step of its objective (M2's bound with half the examples unlabelled) runs on
the device and must give a finite loss and finite gradients. Prints one line per model with the
largest differences and exits non-zero if any model differs by more than float32 rounding (relative
1e-4) or fails its step.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from vaekit.config import ModelConfig  # noqa: E402
from vaekit.data import Dataset  # noqa: E402
from vaekit.data.base import Batch  # noqa: E402
from vaekit.evaluation import example_scores, iw_log_likelihood  # noqa: E402
from vaekit.models import build_model  # noqa: E402
from vaekit.models.sequence import END, PAD, START  # noqa: E402
from vaekit.objectives import ELBO, SemiSupervisedBound  # noqa: E402

MNIST = (1, 28, 28)
MODELS = {
    "vae-mlp": ModelConfig(input_shape=MNIST, latent_dim=8, hidden=(64, 32)),
    "hvae-vampprior-gated": ModelConfig(
        arch="gated", input_shape=MNIST, latent_dim=16, latent_layers=(8, 8), hidden=(64, 64), prior="vampprior", prior_components=50
    ),
    "iwae2-chain": ModelConfig(
        input_shape=MNIST, latent_dim=12, latent_layers=(8, 4), hierarchy="chain", hidden=(64, 32), activation="tanh"
    ),
    "vae-iaf": ModelConfig(input_shape=MNIST, latent_dim=8, hidden=(64,), flow="iaf", flow_steps=2),
    "vae-planar": ModelConfig(input_shape=MNIST, latent_dim=8, hidden=(64,), flow="planar", flow_steps=3),
    "cvae-label": ModelConfig(input_shape=MNIST, latent_dim=8, hidden=(64,), condition="label", context_dim=10),
    "vae-conv-mixture": ModelConfig(arch="conv", input_shape=MNIST, latent_dim=8, hidden=(8, 16), prior="mixture", prior_components=10),
    "vae-resnet-logistic": ModelConfig(
        arch="resnet", input_shape=(3, 16, 16), latent_dim=8, hidden=(8, 16), likelihood="discretized-logistic"
    ),
    "ae-mlp": ModelConfig(kind="ae", input_shape=MNIST, latent_dim=8, hidden=(64,), likelihood="gaussian"),
    "m2-adgm": ModelConfig(kind="m2", input_shape=MNIST, latent_dim=8, hidden=(64,), context_dim=10, auxiliary_dim=4),
    "gru-smiles": ModelConfig(
        arch="gru", likelihood="categorical", input_shape=(24,), vocabulary_size=30, latent_dim=8, hidden=(32, 32), embedding_dim=16
    ),
}


def batch(config: ModelConfig, n: int = 64) -> tuple[torch.Tensor, torch.Tensor | None]:
    g = torch.Generator().manual_seed(0)
    if config.likelihood == "categorical":  # token sequences of lengths 1..T-2, stored as <start> tokens <end> <pad>...
        width = config.input_shape[0]
        x = torch.full((n, width), PAD)
        for i, length in enumerate(torch.randint(1, width - 1, (n,), generator=g).tolist()):
            tokens = torch.randint(END + 1, config.vocabulary_size, (length,), generator=g).tolist()
            x[i, : length + 2] = torch.tensor([START, *tokens, END])
        return x, None
    x = (torch.rand((n, *config.input_shape), generator=g) < 0.3).float()
    if config.likelihood == "discretized-logistic":
        x = torch.randint(0, 256, (n, *config.input_shape), generator=g).float() / 255
    labelled = config.condition == "label" or config.kind == "m2"
    y = torch.randint(0, config.context_dim, (n,), generator=g) if labelled else None
    return x, y


def relative(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest |a - b| / max(|b|, 1) over the entries, a and b on any device."""
    a, b = a.double().cpu(), b.double().cpu()
    return float(((a - b).abs() / b.abs().clamp_min(1.0)).max())


def check(name: str, config: ModelConfig, device: torch.device) -> tuple[bool, str]:
    torch.manual_seed(0)
    cpu = build_model(config).eval()
    x, y = batch(config)
    gpu = build_model(config).to(device).eval()
    gpu.load_state_dict(cpu.state_dict())
    errors = {}
    with torch.no_grad():
        a = example_scores(cpu, Dataset(x, y), samples=4)  # a CVAE's examples each with its label
        b = example_scores(gpu, Dataset(x, y), samples=4)
        errors["neg_elbo"] = relative(b.neg_elbo, a.neg_elbo)
        if not cpu.deterministic:
            a = iw_log_likelihood(cpu, Dataset(x, y), k=64, common_noise=True)
            b = iw_log_likelihood(gpu, Dataset(x, y), k=64, common_noise=True)
            errors["iw_nll"] = relative(b, a)
    gpu.train()
    objective, context = ELBO(), y
    if config.kind == "m2":  # its own bound, half the examples unlabelled: the sum over classes runs too
        objective, context = SemiSupervisedBound(alpha=0.1), torch.where(torch.arange(len(y)) % 2 == 0, y, -1)
    with torch.autocast(device.type, dtype=torch.bfloat16):
        x_on = x.to(device)
        loss = objective(gpu, Batch(x_on, x_on, None if context is None else context.to(device))).loss.mean()
    loss.backward()
    finite = bool(torch.isfinite(loss)) and all(torch.isfinite(p.grad).all() for p in gpu.parameters() if p.grad is not None)
    ok = finite and all(e < 1e-4 for e in errors.values())
    detail = " ".join(f"{k} rel. diff {v:.1e}" for k, v in errors.items())
    return (
        ok,
        f"{'ok  ' if ok else 'FAIL'} {name:22s} {detail}; bf16 step loss {float(loss.detach()):.2f} {'finite' if finite else 'NOT FINITE'}",
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="cuda", help="the device compared with the CPU (default cuda)")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        print("device_check: no CUDA GPU is available", file=sys.stderr)
        return 2
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # plain float32 on both devices
    results = [check(name, config, device) for name, config in MODELS.items()]
    for _, line in results:
        print(line)
    failed = sum(not ok for ok, _ in results)
    print(f"{len(results) - failed} of {len(results)} models agree on {args.device} and the CPU")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
