"""vaekit's speed benchmark: training and evaluation throughput against the machine's own GEMM speed.

    python bench/run.py [--repeats 3] [--data-dir ../shared/data] [--quick] [--device cpu|cuda]

Prints a table and writes bench/results/latest.json. Every timing is repeated
(min and median reported); the ratios in one run are what count, the machine being noisy.

What it measures, in one run:
  gemm        float32 torch.mm of a large square matrix (GFLOP/s): the machine's reference;
  b1-gemm     the GEMMs of one B1 training step alone (forward + backward at B1's shapes): the
              GEMM-only bound for B1 in images/s;
  b1          vaekit training B1 (binarized MNIST, MLP 784-512-16, Bernoulli, Adam, batch 100);
  b1-compiled the same with --compile (torch.compile of the loss; its compile time is not counted);
  b1-bf16     the same with --precision bf16 (autocast: matrix products in bfloat16), eager and
              compiled, against the bfloat16 GEMM reference and B1 bound measured in the same run;
  b1-plain    the same model in a plain DataLoader + nn.Module loop, the reference point;
  conv        vaekit conv VAE (32, 64 channels, channels-last) on 28x28 MNIST, fp32 and bf16;
  table       vaekit MLP VAE (128, 64; Gaussian) on a 100,000 x 32 synthetic table;
  iw          importance-weighted evaluation, K = 5000, B1 (examples x samples per second);
  breakdown   where a B1 step's time goes: GEMMs, elementwise kernels, optimizer, Python/overhead,
              plus system time and page faults per step.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import statistics
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
import torch.nn.functional as F
from common import write_results
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import vaekit
from vaekit.config import RunConfig
from vaekit.data import Dataset, DataSplits, SourceSettings, load_data
from vaekit.evaluation import iw_log_likelihood
from vaekit.training import Trainer

ROOT = Path(__file__).resolve().parents[1]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn, repeats: int, device: torch.device) -> list[float]:
    """Run ``fn`` ``repeats`` times after one warm-up; wall seconds of each run."""
    fn()
    out = []
    for _ in range(repeats):
        sync(device)
        t0 = time.perf_counter()
        fn()
        sync(device)
        out.append(time.perf_counter() - t0)
    return out


def stats(seconds: list[float], work: float) -> dict[str, float]:
    """Rates (work / second) from repeated timings: best (min time) and median."""
    return {
        "min_s": min(seconds),
        "median_s": statistics.median(seconds),
        "best_rate": work / min(seconds),
        "median_rate": work / statistics.median(seconds),
    }


# ----- the GEMM reference ----------------------------------------------------------------------
def gemm_reference(device, repeats: int, n: int, dtype: torch.dtype = torch.float32) -> dict:
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    s = timed(lambda: [a @ b for _ in range(4)], repeats, device)
    r = stats(s, 4 * 2 * n**3 / 1e9)
    return {"n": n, "gflops_best": r["best_rate"], "gflops_median": r["median_rate"]}


B1_LAYERS = [(784, 512, False), (512, 32, True), (16, 512, True), (512, 784, True)]  # (in, out, needs dX): encoder, posterior head, decoder


def gemm_bound(
    device, repeats: int, layers, batch: int, steps: int = 200, backward: bool = True, dtype: torch.dtype = torch.float32
) -> dict:
    """Time only the matrix products of ``steps`` training steps of an MLP with these Linear
    ``layers``, called exactly as nn.Linear and autograd call them (forward addmm(b, x, W^T);
    backward dW = dY^T x and, where needed, dX = dY W), on the same shapes: images/s bound."""
    ops, flops = [], 0

    def new(*shape, fill=torch.randn):
        return fill(*shape, device=device, dtype=dtype)

    for fan_in, fan_out, needs_dx in layers:
        x, w, b, dy = new(batch, fan_in), new(fan_out, fan_in), new(fan_out), new(batch, fan_out)
        y, dw, dx = new(batch, fan_out, fill=torch.empty), new(fan_out, fan_in, fill=torch.empty), new(batch, fan_in, fill=torch.empty)
        ops.append(lambda x=x, w=w, b=b, y=y: torch.addmm(b, x, w.t(), out=y))
        flops += 2 * batch * fan_in * fan_out
        if backward:
            ops.append(lambda x=x, dy=dy, dw=dw: torch.mm(dy.t(), x, out=dw))
            flops += 2 * batch * fan_in * fan_out
            if needs_dx:
                ops.append(lambda w=w, dy=dy, dx=dx: torch.mm(dy, w, out=dx))
                flops += 2 * batch * fan_in * fan_out

    def run():
        for _ in range(steps):
            for op in ops:
                op()

    s = timed(run, repeats, device)
    r = stats(s, steps * batch)
    return {
        "images_per_s_best": r["best_rate"],
        "images_per_s_median": r["median_rate"],
        "flops_per_image": flops / batch,
        "gflops_best": r["best_rate"] * flops / batch / 1e9,
    }


def step_flops(model, x: torch.Tensor) -> float:
    """FLOPs of one training step (forward + backward) per example, counted by torch."""
    with FlopCounterMode(display=False) as counter:
        vaekit.elbo(model, x).loss.mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / len(x)


# ----- training workloads -----------------------------------------------------------------------
class Workload:
    """A training loop to time: ``epoch()`` runs one epoch (or ``steps`` steps) and returns its
    wall seconds; ``result(seconds)`` turns the timed repeats into rates."""

    images: int

    def epoch(self) -> float:  # pragma: no cover - interface
        raise NotImplementedError

    def result(self, seconds: list[float]) -> dict:
        r = stats(seconds, self.images)
        return {
            "images_per_s_best": r["best_rate"],
            "images_per_s_median": r["median_rate"],
            "seconds_per_epoch_best": r["min_s"] * self.epoch_images / self.images,
            "repeats": seconds,
        }


class VaekitWorkload(Workload):
    """vaekit's own Trainer, one epoch (or ``max_steps`` steps) per call."""

    def __init__(self, data: DataSplits, config: RunConfig, device: str, out: Path, max_steps: int | None = None):
        import shutil

        shutil.rmtree(out, ignore_errors=True)
        self.out, self.config = out, config
        self.trainer = Trainer(config, out, data=data, device=device)
        self.trainer.start_run()
        self.trainer.model.train()
        self.epoch_images = len(data.train)
        self.images = self.epoch_images if max_steps is None else max_steps * config.train.batch_size
        if max_steps is not None:
            self.trainer.batches.steps_per_epoch = max_steps
        self.epochs = 0
        self.x = data.train.x[: config.train.batch_size].to(device)

    def epoch(self) -> float:
        tr = self.trainer
        row = tr.train_epoch(self.epochs)
        tr.state.step_in_epoch = 0
        tr.sums.zero()
        self.epochs += 1
        return row["train_seconds"]

    def result(self, seconds: list[float]) -> dict:
        import shutil

        shutil.rmtree(self.out, ignore_errors=True)
        return super().result(seconds) | {"flops_per_image": step_flops(self.trainer.model, self.x)}


class PlainVAE(nn.Module):
    """B1 written the way the canonical PyTorch example (pytorch/examples, vae/main.py) writes a VAE:
    nn.Linear layers, a sigmoid decoder output, ``F.binary_cross_entropy`` summed, the closed-form KL;
    the loss is averaged over the batch so that Adam's lr 1e-3 means the same as in vaekit."""

    def __init__(self, d=784, h=512, latent=16):
        super().__init__()
        self.enc = nn.Linear(d, h)
        self.mu = nn.Linear(h, latent)
        self.logvar = nn.Linear(h, latent)
        self.dec1 = nn.Linear(latent, h)
        self.dec2 = nn.Linear(h, d)

    def forward(self, x):
        hid = F.relu(self.enc(x))
        mu, logvar = self.mu(hid), self.logvar(hid)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        recon = torch.sigmoid(self.dec2(F.relu(self.dec1(z))))
        bce = F.binary_cross_entropy(recon, x, reduction="sum")
        kl = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
        return (bce + kl) / len(x)


class PlainWorkload(Workload):
    """The reference point: B1 in a plain DataLoader + nn.Module loop."""

    def __init__(self, x: torch.Tensor, device: str):
        from torch.utils.data import DataLoader, TensorDataset

        torch.manual_seed(1)
        self.device = torch.device(device)
        self.model = PlainVAE().to(device)
        self.opt = torch.optim.Adam(self.model.parameters(), lr=1e-3)
        self.loader = DataLoader(TensorDataset(x.flatten(1)), batch_size=100, shuffle=True)
        self.images = self.epoch_images = len(x)

    def epoch(self) -> float:
        sync(self.device)
        t0 = time.perf_counter()
        for (xb,) in self.loader:
            xb = xb.to(self.device)
            loss = self.model(xb)
            self.opt.zero_grad()
            loss.backward()
            self.opt.step()
        sync(self.device)
        return time.perf_counter() - t0


def round_robin(workloads: dict[str, Workload], repeats: int) -> dict[str, dict]:
    """Time the workloads in turns (one epoch each per round, after one warm-up round), so that
    the machine's drifting speed touches them alike: their ratios are what count."""
    seconds = {name: [] for name in workloads}
    for i in range(repeats + 1):
        for name, w in workloads.items():
            s = w.epoch()
            if i:
                seconds[name].append(s)
    return {name: w.result(seconds[name]) for name, w in workloads.items()}


def vaekit_training(data: DataSplits, config: RunConfig, repeats: int, device: str, out: Path, max_steps: int | None = None) -> dict:
    """Train with vaekit's Trainer; one timed epoch (or ``max_steps`` steps) per repeat."""
    return round_robin({"w": VaekitWorkload(data, config, device, out, max_steps)}, repeats)["w"]


def plain_training(x: torch.Tensor, repeats: int, device: str) -> dict:
    return round_robin({"w": PlainWorkload(x, device)}, repeats)["w"]


# ----- importance-weighted evaluation --------------------------------------------------------
def iw_throughput(model, x: torch.Tensor, k: int, repeats: int, device) -> dict:
    model = model.to(device)
    s = timed(lambda: iw_log_likelihood(model, Dataset(x.to(device)), k=k), repeats, torch.device(device))
    with FlopCounterMode(display=False) as counter:  # one chunk's decoder + log-densities, per (example, sample)
        with torch.inference_mode():
            z = torch.randn(1000, model.latent_dim, device=device)
            model.decode(z).log_prob(x[:1].to(device).expand(1000, *x.shape[1:]))
    flops = counter.get_total_flops() / 1000
    r = stats(s, len(x) * k)
    return {
        "examples": len(x),
        "k": k,
        "pairs_per_s_best": r["best_rate"],
        "pairs_per_s_median": r["median_rate"],
        "flops_per_pair": flops,
        "gflops_best": r["best_rate"] * flops / 1e9,
        "repeats": s,
    }


IW_MEMORY_PROBE = """
import re, sys, torch, vaekit
from pathlib import Path
from vaekit.config import ModelConfig
from vaekit.evaluation import iw_log_likelihood
status = lambda key: int(re.search(key + r":\\s+(\\d+) kB", Path("/proc/self/status").read_text()).group(1))
model = vaekit.build_model(ModelConfig(hidden=(512,), latent_dim=16, likelihood="bernoulli", input_shape=(1, 28, 28)))
x = (torch.rand(100, 1, 28, 28) < 0.3).float()
Path("/proc/self/clear_refs").write_text("5")  # resets the peak (VmHWM) to the current RSS
before = status("VmRSS")
iw_log_likelihood(model, Dataset(x), k=int(sys.argv[1]), batch_size=100)
print(before, status("VmHWM"))
"""


def iw_peak_memory(ks: tuple[int, ...] = (10, 500, 5000, 50_000)) -> dict:
    """Peak resident memory (MiB, Linux) while a fresh process estimates log p(x) for 100 B1
    examples with each K, and what the estimate adds to the resident memory it started from:
    that must not grow with K."""
    import subprocess

    out = {}
    for k in ks:
        line = subprocess.run([sys.executable, "-c", IW_MEMORY_PROBE, str(k)], capture_output=True, text=True, check=True).stdout.split()
        before, peak = (int(v) / 1024 for v in line)  # kB -> MiB
        out[str(k)] = {"peak_mib": peak, "added_by_iw_mib": peak - before}
    return out


# ----- where a step's time goes ---------------------------------------------------------------
CATEGORIES = {
    "gemm": ("addmm", "mm", "bmm", "linear", "matmul", "convolution", "conv", "mkldnn"),
    "optimizer": ("adam", "_fused", "foreach"),
}


def breakdown(data: DataSplits, config: RunConfig, device: str, out: Path, steps: int = 100) -> dict:
    import shutil

    from torch.profiler import ProfilerActivity, profile

    shutil.rmtree(out, ignore_errors=True)
    trainer = Trainer(config, out, data=data, device=device)
    trainer.start_run()
    trainer.batches.steps_per_epoch = steps
    trainer.train_epoch(0)  # warm-up
    trainer.state.step_in_epoch = 0
    r0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
    trainer.train_epoch(1)
    wall, r1 = time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF)
    trainer.state.step_in_epoch = 0
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        t1 = time.perf_counter()
        trainer.train_epoch(2)
        profiled_us = (time.perf_counter() - t1) * 1e6
    shutil.rmtree(out, ignore_errors=True)
    totals = {"gemm": 0.0, "optimizer": 0.0, "elementwise_and_other_kernels": 0.0}
    for ev in prof.key_averages():
        name = ev.key.lower()
        if not name.startswith("aten::") and "adam" not in name:
            continue
        self_us = ev.self_cpu_time_total
        if any(k in name for k in CATEGORIES["gemm"]):
            totals["gemm"] += self_us
        elif any(k in name for k in CATEGORIES["optimizer"]):
            totals["optimizer"] += self_us
        else:
            totals["elementwise_and_other_kernels"] += self_us
    totals["python_and_dispatch_overhead"] = max(0.0, profiled_us - sum(totals.values()))
    share = {k: v / profiled_us for k, v in totals.items()}  # shares within the profiled run
    step_ms = wall * 1e3 / steps  # the unprofiled step, split by those shares
    return {
        "step_ms": step_ms,
        "per_step_ms": {k: f * step_ms for k, f in share.items()},
        "share": share,
        "system_seconds_per_step": (r1.ru_stime - r0.ru_stime) / steps,
        "user_seconds_per_step": (r1.ru_utime - r0.ru_utime) / steps,
        "minor_page_faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps,
    }


# ----- the report --------------------------------------------------------------------------------
B1_VARIANTS = {  # bench part: vaekit's speed options (TrainConfig changes)
    "b1-compiled": {"compile": True},
    "b1-bf16": {"precision": "bf16"},
    "b1-bf16-compiled": {"precision": "bf16", "compile": True},
}


def b1_config(epochs: int = 1) -> RunConfig:
    cfg = RunConfig()
    cfg.data.source = "binarized-mnist"
    cfg.model.hidden, cfg.model.latent_dim, cfg.model.likelihood = (512,), 16, "bernoulli"
    cfg.train.epochs, cfg.train.batch_size, cfg.train.lr, cfg.train.seed = epochs, 100, 1e-3, 1
    return cfg


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--quick", action="store_true", help="fewer steps and samples (a smoke run, not for reporting)")
    ap.add_argument(
        "--only",
        nargs="*",
        help="run only these parts (gemm b1 b1-compiled b1-bf16 b1-bf16-compiled b1-plain conv conv-bf16 table iw breakdown)",
    )
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "latest.json"))
    args = ap.parse_args()
    device = torch.device(args.device)
    parts = set(args.only or ["gemm", "b1", *B1_VARIANTS, "b1-plain", "conv", "conv-bf16", "table", "iw", "breakdown"])
    scratch = Path("/tmp") / f"vaekit-bench-{os.getpid()}"
    rep = args.repeats
    res: dict = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": str(device) if device.type == "cpu" else torch.cuda.get_device_name(device),
        },
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }
    res["gemm"] = gemm_reference(device, rep, 2048 if device.type == "cpu" else 8192)
    res["b1_gemm_bound"] = gemm_bound(device, rep, B1_LAYERS, batch=100, steps=100 if args.quick else 300)
    if any("bf16" in p for p in parts):  # the same references in bfloat16
        res["gemm_bf16"] = gemm_reference(device, rep, 2048 if device.type == "cpu" else 8192, torch.bfloat16)
        res["b1_gemm_bound_bf16"] = gemm_bound(device, rep, B1_LAYERS, batch=100, steps=100 if args.quick else 300, dtype=torch.bfloat16)
    bmnist = load_data("binarized-mnist", settings=SourceSettings(data_dir=args.data_dir))
    b1_parts(res, parts, bmnist, args, scratch)
    conv_parts(res, parts, args, scratch)
    if "table" in parts:
        table_part(res, args, scratch)
    if "iw" in parts:
        iw_part(res, bmnist, args)
    if "breakdown" in parts:
        res["b1_breakdown"] = breakdown(bmnist, b1_config(), args.device, scratch / "bd", steps=50 if args.quick else 200)
    print_table(res)
    write_results(args.out, res)
    return 0


def b1_parts(res: dict, parts: set[str], bmnist: DataSplits, args: argparse.Namespace, scratch: Path) -> None:
    """B1: vaekit (default and its speed options) and the plain loop, timed in turns; their speed-ups over the plain loop."""
    rep, ref = args.repeats, res["b1_gemm_bound"]["images_per_s_best"]
    b1_runs: dict[str, Workload] = {}
    for part, changes in {"b1": {}, **B1_VARIANTS}.items():  # any compile happens in the warm-up round
        if part in parts:
            cfg = b1_config()
            for key, value in changes.items():
                setattr(cfg.train, key, value)
            b1_runs[part.replace("-", "_")] = VaekitWorkload(
                bmnist, cfg, args.device, scratch / part, max_steps=100 if args.quick else None
            )
    if "b1-plain" in parts:
        b1_runs["b1_plain"] = PlainWorkload(bmnist.train.x[:10_000] if args.quick else bmnist.train.x, args.device)
    for key, r in round_robin(b1_runs, rep).items():
        res[key] = r
        r["fraction_of_gemm_bound"] = r["images_per_s_best"] / ref
        if getattr(b1_runs[key], "config", None) is not None and b1_runs[key].config.train.precision == "bf16":
            r["fraction_of_bf16_gemm_bound"] = r["images_per_s_best"] / res["b1_gemm_bound_bf16"]["images_per_s_best"]
    if "b1" in parts and "b1-plain" in parts:
        res["b1_speedup_over_plain"] = res["b1"]["images_per_s_best"] / res["b1_plain"]["images_per_s_best"]
    for part in B1_VARIANTS:
        if part in parts and "b1-plain" in parts:
            key = part.replace("-", "_")
            res[key + "_speedup_over_plain"] = res[key]["images_per_s_best"] / res["b1_plain"]["images_per_s_best"]


def conv_parts(res: dict, parts: set[str], args: argparse.Namespace, scratch: Path) -> None:
    """The convolutional model on MNIST, in fp32 and bf16, timed in turns."""
    rep = args.repeats
    conv_runs: dict[str, Workload] = {}
    for part, precision in [("conv", "fp32"), ("conv-bf16", "bf16")]:
        if part in parts:
            mnist = load_data("mnist", settings=SourceSettings(data_dir=args.data_dir))
            cfg = b1_config()
            cfg.data.source = "mnist"
            cfg.model.arch, cfg.model.hidden, cfg.train.precision = "conv", (32, 64), precision
            conv_runs[part.replace("-", "_")] = VaekitWorkload(mnist, cfg, args.device, scratch / part, max_steps=20 if args.quick else 100)
    for key, r in round_robin(conv_runs, rep).items():
        res[key] = r
        reference = res["gemm_bf16" if key.endswith("bf16") else "gemm"]["gflops_best"]
        r["fraction_of_gemm_reference"] = r["images_per_s_best"] * r["flops_per_image"] / 1e9 / reference


def table_part(res: dict, args: argparse.Namespace, scratch: Path) -> None:
    """A Gaussian model on a synthetic (110000, 32) table."""
    g = torch.Generator().manual_seed(0)
    table = torch.randn(110_000, 32, generator=g) @ torch.randn(32, 32, generator=g) / 4
    data = DataSplits(Dataset(table[:100_000]), Dataset(table[100_000:]), None, {"value_range": "real", "source": "synthetic-table"})
    cfg = b1_config()
    cfg.data.source = "synthetic-table"
    cfg.model.hidden, cfg.model.latent_dim, cfg.model.likelihood = (128, 64), 8, "gaussian"
    cfg.train.batch_size = 256
    res["table"] = vaekit_training(data, cfg, args.repeats, args.device, scratch / "table", max_steps=50 if args.quick else None)
    res["table"]["fraction_of_gemm_reference"] = (
        res["table"]["images_per_s_best"] * res["table"]["flops_per_image"] / 1e9 / res["gemm"]["gflops_best"]
    )


def iw_part(res: dict, bmnist: DataSplits, args: argparse.Namespace) -> None:
    """The importance-weighted estimate's throughput against its decoder GEMMs alone (and its peak memory on a CPU)."""
    device, rep = torch.device(args.device), args.repeats
    torch.manual_seed(0)
    model = vaekit.build_model(b1_config().model.__class__(**{**b1_config().model.__dict__, "input_shape": (1, 28, 28)}))
    x = bmnist.test.x[:: 100 if args.quick else 20]  # a class-balanced subset (test is sorted by class)
    k = 500 if args.quick else 5000
    res["iw"] = iw_throughput(model, x, k, max(1, rep - 1) if not args.quick else 1, args.device)
    # the decoder's GEMMs alone, at the fastest of several chunk sizes (not only the one vaekit uses)
    bounds = {
        rows: gemm_bound(device, rep, [(16, 512, False), (512, 784, False)], batch=rows, steps=max(3, 60_000 // rows), backward=False)[
            "images_per_s_best"
        ]
        for rows in (1024, 2048, 4096, 20_000)
    }
    res["iw"]["decoder_gemm_bound_by_rows"] = bounds
    res["iw"]["decoder_gemm_bound_pairs_per_s"] = max(bounds.values())
    res["iw"]["fraction_of_gemm_bound"] = res["iw"]["pairs_per_s_best"] / max(bounds.values())
    res["iw"]["fraction_of_gemm_reference"] = res["iw"]["gflops_best"] / res["gemm"]["gflops_best"]
    if device.type == "cpu":
        res["iw"]["peak_memory_by_k"] = iw_peak_memory()


def print_table(res: dict) -> None:
    g = res["gemm"]
    print(f"machine: {res['machine']}")
    print(f"GEMM reference: {g['n']}x{g['n']} fp32 mm {g['gflops_best']:.1f} GFLOP/s (median {g['gflops_median']:.1f})")
    b = res["b1_gemm_bound"]
    print(
        f"B1 GEMM-only bound: {b['images_per_s_best']:,.0f} images/s "
        f"({b['flops_per_image'] / 1e6:.2f} MFLOP/image in GEMMs, {b['gflops_best']:.1f} GFLOP/s)"
    )
    if "gemm_bf16" in res:
        g, b = res["gemm_bf16"], res["b1_gemm_bound_bf16"]
        print(
            f"bf16: GEMM reference {g['gflops_best']:.1f} GFLOP/s; B1 GEMM-only bound "
            f"{b['images_per_s_best']:,.0f} images/s ({b['gflops_best']:.1f} GFLOP/s)"
        )
    print(f"\n{'workload':<16} {'best/s':>10} {'median/s':>10} {'s/epoch':>8} {'MFLOP/item':>11} {'fraction':>9}")
    for key, frac_key in [
        ("b1", "fraction_of_gemm_bound"),
        ("b1_compiled", "fraction_of_gemm_bound"),
        ("b1_bf16", "fraction_of_bf16_gemm_bound"),
        ("b1_bf16_compiled", "fraction_of_bf16_gemm_bound"),
        ("b1_plain", "fraction_of_gemm_bound"),
        ("conv", "fraction_of_gemm_reference"),
        ("conv_bf16", "fraction_of_gemm_reference"),
        ("table", "fraction_of_gemm_reference"),
    ]:
        if key in res:
            r = res[key]
            mf = f"{r['flops_per_image'] / 1e6:.2f}" if "flops_per_image" in r else "-"
            of = {"fraction_of_gemm_bound": "of the B1 fp32 GEMM bound", "fraction_of_bf16_gemm_bound": "of the B1 bf16 GEMM bound"}.get(
                frac_key, "of the bf16 GEMM reference" if key.endswith("bf16") else "of the fp32 GEMM reference"
            )
            print(
                f"{key:<16} {r['images_per_s_best']:>10,.0f} "
                f"{r['images_per_s_median']:>10,.0f} {r['seconds_per_epoch_best']:>8.2f} {mf:>11} {r[frac_key]:>9.1%} {of}"
            )
    if "b1_speedup_over_plain" in res:
        print(
            f"\nB1: vaekit is {res['b1_speedup_over_plain']:.2f}x the plain DataLoader "
            f"loop; {res['b1']['fraction_of_gemm_bound']:.1%} of the GEMM-only bound"
        )
    for key, what in [("b1_compiled", "--compile"), ("b1_bf16", "--precision bf16"), ("b1_bf16_compiled", "--precision bf16 --compile")]:
        if key + "_speedup_over_plain" in res:
            r = res[key]
            extra = f", {r['fraction_of_bf16_gemm_bound']:.1%} of the bf16 GEMM-only bound" if "fraction_of_bf16_gemm_bound" in r else ""
            print(
                f"B1 with {what}: {res[key + '_speedup_over_plain']:.2f}x the plain loop; "
                f"{r['fraction_of_gemm_bound']:.1%} of the fp32 GEMM-only bound{extra}"
            )
    if "iw" in res:
        r = res["iw"]
        print(
            f"IW evaluation (K={r['k']}, {r['examples']} examples): {r['pairs_per_s_best']:,.0f} "
            f"example-samples/s, {r['gflops_best']:.1f} GFLOP/s = "
            f"{r['fraction_of_gemm_bound']:.1%} of the decoder-GEMM bound, {r['fraction_of_gemm_reference']:.1%} "
            f"of the large-GEMM reference"
        )
        if "peak_memory_by_k" in r:
            print(
                "IW peak memory, 100 examples (peak RSS, MiB, and what the estimate added): "
                + ", ".join(f"K={k}: {v['peak_mib']:.0f} (+{v['added_by_iw_mib']:.0f})" for k, v in r["peak_memory_by_k"].items())
            )
    if "b1_breakdown" in res:
        r = res["b1_breakdown"]
        parts = ", ".join(f"{k} {v:.2f} ms ({r['share'][k]:.0%})" for k, v in r["per_step_ms"].items())
        print(
            f"B1 step {r['step_ms']:.2f} ms: {parts}; "
            f"system {r['system_seconds_per_step'] * 1e3:.2f} ms/step, {r['minor_page_faults_per_step']:.0f} page faults/step"
        )


if __name__ == "__main__":
    sys.exit(main())
