"""Start a net from saved weights: our Lightning checkpoints or plain state dicts from elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

# Prefixes that wrappers add in front of a net's own parameter names: DataParallel/DDP ("module."),
# our LightningModule ("net."), and many training scripts ("model.").
_WRAPPER_PREFIXES = ("module.", "net.", "model.")


@dataclass
class LoadReport:
    """What ``load_weights`` did: loaded keys, and the skipped ones with why."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the net, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the net
    mismatched: list[str] = field(default_factory=list)  # in both, shapes differ ("key: file vs net")

    @property
    def skipped(self) -> list[str]:
        return (
            [f"{k} (not in the file)" for k in self.missing]
            + [f"{k} (not in the net)" for k in self.unexpected]
            + [f"{k} (shape {m})" for k, m in (s.split(": ", 1) for s in self.mismatched)]
        )


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors of a weights file: a Lightning checkpoint, a ``{'state_dict': ...}`` dict or a bare state dict,
    with wrapper prefixes (``module.``, ``net.``, ``model.``) removed. Loaded with ``weights_only=True``."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(
            f"weights file '{path}' does not exist; check init_from / the checkpoint path"
        )
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except (
        Exception
    ) as e:  # torch.load raises many types on garbage (UnpicklingError, KeyError, RuntimeError, ...)
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ValueError(
            f"'{path}' is not a readable PyTorch weights file or checkpoint ({first}). If it is a trusted file "
            f"that needs full unpickling, convert it once with torch.load(weights_only=False) and torch.save(state_dict)"
        ) from None
    sd = obj.get("state_dict", obj) if isinstance(obj, Mapping) else None
    if not isinstance(sd, Mapping) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise ValueError(f"'{path}' holds no state dict (a mapping of names to tensors)")
    sd = dict(sd)
    if isinstance(obj, Mapping) and "pytorch-lightning_version" in obj:
        sd = {k: v for k, v in sd.items() if k.startswith("net.")} or sd  # our nets live in `net`
    for prefix in _WRAPPER_PREFIXES:
        if all(k.startswith(prefix) for k in sd):
            sd = {k[len(prefix) :]: v for k, v in sd.items()}
    return sd


def load_weights(net: nn.Module, path: str | Path, strict: bool = True) -> LoadReport:
    """Copy the weights of ``path`` into ``net``.

    ``strict``: every key and shape must match, else a ValueError names the differences.
    Not strict: every tensor whose name and shape fit is loaded, the rest is listed in the report.
    """
    sd = read_state_dict(path)
    filt = getattr(type(net), "filter_state_dict", None)
    if filt is not None:
        sd = filt(sd)
    own = net.state_dict()
    report = LoadReport()
    # BN's step counter is absent from files saved before PyTorch 0.4.1; it is not a weight.
    report.missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    report.unexpected = [k for k in sd if k not in own]
    report.mismatched = [
        f"{k}: {tuple(sd[k].shape)} vs {tuple(own[k].shape)}"
        for k in own
        if k in sd and sd[k].shape != own[k].shape
    ]
    fitting = {k: v for k, v in sd.items() if k in own and v.shape == own[k].shape}
    report.loaded = list(fitting)
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise ValueError(_mismatch_message(path, net, report))
    if not any(not k.startswith("classifier.") for k in fitting):  # a same-length bias alone proves nothing
        raise ValueError(
            f"no tensor of '{path}' fits the body of {type(net).__name__}: is it a checkpoint of another net? "
            + _mismatch_message(path, net, report)
        )
    net.load_state_dict(fitting, strict=False)
    return report


def _mismatch_message(path, net: nn.Module, report: LoadReport) -> str:
    def few(keys: list[str]) -> str:
        return ", ".join(keys[:6]) + (f" ... ({len(keys)} in all)" if len(keys) > 6 else "")

    parts = []
    if report.mismatched:
        parts.append(f"shapes differ for {few(report.mismatched)}")
    if report.missing:
        parts.append(f"missing from the file: {few(report.missing)}")
    if report.unexpected:
        parts.append(f"not in the net: {few(report.unexpected)}")
    head_only = (
        not report.missing
        and not report.unexpected
        and all(m.startswith("classifier.") for m in report.mismatched)
    )
    hint = (
        "the checkpoint's head was trained for another number of classes; set init_strict: false to load "
        "everything but the head"
        if head_only
        else "check that the file was saved from the same net (net: / net_kwargs:), or set init_strict: false to "
        "load only the tensors whose names and shapes fit"
    )
    return f"weights in '{path}' do not fit {type(net).__name__}: {'; '.join(parts)}. {hint}"
