"""Start-up time and peak memory of a photo folder DataModule: decoding into memory, building the decoded-image
cache, and mapping it (each measured in a fresh process: setup for fit and test, then one training batch).

    python bench/photo_cache.py ../shared/data/flowers --image-size 256
    python bench/photo_cache.py /tmp/variants_80k --image-size 256 --modes build mapped
    python bench/photo_cache.py --make-variants 20000 --source ../shared/data/flowers --out /tmp/variants_20k

``--make-variants N`` writes N photos made from the source folder's (flipped, cropped, rotated, recoloured), in
its class folders, to build larger collections for the scaling table. Peak memory is the process's peak resident
set (``ru_maxrss``); with a mapped cache, pages of the file it has read count there too (shared and reclaimable,
unlike decoded copies).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def measure(folder: str, size: int, cache: bool) -> dict:
    """In this process: build the DataModule, set it up for fit and test, read one batch."""
    start = time.perf_counter()
    from cifar_pl.data import ImageFolderDataModule

    kwargs = {"cache": cache} if "cache" in ImageFolderDataModule.__init__.__code__.co_varnames else {}
    dm = ImageFolderDataModule(folder, image_size=size, stats="dataset", **kwargs)
    t0 = time.perf_counter()
    dm.prepare_data()
    dm.setup("fit")
    dm.setup("test")
    next(iter(dm.train_dataloader()))
    return {"images": len(dm.train_set) + len(dm.val_set), "setup_s": round(time.perf_counter() - t0, 2),
            "with_imports_s": round(time.perf_counter() - start, 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}  # fmt: skip


def make_variants(source: Path, out: Path, n: int) -> None:
    from PIL import Image, ImageEnhance, ImageOps

    files = sorted(p for p in source.rglob("*.jpg"))

    def one(i: int) -> None:
        src = files[i % len(files)]
        k = i // len(files)
        with Image.open(src) as im:
            im = im.convert("RGB")
            if k % 2:
                im = ImageOps.mirror(im)
            w, h = im.size
            c = 4 + (k % 5) * 3
            im = im.crop((c, c, w - c, h - c)).rotate((k % 7 - 3) * 4).resize((w, h))
            im = ImageEnhance.Color(im).enhance(0.8 + 0.1 * (k % 5))
            dest = out / src.parent.name / f"{src.stem}_v{k}.jpg"
            im.save(dest, quality=90)

    for cls in {p.parent.name for p in files}:
        (out / cls).mkdir(parents=True, exist_ok=True)
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        list(pool.map(one, range(n)))
    print(f"wrote {n} photos to {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("folder", nargs="?")
    ap.add_argument("--image-size", type=int, default=256)
    ap.add_argument(
        "--modes", nargs="+", default=["memory", "build", "mapped"], choices=["memory", "build", "mapped"]
    )
    ap.add_argument("--make-variants", type=int)
    ap.add_argument("--source", type=Path)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: measure in this process
    args = ap.parse_args()
    if args.make_variants:
        make_variants(args.source, args.out, args.make_variants)
        return
    if args.one:
        print(json.dumps(measure(args.folder, args.image_size, args.one != "memory")))
        return
    cache_dir = tempfile.mkdtemp(prefix="bench_cache_")
    env = {**os.environ, "CIFAR_PL_CACHE": cache_dir, "PYTHONPATH": str(REPO)}
    print(
        "| mode | images | setup (s) | with imports (s) | peak RSS (MB) |\n| --- | ---: | ---: | ---: | ---: |"
    )
    for mode in args.modes:
        out = subprocess.run([sys.executable, __file__, args.folder, "--image-size", str(args.image_size), "--one", mode],
                             env=env, capture_output=True, text=True, check=True)  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(
            f"| {mode} | {r['images']} | {r['setup_s']} | {r['with_imports_s']} | {r['peak_rss_mb']:,} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
