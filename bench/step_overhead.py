"""Per-step overhead of the framework at the speed preset's batch size: a Lightning step of ImageClassifier (metric
updates, logging, the progress bar, the loss check) against a bare PyTorch loop doing the same work (the same net,
resident uint8 images gathered by index, crop + alternating flip, normalisation, label-smoothed loss, Nesterov SGD).

    python bench/step_overhead.py --data ../shared/data                  # CPU: speednet width 0.25, batch 256
    python bench/step_overhead.py --data data --width 1 --batch 1024 --accelerator gpu --precision bf16-mixed

Each variant trains ``--steps`` steps (after ``--warmup`` untimed ones) and reports the median time between the
starts of consecutive steps (everything in the loop counts: data, step, hooks, logging) over ``--rounds`` rounds run
in alternation. Variants: ``bare``; ``framework`` as the preset runs it (sync_every 0, no progress bar, logging
every 10 steps); ``+progress bar`` (sync_every 1: the loss check and the bar's loss wait every step);
``+log every step``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from cifar_pl.data import CIFAR10DataModule  # noqa: E402
from cifar_pl.data.tensor_dataset import normalize_uint8  # noqa: E402
from cifar_pl.data.transforms import alternating_flip, batch_crop  # noqa: E402
from cifar_pl.lit import ImageClassifier  # noqa: E402
from cifar_pl.models import create_model  # noqa: E402

AUGMENT = [{"name": "random_crop", "padding": 2, "padding_mode": "reflect"}, {"name": "alternating_flip"}]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def bare(dm, a, device: torch.device) -> list[float]:
    torch.manual_seed(0)
    net = create_model("speednet", num_classes=10, width=a.width).to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.85, nesterov=True, weight_decay=5e-3)
    images, labels = dm.train_set.images.to(device), dm.train_set.labels.to(device)
    mean, std = (torch.tensor(v, device=device) for v in (dm.mean, dm.std))
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=a.precision == "bf16-mixed")
    starts, step = [], 0
    while step < a.warmup + a.steps:
        order = torch.randperm(len(images), device=device)
        for i in range(0, len(order) - a.batch + 1, a.batch):
            _sync(device)
            starts.append(time.perf_counter())
            idx = order[i : i + a.batch]
            x = normalize_uint8(alternating_flip(batch_crop(images[idx], 2, "reflect"), idx, step), mean, std)
            with autocast:
                loss = F.cross_entropy(net(x), labels[idx], label_smoothing=0.2)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            if step >= a.warmup + a.steps:
                break
    _sync(device)
    starts.append(time.perf_counter())
    return starts[a.warmup :]


class _Clock:
    def __init__(self, device):
        import pytorch_lightning as pl

        class Clock(pl.Callback):
            def __init__(self):
                self.starts = []

            def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
                _sync(device)
                self.starts.append(time.perf_counter())

            def on_train_end(self, trainer, pl_module):
                _sync(device)
                self.starts.append(time.perf_counter())

        self.cb = Clock()


def framework(dm, a, device: torch.device, sync_every: int, progress: bool, log_every: int) -> list[float]:
    import pytorch_lightning as pl

    torch.manual_seed(0)
    model = ImageClassifier(net="speednet", net_kwargs={"width": a.width}, label_smoothing=0.2, optim={"lr": 0.1, "momentum": 0.85, "nesterov": True, "weight_decay": 5e-3}, runtime={"sync_every": sync_every})  # fmt: skip
    clock = _Clock(device).cb
    trainer = pl.Trainer(accelerator=a.accelerator, devices=1, precision=a.precision, max_steps=a.warmup + a.steps,
                         limit_val_batches=0, num_sanity_val_steps=0, enable_checkpointing=False,
                         enable_progress_bar=progress, enable_model_summary=False, log_every_n_steps=log_every,
                         default_root_dir=a.workdir, callbacks=[clock])  # fmt: skip
    trainer.fit(model, datamodule=dm)
    return clock.starts[a.warmup :]


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="../shared/data")
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--warmup", type=int, default=5)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--accelerator", default="cpu")
    p.add_argument("--precision", default="32-true")
    p.add_argument("--workdir", default="/tmp/step_overhead")
    a = p.parse_args(argv)
    device = torch.device("cuda" if a.accelerator == "gpu" else "cpu")
    dm = CIFAR10DataModule(
        a.data, val_size=0.1, batch_size=a.batch, stats="cifar10", resident=True, augment=AUGMENT
    )
    dm.setup("fit")
    variants = {
        "bare loop": lambda: bare(dm, a, device),
        "framework (preset: sync_every 0, no bar, log every 10)": lambda: framework(
            dm, a, device, 0, False, 10
        ),
        "+ progress bar, sync_every 1": lambda: framework(dm, a, device, 1, True, 10),
        "+ log every step": lambda: framework(dm, a, device, 0, False, 1),
    }
    per_step: dict[str, list[float]] = {k: [] for k in variants}
    for _ in range(a.rounds):
        for name, fn in variants.items():
            starts = fn()
            per_step[name].append(
                statistics.median(b - s for s, b in zip(starts[:-1], starts[1:], strict=True))
            )
    base = statistics.median(per_step["bare loop"])
    print(f"\n{torch.cuda.get_device_name() if device.type == 'cuda' else 'CPU'}: speednet width {a.width}, "
          f"batch {a.batch}, {a.precision}, median of {a.rounds} rounds x {a.steps} steps\n")  # fmt: skip
    print("| variant | ms / step | vs bare loop |\n|---|---|---|")
    for name, values in per_step.items():
        m = statistics.median(values)
        print(f"| {name} | {1000 * m:.2f} | {1000 * (m - base):+.2f} ms ({100 * (m / base - 1):+.1f}%) |")


if __name__ == "__main__":
    main()
