"""Figures as ``matplotlib.figure.Figure`` objects (no pyplot, no global backend): the data and augmentation
previews, the test report (confusion, mistakes, CAMs, channels), drawn by the TensorBoard callbacks and by
``python -m cifar_pl.viz``. Importing this package imports matplotlib, so callbacks import it when they draw."""
