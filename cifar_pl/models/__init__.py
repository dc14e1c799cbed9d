"""Plain ``nn.Module`` nets, registered by name. Importing this package registers every family."""

from ..weights_io import read_state_dict
from . import convnets, resnet_cifar, shake_shake, speed, timm_backbones, vgg  # noqa: F401  (registration side effect)
from ._base import ClassifierNet, GlobalAvgPoolHead, norm_parameters, split_parameters
from ._init import WeightInit, init_weights
from ._registry import NetCfg, create_model, get_cfg, is_model, list_models, register_model
from ._weights import LoadReport, load_weights

__all__ = [
    "ClassifierNet",
    "GlobalAvgPoolHead",
    "LoadReport",
    "NetCfg",
    "create_model",
    "get_cfg",
    "init_weights",
    "is_model",
    "list_models",
    "load_weights",
    "norm_parameters",
    "read_state_dict",
    "register_model",
    "split_parameters",
    "WeightInit",
]
