"""The small custom CNNs of the CIFAR courses: the conv-block family (model_a ... model_gap,
stacked_pairs) and the base CNN of the Keras/TensorFlow tutorial with its variants."""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn

from ._base import ClassifierNet, GlobalAvgPoolHead
from ._registry import SIZED, register_model

_ACTIVATIONS = {"relu": lambda: nn.ReLU(inplace=True), "sigmoid": nn.Sigmoid}


def _activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"Unknown activation '{name}'; choose one of {sorted(_ACTIVATIONS)}")
    return _ACTIVATIONS[name]()


def _conv_act_bn(
    in_ch: int,
    out_ch: int,
    activation: str,
    batchnorm: bool,
    kernel_size: int = 3,
    padding: int | str = "same",
) -> list[nn.Module]:
    # conv -> activation -> BN: the order of the course these nets come from (BN after the non-linearity).
    layers = [nn.Conv2d(in_ch, out_ch, kernel_size, padding=padding), _activation(activation)]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_ch))
    return layers


def _flat_size(features: nn.Module, in_chans: int, input_size: int) -> int:
    # A dry run is the one way to get the flatten width right for every kernel/padding/pool choice.
    with torch.no_grad():
        return features(torch.zeros(1, in_chans, input_size, input_size)).numel()


def _flatten_head(hidden: Sequence[int], in_features: int, drop_rate: float = 0.0) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = [nn.Flatten(1)]
    width = in_features
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU(inplace=True)]
        width = h
    if drop_rate > 0:
        layers.append(nn.Dropout(drop_rate))
    return nn.Sequential(*layers), width


class ConvBlockNet(ClassifierNet):
    """Stacked conv blocks: (conv3x3 'same' -> act -> [BN]) x 2 -> maxpool -> [dropout].

    With ``global_pool=False`` the last map is flattened into the classifier (fixed input size);
    with ``global_pool=True`` optional ``extra_convs`` (conv3x3 -> act -> [BN] each) follow the blocks
    and global average pooling feeds the classifier, so any input size works.
    """

    def __init__(
        self,
        widths: Sequence[int],
        num_classes: int = 10,
        in_chans: int = 3,
        activation: str = "relu",
        batchnorm: bool = False,
        dropouts: Sequence[float] | None = None,
        pool: int = 2,
        extra_convs: Sequence[int] = (),
        global_pool: bool = False,
        head_drop: float = 0.0,
        input_size: int = 32,
    ):
        super().__init__()
        dropouts = list(dropouts) if dropouts is not None else [0.0] * len(widths)
        if len(dropouts) != len(widths):
            raise ValueError(f"dropouts has {len(dropouts)} values for {len(widths)} blocks")
        layers: list[nn.Module] = []
        ch = in_chans
        for width, drop in zip(widths, dropouts, strict=True):
            layers += _conv_act_bn(ch, width, activation, batchnorm)
            layers += _conv_act_bn(width, width, activation, batchnorm)
            layers.append(nn.MaxPool2d(pool))
            if drop > 0:
                layers.append(nn.Dropout(drop))
            ch = width
        for width in extra_convs:
            layers += _conv_act_bn(ch, width, activation, batchnorm)
            ch = width
        self.features = nn.Sequential(*layers)
        self.global_pool = global_pool
        if global_pool:
            self.head = GlobalAvgPoolHead(head_drop)
            self.num_features = ch
        else:
            self.fixed_input_size = (input_size, input_size)
            self.head, self.num_features = _flatten_head(
                (), _flat_size(self.features, in_chans, input_size), head_drop
            )
        self.classifier = nn.Linear(self.num_features, num_classes)


class PlainCNN(ClassifierNet):
    """Unpadded conv layers (conv -> ReLU -> optional maxpool 2) then flatten -> dense ReLU layers."""

    def __init__(
        self,
        convs: Sequence[Sequence[int]],
        dense: Sequence[int] = (64,),
        num_classes: int = 10,
        in_chans: int = 3,
        input_size: int = 32,
    ):
        super().__init__()
        layers: list[nn.Module] = []
        ch = in_chans
        for width, kernel, pool in convs:
            layers += [nn.Conv2d(ch, width, kernel), nn.ReLU(inplace=True)]
            if pool:
                layers.append(nn.MaxPool2d(2))
            ch = width
        self.features = nn.Sequential(*layers)
        self.fixed_input_size = (input_size, input_size)
        self.head, self.num_features = _flatten_head(dense, _flat_size(self.features, in_chans, input_size))
        self.classifier = nn.Linear(self.num_features, num_classes)


# ---- the conv-block family ---------------------------------------------------------------------


@register_model(cfg=SIZED)
def model_a(num_classes: int = 10, **kwargs) -> ConvBlockNet:
    """One sigmoid block of 5 filters, maxpool 8, linear 80 -> classes."""
    return ConvBlockNet([5], num_classes, activation="sigmoid", pool=8, **kwargs)


@register_model(cfg=SIZED)
def model_b(num_classes: int = 10, **kwargs) -> ConvBlockNet:
    """model_a with 20 filters (linear 320 -> classes)."""
    return ConvBlockNet([20], num_classes, activation="sigmoid", pool=8, **kwargs)


@register_model(cfg=SIZED)
def model_c(num_classes: int = 10, **kwargs) -> ConvBlockNet:
    """Two sigmoid blocks, 20 and 40 filters, maxpool 2 each, linear 2560 -> classes."""
    return ConvBlockNet([20, 40], num_classes, activation="sigmoid", **kwargs)


@register_model(cfg=SIZED)
def model_d(num_classes: int = 10, **kwargs) -> ConvBlockNet:
    """model_c with ReLU."""
    return ConvBlockNet([20, 40], num_classes, activation="relu", **kwargs)


@register_model(cfg=SIZED)
def model_e(num_classes: int = 10, **kwargs) -> ConvBlockNet:
    """Four ReLU blocks of 20, 40, 80, 160 filters, linear 640 -> classes."""
    return ConvBlockNet([20, 40, 80, 160], num_classes, activation="relu", **kwargs)


@register_model(cfg=SIZED)
def model_f(num_classes: int = 10, **kwargs) -> ConvBlockNet:
    """model_e with BatchNorm after every activation."""
    return ConvBlockNet([20, 40, 80, 160], num_classes, activation="relu", batchnorm=True, **kwargs)


@register_model(cfg=SIZED)
def model_g(
    num_classes: int = 10, dropouts: Sequence[float] = (0.1, 0.2, 0.3, 0.4), **kwargs
) -> ConvBlockNet:
    """model_f with dropout 0.1, 0.2, 0.3, 0.4 after the four blocks."""
    return ConvBlockNet(
        [20, 40, 80, 160], num_classes, activation="relu", batchnorm=True, dropouts=dropouts, **kwargs
    )


@register_model
def model_gap(
    num_classes: int = 10, dropouts: Sequence[float] = (0.1, 0.2, 0.3), head_drop: float = 0.4, **kwargs
) -> ConvBlockNet:
    """Three BN + dropout blocks (20, 40, 80), conv 80->160 and 160->160 (ReLU, BN), global average
    pooling, dropout 0.4, linear 160 -> classes. Takes images of any size."""
    return ConvBlockNet(
        [20, 40, 80],
        num_classes,
        activation="relu",
        batchnorm=True,
        dropouts=dropouts,
        extra_convs=(160, 160),
        global_pool=True,
        head_drop=head_drop,
        **kwargs,
    )


@register_model(cfg=SIZED)
def stacked_pairs(num_classes: int = 10, **kwargs) -> ConvBlockNet:
    """conv32 x2, pool, conv64 x2, pool, conv128 x2, pool, flatten 2048, linear (ReLU, no BN)."""
    return ConvBlockNet([32, 64, 128], num_classes, activation="relu", **kwargs)


@register_model(cfg=SIZED)
def stacked_pairs_bn(
    num_classes: int = 10, dropouts: Sequence[float] = (0.2, 0.3, 0.4), **kwargs
) -> ConvBlockNet:
    """stacked_pairs with BatchNorm after every conv and dropout 0.2/0.3/0.4 after the pools."""
    return ConvBlockNet(
        [32, 64, 128], num_classes, activation="relu", batchnorm=True, dropouts=dropouts, **kwargs
    )


# ---- the base CNN and its variants ---------------------------------------------------------------


@register_model(cfg=SIZED)
def base_cnn(num_classes: int = 10, **kwargs) -> PlainCNN:
    """conv32 3x3, pool, conv64 3x3, pool, conv64 3x3 (no padding), flatten 1024, dense 64, linear."""
    return PlainCNN([(32, 3, True), (64, 3, True), (64, 3, False)], (64,), num_classes, **kwargs)


@register_model(cfg=SIZED)
def base_cnn_deep(num_classes: int = 10, **kwargs) -> PlainCNN:
    """base_cnn with every conv doubled (six convs: 32, 32, pool, 64, 64, pool, 64, 64)."""
    return PlainCNN(
        [(32, 3, False), (32, 3, True), (64, 3, False), (64, 3, True), (64, 3, False), (64, 3, False)],
        (64,),
        num_classes,
        **kwargs,
    )


@register_model(cfg=SIZED)
def base_cnn_k5(num_classes: int = 10, **kwargs) -> PlainCNN:
    """base_cnn with 5x5 kernels in the first two convs."""
    return PlainCNN([(32, 5, True), (64, 5, True), (64, 3, False)], (64,), num_classes, **kwargs)


@register_model(cfg=SIZED)
def base_cnn_wide(num_classes: int = 10, **kwargs) -> PlainCNN:
    """base_cnn with a dense layer of 512 units."""
    return PlainCNN([(32, 3, True), (64, 3, True), (64, 3, False)], (512,), num_classes, **kwargs)
