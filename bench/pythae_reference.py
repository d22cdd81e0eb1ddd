"""B1 training speed of the library pythae, measured in the same run as vaekit and the plain loop.

pythae pins nothing that conflicts with torch 2.13, but it is not one of vaekit's dependencies, so it
lives in its own venv:

    python3 -m venv /tmp/pythae-venv
    /tmp/pythae-venv/bin/pip install torch==2.13.0 && /tmp/pythae-venv/bin/pip install pythae==0.1.2 torch==2.13.0
    /tmp/pythae-venv/bin/pip install --no-deps -e . && /tmp/pythae-venv/bin/pip install safetensors matplotlib
    /tmp/pythae-venv/bin/python bench/pythae_reference.py [--repeats 3] [--data-dir ../shared/data]

B1 in pythae, written its own way: ``VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=16,
reconstruction_loss="bce"))`` with a BaseEncoder (784-512 ReLU, two Linear heads for the mean and the
log-variance) and a BaseDecoder (16-512 ReLU-784, sigmoid), trained by ``TrainingPipeline`` with
``BaseTrainerConfig`` (batch 100, Adam lr 1e-3, CPU) for 1 warm-up + ``--repeats`` timed epochs.
Everything else is pythae's default: no eval set (so it keeps the best model on the training loss,
a deepcopy per improving epoch), no checkpoints (steps_saving=None), no sample generation
(steps_predict=None), no wandb/mlflow callback, its tqdm progress bar on, the final model saved once
into a scratch dir under /tmp. A timing callback records, per epoch, the full epoch (one epoch_begin
to its on_log, the last hook of an epoch) and the train_step part alone (train_step's start to its last batch).
vaekit and the plain DataLoader loop are timed by bench/run.py's own functions, in this process.
Writes bench/results/pythae.json.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

try:
    from pythae.models import VAE, VAEConfig
    from pythae.models.base.base_utils import ModelOutput
    from pythae.models.nn import BaseDecoder, BaseEncoder
    from pythae.pipelines import TrainingPipeline
    from pythae.trainers import BaseTrainerConfig
    from pythae.trainers.training_callbacks import TrainingCallback
except ImportError:
    sys.exit("pythae is not installed in this environment; see the docstring of bench/pythae_reference.py for the venv to create.")

from importlib.metadata import version

import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[1]
_spec = importlib.util.spec_from_file_location("vaekit_bench_run", ROOT / "bench" / "run.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)
from common import write_results  # noqa: E402


class Encoder(BaseEncoder):
    def __init__(self):
        BaseEncoder.__init__(self)
        self.hidden = nn.Sequential(nn.Flatten(), nn.Linear(784, 512), nn.ReLU())
        self.embedding = nn.Linear(512, 16)
        self.log_var = nn.Linear(512, 16)

    def forward(self, x):
        h = self.hidden(x)
        return ModelOutput(embedding=self.embedding(h), log_covariance=self.log_var(h))


class Decoder(BaseDecoder):
    def __init__(self):
        BaseDecoder.__init__(self)
        self.net = nn.Sequential(nn.Linear(16, 512), nn.ReLU(), nn.Linear(512, 784), nn.Sigmoid())

    def forward(self, z):
        return ModelOutput(reconstruction=self.net(z).reshape(-1, 1, 28, 28))


class EpochTimer(TrainingCallback):
    """Wall-clock marks from pythae's own hooks: epoch starts, train_step's start, each batch's end."""

    def __init__(self):
        self.epoch_starts, self.epoch_ends, self.step_starts, self.last_batch_ends = [], [], [], []

    def on_epoch_begin(self, training_config, **kwargs):
        self.epoch_starts.append(time.perf_counter())

    def on_train_step_begin(self, training_config, **kwargs):
        self.step_starts.append(time.perf_counter())
        self.last_batch_ends.append(None)

    def on_train_step_end(self, training_config, **kwargs):  # called after every batch
        self.last_batch_ends[-1] = time.perf_counter()

    def on_log(self, training_config, logs, **kwargs):  # the last thing of each epoch
        self.epoch_ends.append(time.perf_counter())


def pythae_training(x: torch.Tensor, repeats: int, scratch: Path) -> dict:
    settings = dict(
        output_dir=str(scratch),
        per_device_train_batch_size=100,
        learning_rate=1e-3,
        optimizer_cls="Adam",
        num_epochs=repeats + 1,
        no_cuda=True,
    )
    model = VAE(VAEConfig(input_dim=(1, 28, 28), latent_dim=16, reconstruction_loss="bce"), encoder=Encoder(), decoder=Decoder())
    timer = EpochTimer()
    t0 = time.perf_counter()
    TrainingPipeline(model=model, training_config=BaseTrainerConfig(**settings))(train_data=x, callbacks=[timer])
    total = time.perf_counter() - t0
    shutil.rmtree(scratch, ignore_errors=True)
    full = [e - b for b, e in zip(timer.epoch_starts, timer.epoch_ends)][1:]  # epoch 1 warms up
    step = [e - b for b, e in zip(timer.step_starts, timer.last_batch_ends)][1:]
    full_r, step_r = bench.stats(full, len(x)), bench.stats(step, len(x))
    return {
        "settings": settings | {"eval_data": None, "callbacks": "pythae defaults (tqdm bar, console metrics) + a timing callback"},
        "images_per_s_best": full_r["best_rate"],
        "images_per_s_median": full_r["median_rate"],
        "train_step_images_per_s_best": step_r["best_rate"],
        "train_step_images_per_s_median": step_r["median_rate"],
        "epoch_seconds": full,
        "train_step_seconds": step,
        "non_train_step_share": 1 - sum(step) / sum(full),
        "pipeline_total_seconds": total,
        "pipeline_total_epochs": repeats + 1,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--repeats", type=int, default=3, help="timed epochs (after one warm-up epoch)")
    ap.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "pythae.json"))
    args = ap.parse_args()
    data = bench.load_data("binarized-mnist", data_dir=args.data_dir)
    x = data.train.x
    scratch = Path("/tmp") / f"pythae-bench-{os.getpid()}"
    res = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "machine": {
            "cpu": platform.processor() or platform.machine(),
            "cores": os.cpu_count(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS"),
            "pythae": version("pythae"),
        },
        "command": " ".join([sys.executable, *sys.argv]),
        "images_per_epoch": len(x),
    }
    res["pythae"] = pythae_training(x, args.repeats, scratch / "pythae")
    res["b1_plain"] = bench.plain_training(x, args.repeats, "cpu")
    res["b1_vaekit"] = bench.vaekit_training(data, bench.b1_config(), args.repeats, "cpu", scratch / "vaekit")
    fast = bench.b1_config()
    fast.train.precision, fast.train.compile = "bf16", True
    res["b1_vaekit_bf16_compiled"] = bench.vaekit_training(data, fast, args.repeats, "cpu", scratch / "vaekit-fast")
    shutil.rmtree(scratch, ignore_errors=True)
    p = res["pythae"]
    res["vaekit_over_pythae"] = res["b1_vaekit"]["images_per_s_best"] / p["images_per_s_best"]
    res["vaekit_over_pythae_train_step"] = res["b1_vaekit"]["images_per_s_best"] / p["train_step_images_per_s_best"]
    res["plain_over_pythae"] = res["b1_plain"]["images_per_s_best"] / p["images_per_s_best"]
    res["vaekit_bf16_compiled_over_pythae"] = res["b1_vaekit_bf16_compiled"]["images_per_s_best"] / p["images_per_s_best"]

    print(f"\nmachine: {res['machine']}")
    print(f"{'B1 (images/s)':<34} {'best':>9} {'median':>9}")
    rows = [
        ("pythae, full epoch", p["images_per_s_best"], p["images_per_s_median"]),
        ("pythae, train_step only", p["train_step_images_per_s_best"], p["train_step_images_per_s_median"]),
        ("plain DataLoader loop", res["b1_plain"]["images_per_s_best"], res["b1_plain"]["images_per_s_median"]),
        ("vaekit", res["b1_vaekit"]["images_per_s_best"], res["b1_vaekit"]["images_per_s_median"]),
        (
            "vaekit --precision bf16 --compile",
            res["b1_vaekit_bf16_compiled"]["images_per_s_best"],
            res["b1_vaekit_bf16_compiled"]["images_per_s_median"],
        ),
    ]
    for name, best, med in rows:
        print(f"{name:<34} {best:>9,.0f} {med:>9,.0f}")
    print(
        f"vaekit / pythae: {res['vaekit_over_pythae']:.2f}x (train_step only: {res['vaekit_over_pythae_train_step']:.2f}x; "
        f"with --precision bf16 --compile: {res['vaekit_bf16_compiled_over_pythae']:.2f}x); "
        f"plain / pythae: {res['plain_over_pythae']:.2f}x; "
        f"pythae's per-epoch work outside train_step: {p['non_train_step_share']:.1%} of its epoch"
    )
    write_results(args.out, res)
    return 0


if __name__ == "__main__":
    sys.exit(main())
