"""``python -m cifar_pl fit --config configs/quickstart.yaml``; ``python -m cifar_pl export ...`` and
``python -m cifar_pl serve ...`` go to their own entry points (``cifar_pl.export``, ``cifar_pl.serve``)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from .errors import run_main, user_error_in

if TYPE_CHECKING:
    from .cli import CifarCLI


def cli_main(args: list[str] | None = None) -> CifarCLI:
    """Run the CLI (``args`` as on the command line; ``None`` reads ``sys.argv``) and return it; errors raise.

    jsonargparse reports a class that refused its arguments (an unknown augmentation, say) inside a report of
    its own ("does not validate against any of the Union subtypes"); the user's error is lifted out of it.
    """
    from .cli import CifarCLI  # deferred: Lightning loads for training commands only, not serve

    try:
        return CifarCLI(args=args)
    except Exception as e:
        err = user_error_in(e)
        if err is None or err is e:
            raise
        raise err from None


def main(args: list[str] | None = None) -> int:
    """The command: 0 when done, 2 with one line for a user error, 128 + n when stopped by signal n."""
    given = sys.argv[1:] if args is None else list(args)
    if given[:1] == ["export"]:
        from .export import main as export_main  # deferred: torch loads for export, not for serve

        return export_main(given[1:])
    if given[:1] == ["serve"]:
        from .serve.app import main as serve_main  # deferred: a server of an exported file needs no torch

        return serve_main(given[1:])
    return run_main(lambda: cli_main(args))


if __name__ == "__main__":
    sys.exit(main())
