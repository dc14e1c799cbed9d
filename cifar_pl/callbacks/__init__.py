"""Training policy and reporting callbacks, one per file."""

from .freeze import BatchNormEval, FreezeBackbone, batchnorm_layers, body_parameters
from .preview import DataPreview
from .test_report import TestReport

__all__ = [
    "BatchNormEval",
    "DataPreview",
    "FreezeBackbone",
    "TestReport",
    "batchnorm_layers",
    "body_parameters",
]
