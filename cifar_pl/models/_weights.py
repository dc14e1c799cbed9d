"""Start a net from saved weights: our Lightning checkpoints or plain state dicts from elsewhere."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from ..errors import BadFile
from ..weights_io import read_state_dict


@dataclass
class LoadReport:
    """What ``load_weights`` did: loaded keys, and the skipped ones with why."""

    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # in the net, not in the file
    unexpected: list[str] = field(default_factory=list)  # in the file, not in the net
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(
        default_factory=list
    )  # key, file, net

    @property
    def skipped(self) -> list[str]:
        return (
            [f"{k} (not in the file)" for k in self.missing]
            + [f"{k} (not in the net)" for k in self.unexpected]
            + [f"{k} (shape {a} vs {b})" for k, a, b in self.mismatched]
        )


def load_weights(
    net: nn.Module,
    path: str | Path,
    strict: bool = True,
    state_dict: Mapping[str, torch.Tensor] | None = None,
) -> LoadReport:
    """Copy the weights of ``path`` (or the given ``state_dict``, named ``path`` in messages) into ``net``.

    ``strict``: every key and shape must match, else a ``BadFile`` names the differences.
    Not strict: every tensor whose name and shape fit is loaded, the rest is listed in the report.
    """
    sd = dict(state_dict) if state_dict is not None else read_state_dict(path)
    filt = getattr(type(net), "filter_state_dict", None)
    if filt is not None:
        sd = filt(sd)
    own = net.state_dict()
    report = LoadReport()
    # BN's step counter is absent from files saved before PyTorch 0.4.1; it is not a weight.
    report.missing = [k for k in own if k not in sd and not k.endswith("num_batches_tracked")]
    report.unexpected = [k for k in sd if k not in own]
    report.mismatched = [
        (k, tuple(sd[k].shape), tuple(own[k].shape)) for k in own if k in sd and sd[k].shape != own[k].shape
    ]
    fitting = {k: v for k, v in sd.items() if k in own and v.shape == own[k].shape}
    report.loaded = list(fitting)
    if strict and (report.missing or report.unexpected or report.mismatched):
        raise BadFile(_mismatch_message(path, net, report))
    if not any(not k.startswith("classifier.") for k in fitting):  # a same-length bias alone proves nothing
        raise BadFile(
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
        parts.append(f"shapes differ for {few([f'{k}: {a} vs {b}' for k, a, b in report.mismatched])}")
    if report.missing:
        parts.append(f"missing from the file: {few(report.missing)}")
    if report.unexpected:
        parts.append(f"not in the net: {few(report.unexpected)}")
    head_only = (
        not report.missing
        and not report.unexpected
        and all(k.startswith("classifier.") for k, _, _ in report.mismatched)
    )
    hint = (
        "the checkpoint's head was trained for another number of classes; set model.init.strict: false to load "
        "everything but the head"
        if head_only
        else "check that the file was saved from the same net (net: / net_kwargs:), or set model.init.strict: false to "
        "load only the tensors whose names and shapes fit"
    )
    return f"weights in '{path}' do not fit {type(net).__name__}: {'; '.join(parts)}. {hint}"
