"""How close an exported net is to the checkpoint's own evaluation, per net family and format: the table of
docs/deploy.md. One net of each family (tests/helpers/deploy.py FAMILIES; BatchNorm statistics drawn, logits scaled
as a trained net's) is exported to ONNX and TorchScript and run on the first ``--n`` real CIFAR-10 test images.

    python bench/export_equality.py --data ../shared/data --n 256

Prints, per family and format: the largest absolute difference of the logits, the top-1 agreement, the export time.
tests/test_deploy.py asserts the same comparison (under 1e-4, every top-1 the same).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
from cifar_pl.export import SUFFIXES, export  # noqa: E402
from tests.helpers.deploy import (  # noqa: E402
    FAMILIES,
    cifar_test_images,
    eager_logits,
    exported_logits,
    write_net_checkpoint,
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument(
        "--data", type=Path, default=REPO.parent / "shared" / "data", help="holds cifar-10-batches-py/"
    )
    p.add_argument("--n", type=int, default=256, help="test images compared (default 256)")
    p.add_argument("--families", nargs="+", default=list(FAMILIES), choices=list(FAMILIES))
    args = p.parse_args(argv)
    images = cifar_test_images(args.data, args.n)
    print("| family | net | format | max abs logit difference | top-1 agreement | export s |")
    print("| --- | --- | --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as tmp:
        for family in args.families:
            net, kwargs = FAMILIES[family]
            ckpt = write_net_checkpoint(Path(tmp) / f"{net}.ckpt", net, kwargs)
            ref = eager_logits(ckpt, images)
            for fmt in ("onnx", "torchscript"):
                t = time.perf_counter()
                done = export(ckpt, fmt, (Path(tmp) / net).with_suffix(SUFFIXES[fmt]))
                took = time.perf_counter() - t
                out = exported_logits(done.file, fmt, images)
                agree = int((out.argmax(1) == ref.argmax(1)).sum())
                print(f"| {family} | `{net}` | {fmt} | {np.abs(out - ref).max():.1e} | {agree}/{len(images)} | "
                      f"{took:.1f} |", flush=True)  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
