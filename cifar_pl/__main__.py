"""``python -m cifar_pl fit --config configs/quickstart.yaml``"""

from __future__ import annotations

from .cli import CifarCLI

_UNION_ERROR = "Does not validate against any of the Union subtypes"


def cli_main(args: list[str] | None = None) -> CifarCLI:
    """Run the CLI (``args`` as on the command line; ``None`` reads ``sys.argv``)."""
    try:
        return CifarCLI(args=args)
    except ValueError as e:
        # jsonargparse reports a DataModule that refused its arguments (an unknown augmentation name, say) as
        # "does not validate against any of the Union subtypes" with the real reason further down: lift it up.
        msg = str(e)
        if msg.startswith(_UNION_ERROR) and "Errors:" in msg:
            reason = msg.split("Errors:", 1)[1].strip().splitlines()[0].lstrip("- ").strip()
            raise ValueError(f"{reason} (in the data: section)") from None
        raise


if __name__ == "__main__":
    cli_main()
