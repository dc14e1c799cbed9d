"""Training policy and reporting callbacks, one per file."""

from ..renames import renamed
from .activations import ActivationStats
from .each_epoch import EvaluateEachEpoch
from .freeze import BatchNormEval, FreezeBackbone, batchnorm_layers, body_parameters
from .histograms import ParameterHistograms
from .preview import DataPreview
from .report import EndOfTestReport
from .rng import RNGState
from .run_config import RunConfig, StageStart
from .stop import GracefulStop
from .whiten import WhitenFromData

__all__ = [
    "ActivationStats", "BatchNormEval", "DataPreview", "FreezeBackbone", "GracefulStop", "RNGState", "RunConfig", "StageStart",
    "EvaluateEachEpoch", "EndOfTestReport", "ParameterHistograms", "WhitenFromData",
    "batchnorm_layers", "body_parameters",
]  # fmt: skip


def __getattr__(name: str):
    # an old name (cifar_pl.renames), as jsonargparse looks up a class path given on the command line
    old = f"{__name__}.{name}"
    new = renamed(old)
    if new != old:
        return globals()[new.rsplit(".", 1)[1]]
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
