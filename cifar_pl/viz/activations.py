"""The drift of activation distributions over training, from ``activation_stats.json`` files written by the
``ActivationStats`` callback: one row per run, one panel per layer, the 15th/50th/85th percentiles against the
step (Ioffe & Szegedy 2015, figure 1), so runs with and without BatchNorm compare at a glance."""

from __future__ import annotations

from matplotlib.figure import Figure

from ..callbacks.activations import spread
from ..runs import ACTIVATION_FIELDS as FIELDS
from ..runs import read_activation_stats

History = dict[str, list[list[float]]]


read_history = read_activation_stats  # the name the viz command and notebooks use


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
