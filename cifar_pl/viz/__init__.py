"""The pictures as commands (``python -m cifar_pl.viz ...``): curves, run comparisons, CAMs, galleries, the
augmentation preview, activation statistics. The figures they draw are in ``cifar_pl.figures`` (which the
TensorBoard callbacks draw too) and the numbers in ``cifar_pl.evaluation``."""
