"""Training images per second of a net: forward + backward + optimiser step, steady state, synthetic data
already on the device.

    python bench/throughput.py --net shake_shake_26_2x64d --batch-size 128 --device cuda
    python bench/throughput.py --net model_g --device cpu
    python bench/throughput.py --net xception --image-size 128 --batch-size 16 --device cpu --variants fp32

Variants: fp32 (alone, + channels_last, + torch.compile); bf16-mixed (autocast, as Lightning's precision
"bf16-mixed"); bf16 + channels_last; bf16 + channels_last + torch.compile. Each starts from a fresh copy of the net, runs --warmup steps (compilation
happens there), then times --steps steps. Prints a table with the ratio to fp32.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from cifar_pl.models import create_model  # noqa: E402

VARIANTS = {
    "fp32": dict(bf16=False, channels_last=False, compile=False),
    "fp32 + channels_last": dict(bf16=False, channels_last=True, compile=False),
    "fp32 + compile": dict(bf16=False, channels_last=False, compile=True),
    "bf16-mixed": dict(bf16=True, channels_last=False, compile=False),
    "bf16 + channels_last": dict(bf16=True, channels_last=True, compile=False),
    "bf16 + channels_last + compile": dict(bf16=True, channels_last=True, compile=True),
}


def images_per_second(
    net,
    device: str,
    batch_size: int,
    steps: int,
    warmup: int,
    bf16: bool,
    channels_last: bool,
    compile: bool,
    image_size: int = 32,
) -> float:
    net = copy.deepcopy(net).to(device).train()
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net.to(memory_format=fmt)
    if compile:
        net.compile()
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-4)
    x = torch.randn(batch_size, 3, image_size, image_size, device=device).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch_size,), device=device)

    def step():
        with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(net(x), y)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def sync():
        if device == "cuda":
            torch.cuda.synchronize()

    for _ in range(warmup):
        step()
    sync()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    sync()
    return steps * batch_size / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--net", default="shake_shake_26_2x64d")
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--image-size", type=int, default=32, help="side of the square inputs (256 for Xception)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--steps", type=int, default=50)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    args = ap.parse_args()
    if args.device == "cuda":
        torch.backends.cudnn.benchmark = True
        device_name = torch.cuda.get_device_name()
    else:
        device_name = f"CPU, {torch.get_num_threads()} threads"
    net = create_model(args.net, num_classes=10)
    params = sum(p.numel() for p in net.parameters())
    print(
        f"{args.net} ({params:,} params), batch {args.batch_size}, {device_name}, torch {torch.__version__}; "
        f"{args.warmup} warm-up + {args.steps} timed steps per variant"
    )
    rows = []
    for name in args.variants:
        ips = images_per_second(
            net,
            args.device,
            args.batch_size,
            args.steps,
            args.warmup,
            **VARIANTS[name],
            image_size=args.image_size,
        )
        rows.append((name, ips))
        print(f"  {name}: {ips:,.0f} images/s", flush=True)
    base = rows[0][1]
    print("\n| variant | images/s | vs fp32 |\n| --- | ---: | ---: |")
    for name, ips in rows:
        print(f"| {name} | {ips:,.0f} | {ips / base:.2f}x |")


if __name__ == "__main__":
    main()
