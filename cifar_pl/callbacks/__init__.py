"""Training policy and reporting callbacks, one per file."""

from .preview import DataPreview

__all__ = ["DataPreview"]
