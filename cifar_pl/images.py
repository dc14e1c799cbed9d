"""Reading images from disk into RGB uint8, bounded: the one way every part of cifar_pl opens a photo (folder
DataModules, predict, viz, scrape). No torch here, so the scraper and other light tools load it in a blink.

Bounds: an image whose decoded size (width x height) exceeds ``max_pixels`` is refused before its pixels are
decoded (a decompression bomb is a small file that inflates to gigabytes); own-size reads can be held between
``min_side`` and ``max_side``. Any mode Pillow reads becomes 8-bit RGB: 16-bit and float images are scaled (not
clipped), palette/grayscale/CMYK converted, transparency laid on white, EXIF orientation applied.
"""

from __future__ import annotations

import os
import warnings
from collections import deque
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO, Literal

import numpy as np
from PIL import Image, ImageOps

from .errors import BadFile, MissingFile

ResizeMode = Literal["squash", "crop"]
MAX_PIXELS = (
    50_000_000  # 50 MP: a 7000 x 7000 photo; a 100-MP scan needs max_pixels raised (Pillow stops at 178 MP)
)
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N", "I")
READ_ERRORS = (OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _scaled_to_8bit(im: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer images (0..65535) and float images (0..1, else 0..255) as 8-bit grayscale."""
    a = np.asarray(im)
    if im.mode == "F":
        a = a.astype(np.float64)
        a = a * 255.0 if a.size and a.min() >= 0 and a.max() <= 1 else a
        out = np.clip(np.rint(a), 0, 255)
    else:
        out = (np.clip(a.astype(np.int64), 0, 65535) * 255 + 32767) // 65535
    return Image.fromarray(out.astype(np.uint8), "L")


def to_rgb(im: Image.Image) -> Image.Image:
    """Any Pillow image as 8-bit RGB, upright: EXIF orientation applied, 16-bit/float scaled to 8 bits,
    palette/grayscale/CMYK converted, transparency laid on white (where the image is usually shown)."""
    im = ImageOps.exif_transpose(im)
    if im.mode in _SIXTEEN_BIT or im.mode == "F":
        im = _scaled_to_8bit(im)
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        im = Image.new("RGB", rgba.size, (255, 255, 255))
        im.paste(rgba, mask=rgba.getchannel("A"))
    return im.convert("RGB")


def open_image(
    path: str | Path | BinaryIO, max_pixels: int = MAX_PIXELS, draft: tuple[int, int] | None = None
) -> Image.Image:
    """``path`` (a file name, or an open binary file such as an upload's bytes) decoded as 8-bit RGB. ``draft``:
    the smallest (w, h) the caller will resize to, so a JPEG can be decoded at 1/2..1/8 scale. Raises
    ``BadFile`` for an image over ``max_pixels`` and Pillow's own ``OSError``/``ValueError`` for a file that is
    no readable image."""
    if isinstance(path, (str, Path)):
        path = Path(path)
        if not path.is_file():
            raise MissingFile(f"image '{path}' does not exist")
    shown = f"'{path}'" if isinstance(path, Path) else "the image"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit decides below
            im = Image.open(path)
    except Image.DecompressionBombError:
        raise BadFile(
            f"{shown} is larger than Pillow will open (over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} MP); "
            f"refused as a possible decompression bomb"
        ) from None
    with im:
        w, h = im.size
        if w * h > max_pixels:
            raise BadFile(
                f"{shown} is {w}x{h} = {w * h / 1e6:.1f} MP, over the limit of {max_pixels / 1e6:.0f} MP "
                f"(max_pixels); refused as a possible decompression bomb. Shrink the image, or raise max_pixels "
                f"if you trust it"
            )
        if w < 1 or h < 1:
            raise BadFile(f"{shown} has no pixels ({w}x{h})")
        if draft is not None:
            im.draft("RGB", draft)  # JPEG only; a no-op for other formats
        out = to_rgb(im)
    out.info["photo_size"] = (w, h)  # the file's own size: a draft decodes a JPEG smaller than it is
    return out


def resize_square(im: Image.Image, size: int, mode: ResizeMode = "squash") -> Image.Image:
    """``squash``: the whole image to size x size, aspect ratio lost (Keras' ``flow_from_directory``);
    ``crop``: the short side to ``size``, then the centre square."""
    if mode == "crop":
        return ImageOps.fit(im, (size, size), Image.Resampling.BICUBIC)
    return im.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=3.0)


def bound_sides(
    im: Image.Image, max_side: int | None = None, min_side: int | None = None
) -> tuple[Image.Image, str | None]:
    """Keep the aspect ratio but bring the long side down to ``max_side`` or the short side up to ``min_side``;
    the second value says what was done (None when nothing)."""
    w, h = im.size
    scale = 1.0
    if max_side is not None and max(w, h) > max_side:
        scale = max_side / max(w, h)
    elif min_side is not None and min(w, h) < min_side:
        scale = min_side / min(w, h)
    if scale == 1.0:
        return im, None
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    why = f"long side bound {max_side}" if scale < 1 else f"short side raised to {min_side}"
    return im.resize(
        (nw, nh), Image.Resampling.BICUBIC, reducing_gap=3.0
    ), f"{w}x{h} resized to {nw}x{nh} ({why})"


def as_array(im: Image.Image) -> np.ndarray:
    """An RGB Pillow image as an H x W x 3 uint8 array (a copy the caller owns)."""
    return np.array(im, dtype=np.uint8)


def read_image(
    path: str | Path, size: int | None = None, resize: ResizeMode = "squash", max_pixels: int = MAX_PIXELS
) -> np.ndarray:
    """An image file as H x W x 3 uint8 RGB: size x size when ``size`` is given (see ``resize_square``),
    else at its own size."""
    im = open_image(path, max_pixels, draft=(size, size) if size else None)
    return as_array(resize_square(im, size, resize) if size is not None else im)


def read_images(
    paths: Sequence[str | Path],
    size: int,
    resize: ResizeMode = "squash",
    max_pixels: int = MAX_PIXELS,
    workers: int | None = None,
) -> Iterator[tuple[int, np.ndarray | str]]:
    """Decode ``paths`` in threads (Pillow releases the GIL) and yield ``(index, image or reason)`` in order,
    with a bounded number in flight, so a caller can stream the images into one preallocated array."""
    workers = workers or min(8, os.cpu_count() or 1)

    def one(path) -> np.ndarray | str:
        try:
            return read_image(path, size, resize, max_pixels)
        except (*READ_ERRORS, BadFile) as e:
            return f"{type(e).__name__}: {e}"

    with ThreadPoolExecutor(max_workers=workers) as pool:
        pending: deque = deque()
        for i, path in enumerate(paths):
            pending.append((i, pool.submit(one, path)))
            if len(pending) >= 4 * workers:
                j, fut = pending.popleft()
                yield j, fut.result()
        while pending:
            j, fut = pending.popleft()
            yield j, fut.result()


def image_files(inputs: Sequence[str | Path]) -> list[Path]:
    """The files named, and every non-hidden file under the folders named (sorted)."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if p.is_dir():
            out += sorted(
                f
                for f in p.rglob("*")
                if f.is_file() and not any(s.startswith(".") for s in f.relative_to(p).parts)
            )
        elif p.is_file():
            out.append(p)
        else:
            raise MissingFile(f"'{p}' is neither a file nor a folder")
    return out
