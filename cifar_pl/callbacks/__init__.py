"""Training policy and reporting callbacks, one per file."""

from .activations import ActivationStats
from .freeze import BatchNormEval, FreezeBackbone, batchnorm_layers, body_parameters
from .preview import DataPreview
from .rng import RNGState
from .run_config import RunConfig, StageStart
from .stop import GracefulStop
from .test_each_epoch import TestEachEpoch
from .test_report import TestReport
from .whiten import WhitenFromData

__all__ = [
    "ActivationStats", "BatchNormEval", "DataPreview", "FreezeBackbone", "GracefulStop", "RNGState", "RunConfig", "StageStart",
    "TestEachEpoch", "TestReport", "WhitenFromData",
    "batchnorm_layers", "body_parameters",
]  # fmt: skip
