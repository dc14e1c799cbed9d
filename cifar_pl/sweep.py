"""``python -m cifar_pl.sweep <sweep file> ...``: the sweep command (the engine is the package ``cifar_pl.sweeps``)."""

import sys

from .sweeps.cli import main

if __name__ == "__main__":
    sys.exit(main())
