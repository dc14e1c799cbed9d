"""Pictures: augmentation previews (and, later, curves, CAMs, galleries)."""

from .augment import augmentation_figure, samples_figure

__all__ = ["augmentation_figure", "samples_figure"]
