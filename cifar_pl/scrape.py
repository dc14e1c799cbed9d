"""Collect a photo dataset from a web image search into class folders.

    python -m cifar_pl.scrape "green curry" "spaghetti carbonara" "carrot cake" --per-class 300 --out data/food
    python -m cifar_pl.scrape --out data/food --remove data/food/green_curry/green_curry_3fa2c1d09e4b7a11.jpg

Each class gets ``out/<class>/`` holding only its photos (RGB JPEGs named ``<class>_<sha256 prefix>.jpg``, never a
name from the URL), so ``out`` reads directly as an ``ImageFolderDataModule``; beside the folders,
``manifest_<class>.csv`` (url, file, sha256, size, width, height, class), ``dropped_<class>.csv`` (url, reason) and
``contact_sheet_<class>.png`` (thumbnails with their file names, to spot wrong images and ``--remove`` them).

Downloads are careful: http/https only (redirects too), a bounded number in flight, a timeout per request, a size
cap, the content decoded by Pillow whatever the server called it, exact duplicates dropped by content hash and
near-duplicates by a perceptual (difference) hash, transient failures retried with backoff. Running it again
fetches nothing already kept or dropped. The search backend is one small class (``DDGSBackend``, the maintained
``ddgs`` package: ``pip install 'cifar-pl[scrape]'``); anything with ``search(query, max_results) -> [url]``
can replace it.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import io
import re
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from PIL import Image, ImageDraw

from .errors import BadValue, MissingFile, UserError, run_main
from .files import check_writable_folder
from .images import to_rgb

MANIFEST_FIELDS = ["url", "file", "sha256", "size", "width", "height", "class"]
USER_AGENT = "Mozilla/5.0 (X11; Linux x86_64) cifar_pl-scrape/1.0"


class SearchBackend(Protocol):
    def search(self, query: str, max_results: int) -> list[str]:
        """Image URLs for ``query``, best first."""
        ...


class DDGSBackend:
    """DuckDuckGo image search through the maintained ``ddgs`` package (needs internet)."""

    def __init__(self, region: str = "wt-wt", safesearch: str = "moderate"):
        self.region, self.safesearch = region, safesearch

    def search(self, query: str, max_results: int) -> list[str]:
        try:
            from ddgs import DDGS
        except ImportError:
            raise UserError(
                "image search needs the ddgs package: pip install 'cifar-pl[scrape]' (or pip install ddgs)"
            ) from None
        results = DDGS().images(
            query, region=self.region, safesearch=self.safesearch, max_results=max_results
        )
        return [r["image"] for r in results if r.get("image")]


def slug(name: str) -> str:
    """A safe folder/file name for a class: lower case, [a-z0-9_] only."""
    s = re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")
    if not s:
        raise BadValue(f"class name {name!r} has no letters or digits to name a folder after")
    return s


def _file_dhash(path: Path) -> int:
    with Image.open(path) as im:
        return dhash(im)


def dhash(img: Image.Image, size: int = 8) -> int:
    """64-bit difference hash: signs of horizontal gradients of a 9x8 grayscale thumbnail."""
    px = img.convert("L").resize((size + 1, size), Image.Resampling.LANCZOS).tobytes()
    bits = 0
    for row in range(size):
        for col in range(size):
            bits = (bits << 1) | (px[row * (size + 1) + col] > px[row * (size + 1) + col + 1])
    return bits


class _SafeRedirects(urllib.request.HTTPRedirectHandler):
    """Follow redirects only to http/https, at most 5."""

    max_redirections = 5

    def redirect_request(self, req, fp, code, msg, headers, newurl):
        if urllib.parse.urlparse(newurl).scheme not in ("http", "https"):
            raise _Drop("redirect to a non-http URL", urllib.parse.urlparse(newurl).scheme)
        return super().redirect_request(req, fp, code, msg, headers, newurl)


class _Drop(Exception):
    """A URL that will not give a usable image: ``kind`` (what the summary counts) and a detail."""

    def __init__(self, kind: str, detail: str = ""):
        self.kind, self.detail = kind, detail
        super().__init__(f"{kind} ({detail})" if detail else kind)


class _Retry(_Drop):
    """A transient failure worth another try."""


@dataclass
class Limits:
    timeout: float = 15.0  # seconds per request (connect, and the whole body)
    max_bytes: int = 15_000_000
    retries: int = 2
    backoff: float = 1.0  # seconds, doubled after each failure
    concurrency: int = 8
    near_duplicate_bits: int = 4  # dHash Hamming distance at or below which two images count as the same
    min_side: int = 32


def fetch(url: str, limits: Limits) -> bytes:
    """The body of ``url``, or ``_Drop``/``_Retry`` with the reason."""
    scheme = urllib.parse.urlparse(url).scheme
    if scheme not in ("http", "https"):
        raise _Drop("not an http(s) URL", scheme or "no scheme")
    opener = urllib.request.build_opener(_SafeRedirects())
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT, "Accept": "image/*"})
    start = time.monotonic()
    try:
        with opener.open(request, timeout=limits.timeout) as response:
            length = response.headers.get("Content-Length")
            if length is not None and length.isdigit() and int(length) > limits.max_bytes:
                raise _Drop("too large", f"{int(length)} bytes > {limits.max_bytes}")
            chunks, total = [], 0
            while True:
                chunk = response.read(65536)
                if not chunk:
                    break
                total += len(chunk)
                if total > limits.max_bytes:
                    raise _Drop("too large", f"over {limits.max_bytes} bytes")
                if time.monotonic() - start > limits.timeout:
                    raise _Retry("timed out")
                chunks.append(chunk)
            return b"".join(chunks)
    except urllib.error.HTTPError as e:
        if e.code in (408, 429) or e.code >= 500:
            raise _Retry(f"HTTP {e.code}") from None
        raise _Drop(f"HTTP {e.code}") from None
    except TimeoutError:
        raise _Retry("timed out") from None
    except ConnectionError as e:
        raise _Retry("connection failed", type(e).__name__) from None
    except urllib.error.URLError as e:
        if isinstance(e.reason, _Drop):
            raise e.reason from None
        if isinstance(e.reason, TimeoutError):
            raise _Retry("timed out") from None
        raise _Retry("connection failed", str(e.reason)) from None


def fetch_with_retries(url: str, limits: Limits) -> bytes:
    delay = limits.backoff
    for attempt in range(limits.retries + 1):
        try:
            return fetch(url, limits)
        except _Retry as e:
            if attempt == limits.retries:
                raise _Drop(e.kind, f"{attempt + 1} tries") from None
            time.sleep(delay)
            delay *= 2
    raise AssertionError("unreachable")


def decode(data: bytes, min_side: int) -> Image.Image:
    """The bytes as an RGB image (any mode, transparency on white), or ``_Drop`` with why not."""
    try:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            im = to_rgb(im)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise _Drop("not a readable image", type(e).__name__) from None
    if min(im.size) < min_side:
        raise _Drop("too small", f"{im.size[0]}x{im.size[1]}")
    return im


@dataclass
class ClassFolder:
    """One class: its image folder, what is kept (``manifest_<class>.csv``) and what was dropped
    (``dropped_<class>.csv``); the bookkeeping lies beside the image folder, never in it."""

    name: str
    root: Path
    kept: list[dict] = field(default_factory=list)
    dropped: list[dict] = field(default_factory=list)

    @property
    def folder(self) -> Path:
        return self.root / slug(self.name)

    def file(self, kind: str, suffix: str = "csv") -> Path:
        """``manifest``, ``dropped`` or ``contact_sheet`` of this class."""
        return self.root / f"{kind}_{slug(self.name)}.{suffix}"

    @classmethod
    def load(cls, name: str, root: Path) -> ClassFolder:
        cf = cls(name, root)
        for attr, kind in (("kept", "manifest"), ("dropped", "dropped")):
            path = cf.file(kind)
            if path.is_file():
                with open(path, newline="") as f:
                    setattr(cf, attr, list(csv.DictReader(f)))
        return cf

    def seen_urls(self) -> set[str]:
        return {r["url"] for r in self.kept} | {r["url"] for r in self.dropped}

    def save(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        for rows, kind, fields in (
            (self.kept, "manifest", MANIFEST_FIELDS),
            (self.dropped, "dropped", ["url", "reason"]),
        ):
            path = self.file(kind)
            tmp = path.with_name(f".{path.name}.tmp")
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
            tmp.replace(path)


def collect_class(
    name: str, urls: Sequence[str], root: Path, limits: Limits, progress=None
) -> tuple[ClassFolder, Counter]:
    """Download ``urls`` into ``root/<slug(name)>``; returns the folder state and this run's counts by outcome."""
    cf = ClassFolder.load(name, root)
    cf.folder.mkdir(parents=True, exist_ok=True)
    seen = cf.seen_urls()
    todo = list(dict.fromkeys(u for u in urls if u not in seen))  # each URL once
    hashes = {r["sha256"] for r in cf.kept}
    phashes = [_file_dhash(cf.folder / r["file"]) for r in cf.kept if (cf.folder / r["file"]).is_file()]
    lock = threading.Lock()
    counts: Counter = Counter()
    task = progress.add_task(name, total=len(todo)) if progress is not None else None

    def one(url: str) -> None:
        try:
            data = fetch_with_retries(url, limits)
            img = decode(data, limits.min_side)
            digest = hashlib.sha256(data).hexdigest()
            ph = dhash(img)
            with lock:  # duplicate checks and writes happen one at a time
                if digest in hashes:
                    raise _Drop("duplicate", "same bytes as a kept image")
                if any(bin(ph ^ other).count("1") <= limits.near_duplicate_bits for other in phashes):
                    raise _Drop("near-duplicate", "perceptual hash")
                file = f"{slug(name)}_{digest[:16]}.jpg"
                img.save(cf.folder / file, "JPEG", quality=92)
                hashes.add(digest)
                phashes.append(ph)
                cf.kept.append({"url": url, "file": file, "sha256": digest, "size": len(data), "width": img.size[0],
                                "height": img.size[1], "class": name})  # fmt: skip
                counts["kept"] += 1
        except _Drop as e:
            with lock:
                cf.dropped.append({"url": url, "reason": str(e)})
                counts[e.kind] += 1
        finally:
            if progress is not None:
                progress.advance(task)

    with ThreadPoolExecutor(max_workers=max(1, limits.concurrency)) as pool:
        list(pool.map(one, todo))
    cf.save()
    return cf, counts


def contact_sheet(cf: ClassFolder, thumb: int = 128, cols: int = 8) -> Path:
    """``contact_sheet_<class>.png``: every kept image as a thumbnail over its file name."""
    rows = max(1, (len(cf.kept) + cols - 1) // cols)
    label = 14
    sheet = Image.new("RGB", (cols * thumb, rows * (thumb + label)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, r in enumerate(cf.kept):
        x, y = (i % cols) * thumb, (i // cols) * (thumb + label)
        with Image.open(cf.folder / r["file"]) as im:
            im.thumbnail((thumb - 4, thumb - 4))
            sheet.paste(im, (x + (thumb - im.size[0]) // 2, y + (thumb - im.size[1]) // 2))
        draw.text((x + 2, y + thumb), Path(r["file"]).stem[-16:], fill="black")
    path = cf.file("contact_sheet", "png")
    sheet.save(path)
    return path


def _all_classes(root: Path) -> list[ClassFolder]:
    out = []
    for manifest in sorted(root.glob("manifest_*.csv")):
        with open(manifest, newline="") as f:
            rows = list(csv.DictReader(f))
        out.append(ClassFolder.load(rows[0]["class"] if rows else manifest.stem[len("manifest_") :], root))
    return out


def remove(files: Sequence[str], root: Path) -> list[Path]:
    """Delete kept images by hand: each file goes, leaves its class's manifest and is listed as dropped, so a
    later run does not fetch it again."""
    removed = []
    classes = _all_classes(root)
    for item in files:
        name = Path(item).name
        cf = next((c for c in classes if any(r["file"] == name for r in c.kept)), None)
        if cf is None:
            raise MissingFile(
                f"'{item}' is not a kept image of any class under '{root}' (see its manifest_*.csv)"
            )
        cf.dropped += [{"url": r["url"], "reason": "removed by hand"} for r in cf.kept if r["file"] == name]
        cf.kept = [r for r in cf.kept if r["file"] != name]
        (cf.folder / name).unlink(missing_ok=True)
        cf.save()
        removed.append(cf.folder / name)
    return removed


def scrape(classes: Sequence[str], per_class: int, out: Path, backend: SearchBackend, limits: Limits | None = None,
           extra_results: float = 1.5, show_progress: bool = True) -> dict[str, Counter]:  # fmt: skip
    """Search, download and check ``per_class`` images per class (asks the backend for ``extra_results`` times as
    many URLs, since some are always dropped); returns this run's counts per class."""
    limits = limits or Limits()
    names = [slug(c) for c in classes]
    if len(set(names)) != len(names):
        raise BadValue(f"two classes map to the same folder name: {names}")
    summary = {}
    progress = None
    if show_progress:
        from rich.progress import Progress

        progress = Progress()
        progress.start()
    try:
        for name in classes:
            have = len(ClassFolder.load(name, out).kept)
            if have >= per_class:
                summary[name] = Counter()
                continue
            urls = backend.search(name, int((per_class) * extra_results) + 5)
            cf, counts = collect_class(name, urls, out, limits, progress)
            summary[name] = counts
            contact_sheet(cf)
    finally:
        if progress is not None:
            progress.stop()
    return summary


def print_summary(summary: dict[str, Counter], out: Path) -> None:
    for name, counts in summary.items():
        cf = ClassFolder.load(name, out)
        dropped = {k: v for k, v in counts.items() if k != "kept"}
        reasons = ", ".join(f"{v} {k}" for k, v in sorted(dropped.items(), key=lambda kv: -kv[1])) or "none"
        print(
            f"{name}: {counts.get('kept', 0)} new, {len(cf.kept)} kept in {cf.folder}; dropped this run: {reasons}"
        )


def run(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m cifar_pl.scrape", description=__doc__.split("\n\n")[0])
    parser.add_argument("classes", nargs="*", help="one search query per class; it names the class")
    parser.add_argument("--per-class", type=int, default=300, help="photos to keep per class (default 300)")
    parser.add_argument("--out", type=Path, required=True,
                        help="the collection's folder: one sub-folder per class, a manifest, contact sheets")  # fmt: skip
    parser.add_argument(
        "--remove", nargs="+", metavar="FILE", help="drop these kept images (and never refetch them)"
    )
    parser.add_argument("--concurrency", type=int, default=8, help="downloads at once (default 8)")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per download (default 15)")
    parser.add_argument("--max-mb", type=float, default=15.0, help="larger files are dropped (default 15 MB)")
    args = parser.parse_args(argv)
    if args.remove:
        for p in remove(args.remove, args.out):
            print(f"removed {p}")
        for cf in _all_classes(args.out):
            contact_sheet(cf)
        return
    if not args.classes:
        parser.error("name at least one class (a search query), or --remove files")
    for flag, value, lo in (("--per-class", args.per_class, 1), ("--concurrency", args.concurrency, 1),
                            ("--timeout", args.timeout, 0.1), ("--max-mb", args.max_mb, 0.01)):  # fmt: skip
        if not value >= lo:
            raise BadValue(f"{flag} must be >= {lo}, got {value}")
    check_writable_folder(args.out, "--out")  # before the search, not after it
    limits = Limits(timeout=args.timeout, max_bytes=int(args.max_mb * 1e6), concurrency=args.concurrency)
    summary = scrape(args.classes, args.per_class, args.out, DDGSBackend(), limits)
    print_summary(summary, args.out)


def main(argv: list[str] | None = None) -> int:
    return run_main(lambda: run(argv))


if __name__ == "__main__":
    sys.exit(main())
