"""Plain ``nn.Module`` nets, registered by name. Importing this package registers every family."""

from . import convnets, resnet_cifar, shake_shake, timm_backbones, vgg  # noqa: F401  (registration side effect)
from ._base import ClassifierNet, GlobalAvgPoolHead, split_parameters
from ._registry import create_model, is_model, list_models, register_model
from ._weights import LoadReport, load_weights, read_state_dict

__all__ = [
    "ClassifierNet",
    "GlobalAvgPoolHead",
    "LoadReport",
    "create_model",
    "is_model",
    "list_models",
    "load_weights",
    "read_state_dict",
    "register_model",
    "split_parameters",
]
