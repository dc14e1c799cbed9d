"""``python -m cifar_pl fit --config configs/quickstart.yaml``"""

from __future__ import annotations

import sys

from .cli import CifarCLI
from .errors import run_main, user_error_in


def cli_main(args: list[str] | None = None) -> CifarCLI:
    """Run the CLI (``args`` as on the command line; ``None`` reads ``sys.argv``) and return it; errors raise.

    jsonargparse reports a class that refused its arguments (an unknown augmentation, say) inside a report of
    its own ("does not validate against any of the Union subtypes"); the user's error is lifted out of it.
    """
    try:
        return CifarCLI(args=args)
    except Exception as e:
        err = user_error_in(e)
        if err is None or err is e:
            raise
        raise err from None


def main(args: list[str] | None = None) -> int:
    """The command: 0 when done, 2 with one line for a user error, 128 + n when stopped by signal n."""
    return run_main(lambda: cli_main(args))


if __name__ == "__main__":
    sys.exit(main())
