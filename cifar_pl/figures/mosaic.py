"""Grids of small images drawn as one picture: every cell is pasted into a single array shown by one ``imshow``,
with its title as text above it. A grid of Axes (one per image, each laid out by ``tight_layout``) costs about
10 ms per image in matplotlib; the previews and the test report draw 30-60 images at the start and end of every
run, so on a CPU that was over two seconds of each run's wall time (docs/speed.md)."""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib
import numpy as np
import torch
from matplotlib.figure import Figure

#: perceptual and ordered dark-to-bright, so a printout in grey still reads the same way (jet does not)
HEAT_CMAP = "inferno"
#: at most this much of the colour map over the photo where the map is highest, none where it is lowest
HEAT_ALPHA = 0.6


def to_rgb(img: torch.Tensor) -> np.ndarray:
    """A uint8 or [0, 1] float C x H x W image (1 or 3 channels) as an H x W x 3 float array in [0, 1]."""
    x = img.detach().cpu()
    x = x.float() / 255 if x.dtype == torch.uint8 else x.float().clamp(0, 1)
    if x.shape[0] == 1:
        x = x.expand(3, -1, -1)
    return x.permute(1, 2, 0).numpy()


def colour_map(values: torch.Tensor, cmap: str = "viridis") -> np.ndarray:
    """A 2-D map as H x W x 3 colours in [0, 1], scaled to its own range (a constant map: the middle colour)."""
    v = values.detach().float().cpu()
    span = float(v.max() - v.min())
    v = (v - v.min()) / span if span > 0 else torch.full_like(v, 0.5)
    return matplotlib.colormaps[cmap](v.numpy())[..., :3]


def heat_overlay(img: torch.Tensor, heat: torch.Tensor, cmap: str = HEAT_CMAP) -> np.ndarray:
    """The photo with a heat map (same H x W) over it: each pixel is mixed with the map's colour in proportion to
    the map's value there (scaled to its own range), so the photo stays visible wherever the map is low."""
    rgb = to_rgb(img)
    h = heat.detach().float().cpu()
    span = float(h.max() - h.min())
    weight = ((h - h.min()) / span if span > 0 else torch.zeros_like(h)).numpy()[..., None]
    alpha = HEAT_ALPHA * weight
    return (1 - alpha) * rgb + alpha * colour_map(heat, cmap)


#: the largest side a cell's image is drawn at (larger images are scaled down to it: a grid of full-size photos
#: would build a canvas of gigabytes), in pixels
MAX_CELL = 192


def _fit(cell: np.ndarray, height: int, width: int) -> np.ndarray:
    """``cell`` scaled (aspect kept) to fit ``height`` x ``width``: area-averaged down, nearest-neighbour up (small
    images keep their pixels visible)."""
    h, w = cell.shape[:2]
    scale = min(height / h, width / w)
    if scale == 1:
        return cell
    size = (max(1, round(h * scale)), max(1, round(w * scale)))
    x = torch.from_numpy(np.ascontiguousarray(cell[..., :3], dtype=np.float32)).permute(2, 0, 1)[None]
    mode = "area" if scale < 1 else "nearest"
    return torch.nn.functional.interpolate(x, size=size, mode=mode)[0].permute(1, 2, 0).numpy()


def _shorten(title: str, chars: int) -> str:
    return "\n".join(
        line if len(line) <= chars else line[: max(1, chars - 1)] + "\u2026" for line in title.split("\n")
    )


def mosaic_figure(
    cells: Sequence[np.ndarray | None],
    titles: Sequence[str | None],
    cols: int,
    cell_inches: tuple[float, float] = (1.4, 1.55),
    colors: Sequence[str | None] | None = None,
    suptitle: str = "",
    fontsize: float = 7,
) -> Figure:
    """``cells`` (H x W x 3 arrays in [0, 1], of any sizes; ``None`` leaves a cell blank) in rows of ``cols``,
    each under its title (one or two lines, cut to the cell's width) in ``colors`` (default black). Every image is
    scaled to one common cell (the largest image's size, at most ``MAX_CELL`` pixels a side), aspect kept; each
    cell keeps the figure's ``cell_inches`` (width, height including the title)."""
    n = max(1, len(cells))
    rows = (n + cols - 1) // cols
    shown = [c for c in cells if c is not None]
    ch = min(MAX_CELL, max((c.shape[0] for c in shown), default=32))
    cw = min(MAX_CELL, max((c.shape[1] for c in shown), default=32))
    # pixels per inch from the width, then the title band above each image takes what the cell's height leaves
    w_in, h_in = cell_inches
    gap = max(1, cw // 16)
    px_per_inch = (cw + gap) / w_in
    band = max(int(0.25 * px_per_inch), int(round(h_in * px_per_inch)) - ch - gap)
    cell_h, cell_w = band + ch + gap, cw + gap
    h_in = cell_h / px_per_inch
    chars = max(4, int(w_in * 72 / (0.6 * fontsize)))  # a title line no wider than its cell
    canvas = np.full((rows * cell_h, cols * cell_w, 3), 255, dtype=np.uint8)
    fig = Figure(figsize=(w_in * cols, h_in * rows + (0.35 if suptitle else 0.0)))
    top = 1.0 - (0.35 / fig.get_figheight() if suptitle else 0.0)
    ax = fig.add_axes((0.0, 0.0, 1.0, top))
    for i, cell in enumerate(cells):
        r, c = divmod(i, cols)
        y0, x0 = r * cell_h + band, c * cell_w
        if cell is not None:
            img = _fit(cell, ch, cw)
            h, w = img.shape[:2]
            oy, ox = (ch - h) // 2, (cw - w) // 2
            pixels = np.nan_to_num(np.clip(img[..., :3], 0, 1), nan=0.0)
            canvas[y0 + oy : y0 + oy + h, x0 + ox : x0 + ox + w] = (pixels * 255).round().astype(np.uint8)
        title = titles[i] if i < len(titles) else None
        if title:
            color = (colors[i] if colors is not None and i < len(colors) else None) or "black"
            # names come from folders and checkpoints: never parsed as matplotlib math ($...$)
            ax.text(x0 + cw / 2, y0 - gap, _shorten(title, chars), ha="center", va="bottom", fontsize=fontsize,
                    color=color, parse_math=False)  # fmt: skip
    ax.imshow(canvas, interpolation="nearest", aspect="equal")
    ax.set_axis_off()
    if suptitle:
        fig.suptitle(suptitle, fontsize=9, y=1.0 - 0.05 / fig.get_figheight(), va="top", parse_math=False)
    return fig
