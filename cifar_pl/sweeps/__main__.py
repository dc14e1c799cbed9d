"""``python -m cifar_pl.sweeps``: the same command as ``python -m cifar_pl.sweep``."""

import sys

from .cli import main

sys.exit(main())
