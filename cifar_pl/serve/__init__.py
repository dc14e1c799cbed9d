"""A trained net put to use without the training stack: ``engine`` runs a file written by ``python -m cifar_pl
export`` with ONNX Runtime, Pillow and numpy only (no torch, no Lightning); ``app`` serves it over HTTP with a page
(``python -m cifar_pl serve``). Nothing here imports torch at module level."""
