"""``python -m cifar_pl fit --config configs/quickstart.yaml``"""

from __future__ import annotations

from .cli import CifarCLI


def cli_main(args: list[str] | None = None) -> CifarCLI:
    """Run the CLI (``args`` as on the command line; ``None`` reads ``sys.argv``)."""
    return CifarCLI(args=args)


if __name__ == "__main__":
    cli_main()
