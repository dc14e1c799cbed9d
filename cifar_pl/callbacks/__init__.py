"""Training policy and reporting callbacks, one per file."""

from .freeze import BatchNormEval, FreezeBackbone, batchnorm_layers, body_parameters
from .preview import DataPreview
from .rng import RNGState
from .test_report import TestReport

__all__ = [
    "BatchNormEval", "DataPreview", "FreezeBackbone", "RNGState", "TestReport", "batchnorm_layers",
    "body_parameters",
]  # fmt: skip
