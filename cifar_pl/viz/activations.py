"""The drift of activation distributions over training, from ``activation_stats.json`` files written by the
``ActivationStats`` callback: one row per run, one panel per layer, the 15th/50th/85th percentiles against the
step (Ioffe & Szegedy 2015, figure 1), so runs with and without BatchNorm compare at a glance."""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure

from ..callbacks.activations import FIELDS, HISTORY_FILE, spread
from ..errors import BadFile, MissingFile
from ..runs import version_dirs

History = dict[str, list[list[float]]]


def read_history(run: str | Path) -> History:
    """The activation history of a run folder (``lightning_logs/<experiment>`` or one ``version_N`` of it:
    the newest version that has one)."""
    run = Path(run)
    candidates = [run / HISTORY_FILE] + [v / HISTORY_FILE for v in reversed(version_dirs(run))]
    path = next((p for p in candidates if p.is_file()), None)
    if path is None:
        raise MissingFile(f"no {HISTORY_FILE} in '{run}' or its version_N folders; train with the ActivationStats "
                          f"callback (trainer.callbacks: [{{class_path: cifar_pl.callbacks.ActivationStats}}])")  # fmt: skip
    try:
        data = json.loads(path.read_text())
        layers = data["layers"]
        if data.get("fields") != list(FIELDS) or not isinstance(layers, dict):
            raise ValueError("unexpected layout")
        return {str(k): [[float(x) for x in row] for row in rows if len(row) == len(FIELDS)]
                for k, rows in layers.items()}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise BadFile(f"'{path}' is not an activation history written by ActivationStats ({e})") from None


def drift_figure(runs: dict[str, History], max_layers: int = 4, title: str = "") -> Figure:
    """Rows: runs; columns: up to ``max_layers`` layers spread over the depth. Each panel: the 15th, 50th and
    85th percentile of the layer's pre-activation against the training step, with the mean dashed."""
    columns = max(len(spread(list(h), max_layers)) for h in runs.values()) if runs else 1
    fig = Figure(figsize=(3.3 * columns, 2.6 * len(runs) + 0.4))
    axes = fig.subplots(len(runs), columns, squeeze=False)
    for r, (name, history) in enumerate(runs.items()):
        layers = spread(list(history), max_layers)
        for c in range(columns):
            ax = axes[r][c]
            if c >= len(layers):
                ax.axis("off")
                continue
            rows = history[layers[c]]
            steps = [row[0] for row in rows]
            for field, style in (("p15", "-"), ("p50", "-"), ("p85", "-"), ("mean", "--")):
                i = FIELDS.index(field)
                ax.plot(
                    steps, [row[i] for row in rows], style, lw=1.2 if field != "mean" else 0.9, label=field
                )
            ax.set_title(f"{name}\n{layers[c]}", fontsize=7)
            ax.grid(alpha=0.3)
            ax.tick_params(labelsize=6)
            if r == len(runs) - 1:
                ax.set_xlabel("step", fontsize=7)
    axes[0][0].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
