"""Where a training step's time goes: the speed preset's step (cifar_pl's data path, net, loss, optimiser and
weight average) against airbench94's own step (../shared/bench/airbench94_cpu.py, imported from there, not copied),
at the same width, batch and threads, op by op with torch.profiler.

    python bench/step_profile.py --data ../shared/data                     # width 0.25, batch 256, 1 thread
    python bench/step_profile.py --data ../shared/data --channels-last     # the preset with channels_last

Prints, per side, the median wall time of a step and the ops that take most of it (self CPU time per step), and
the time per step of each phase (data, forward, backward, optimiser, average) measured with a wall clock around it.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cifar_pl.data import CIFAR10DataModule  # noqa: E402
from cifar_pl.lit import ImageClassifier  # noqa: E402

AUGMENT = [{"name": "random_crop", "padding": 2, "padding_mode": "reflect"}, {"name": "alternating_flip"}]


def load_reference(path: Path):
    spec = importlib.util.spec_from_file_location("airbench94_cpu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Phases:
    """Wall time per named phase, summed over the timed steps."""

    def __init__(self):
        self.total: dict[str, float] = defaultdict(float)
        self._t = 0.0

    def start(self) -> None:
        self._t = time.perf_counter()

    def mark(self, name: str) -> None:
        now = time.perf_counter()
        self.total[name] += now - self._t
        self._t = now


def preset_steps(a, steps: int, phases: Phases | None = None):
    """The preset's step, as Lightning runs it, without the Trainer: resident gather, batched crop + flip and
    normalisation (the DataModule's on_after_batch_transfer), training_step, backward, SGD step, weight average."""
    torch.manual_seed(0)
    dm = CIFAR10DataModule(a.data, val_size=0, batch_size=a.batch, stats="cifar10", resident=True, augment=AUGMENT,
                           drop_last=True)  # fmt: skip
    dm.setup("fit")
    model = ImageClassifier(net="speednet", net_kwargs={"width": a.width}, label_smoothing=0.2, optim={"lr": 0.375, "momentum": 0.85, "nesterov": True, "weight_decay": 1.33e-3, "bias_lr_factor": 64}, average={"decay": 0.774, "every": 5}, runtime={"sync_every": 0, "channels_last": a.channels_last})  # fmt: skip
    model.configure_model()
    from types import SimpleNamespace

    model._trainer = SimpleNamespace(num_training_batches=float("inf"))
    opt = model.configure_optimizers()["optimizer"]
    model._trainer = None
    model.train()
    dm.trainer = SimpleNamespace(training=True, current_epoch=0)
    loader = dm.train_dataloader()
    it = iter(loader)
    for step in range(steps):
        if phases:
            phases.start()
        try:
            batch = next(it)
        except StopIteration:
            it = iter(loader)
            batch = next(it)
        x, y = dm.on_after_batch_transfer(batch, 0)
        if phases:
            phases.mark("data (gather, augment, normalise)")
        logits = model(x)
        loss = F.cross_entropy(logits, y, label_smoothing=0.2)
        model.train_metrics.update(logits.detach(), y)
        if phases:
            phases.mark("forward + loss + metrics")
        _backward_and_step(loss, opt, phases)
        if step % 5 == 0:
            model.ema.update(model.net, 0.5)
            model.ema.copy_to(model.net)
        if phases:
            phases.mark("weight average (every 5th step)")
        yield


def _backward_and_step(loss: torch.Tensor, opt: torch.optim.Optimizer, phases: Phases | None) -> None:
    """The same backward and optimiser phases on both sides, timed alike."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if phases:
        phases.mark("backward")
    opt.step()
    if phases:
        phases.mark("optimiser")


def recipe_steps(a, steps: int, phases: Phases | None = None):
    """airbench94's own step: its loader (pre-normalised, pre-padded float images, channels_last), its net, the
    summed label-smoothed loss, Nesterov SGD, lookahead every 5 steps."""
    ref = load_reference(Path(a.reference))
    torch.manual_seed(0)
    ref.hyp["opt"]["batch_size"] = a.batch
    for k in ref.hyp["net"]["widths"]:
        ref.hyp["net"]["widths"][k] = max(1, int(round(ref.hyp["net"]["widths"][k] * a.width)))
    loader = ref.CifarLoader(a.data, train=True, batch_size=a.batch, aug=ref.hyp["aug"])
    net = ref.make_net()
    ref.init_whitening_conv(net[0], loader.normalize(loader.images[:5000]))
    loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.2, reduction="none")
    opt = torch.optim.SGD(net.parameters(), lr=0.001, momentum=0.85, nesterov=True, weight_decay=0.3)
    lookahead = ref.LookaheadState(net)
    net.train()
    it = iter(loader)
    for step in range(steps):
        if phases:
            phases.start()
        try:
            inputs, labels = next(it)
        except StopIteration:
            it = iter(loader)
            inputs, labels = next(it)
        if phases:
            phases.mark("data (gather, augment, normalise)")
        loss = loss_fn(net(inputs), labels).sum()
        if phases:
            phases.mark("forward + loss + metrics")
        _backward_and_step(loss, opt, phases)
        if step % 5 == 0:
            lookahead.update(net, decay=0.5)
        if phases:
            phases.mark("weight average (every 5th step)")
        yield


def measure(name: str, make, a) -> dict:
    phases = Phases()
    walls = []
    gen = make(a, a.warmup + a.steps + a.profile_steps, phases)
    for _ in range(a.warmup):  # the set-up (data, net, whitening) runs before the first step: never timed
        next(gen)
    phases.total.clear()
    for _ in range(a.steps):
        t = time.perf_counter()
        next(gen)
        walls.append(time.perf_counter() - t)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(a.profile_steps):
            next(gen)
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    n = a.profile_steps
    return {
        "name": name,
        "step_ms": 1000 * statistics.median(walls),
        "phases": {k: 1000 * v / a.steps for k, v in phases.total.items()},
        "ops": [(e.key, e.self_cpu_time_total / 1000 / n, e.count / n) for e in ops[: a.top]],
    }


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(ROOT.parent / "shared/data"))
    p.add_argument("--reference", default=str(ROOT.parent / "shared/bench/airbench94_cpu.py"))
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--profile-steps", type=int, default=10)
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--top", type=int, default=12)
    p.add_argument(
        "--channels-last", action="store_true", help="the preset's net and inputs in channels_last"
    )
    a = p.parse_args(argv)
    torch.set_num_threads(a.threads)
    results = [measure("cifar_pl preset", preset_steps, a), measure("airbench94 recipe", recipe_steps, a)]
    print(f"\nspeednet width {a.width}, batch {a.batch}, {a.threads} thread(s), channels_last (preset): "
          f"{a.channels_last}; median of {a.steps} steps\n")  # fmt: skip
    print("| phase | " + " | ".join(r["name"] + " (ms/step)" for r in results) + " |")
    print("| --- |" + " ---: |" * len(results))
    for phase in results[0]["phases"]:
        print(f"| {phase} | " + " | ".join(f"{r['phases'].get(phase, 0):.1f}" for r in results) + " |")
    print("| **step (median wall)** | " + " | ".join(f"**{r['step_ms']:.1f}**" for r in results) + " |")
    print(f"\nratio preset / recipe: {results[0]['step_ms'] / results[1]['step_ms']:.2f}")
    for r in results:
        print(
            f"\n{r['name']}: top ops by self CPU time\n\n| op | ms / step | calls / step |\n| --- | ---: | ---: |"
        )
        for key, ms, calls in r["ops"]:
            print(f"| `{key}` | {ms:.1f} | {calls:.1f} |")


if __name__ == "__main__":
    main()
