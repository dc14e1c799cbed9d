"""Range and choice checks for options, run where a value enters (a constructor, a command-line flag), so a bad
value fails at once with the option's name instead of deep inside torch at the first batch.

Option names with a fixed set of values are declared once as a ``Literal`` alias; ``choices(Alias)`` gives the
tuple and ``check_choice`` the message, so the list is never typed out twice.
"""

from __future__ import annotations

import difflib
import math
import typing
from collections.abc import Sequence
from typing import Any

from .errors import BadValue


def choices(alias: Any) -> tuple:
    """The values of a ``Literal[...]`` alias (also inside ``Optional``/``Union``)."""
    if typing.get_origin(alias) is typing.Literal:
        return typing.get_args(alias)
    out: tuple = ()
    for arg in typing.get_args(alias):
        out += choices(arg)
    return out


def check_choice(name: str, value: Any, allowed: Any, hint: str = "") -> Any:
    """``value`` must be one of ``allowed`` (a Literal alias or a sequence)."""
    options = choices(allowed) if not isinstance(allowed, (list, tuple, dict)) else tuple(allowed)
    if value not in options:
        close = difflib.get_close_matches(str(value)[:200], [str(o) for o in options], n=2)
        guess = f" Did you mean {' or '.join(repr(c) for c in close)}?" if close else ""
        shown = (
            repr(value)
            if len(repr(value)) <= 80
            else f"{repr(value)[:60]}... ({len(repr(value)):,} characters)"
        )
        raise BadValue(
            f"{name}: unknown value {shown}.{guess} Choose one of {', '.join(str(o) for o in options)}"
            + (f"; {hint}" if hint else "")
        )
    return value


def _describe(lo, hi, lo_open: bool, hi_open: bool) -> str:
    if lo is not None and hi is not None:
        return f"in {'(' if lo_open else '['}{lo}, {hi}{')' if hi_open else ']'}"
    if lo is not None:
        return f"{'>' if lo_open else '>='} {lo}"
    return f"{'<' if hi_open else '<='} {hi}"


def check_number(
    name: str,
    value: Any,
    lo: float | None = None,
    hi: float | None = None,
    *,
    lo_open: bool = False,
    hi_open: bool = False,
    integer: bool = False,
    hint: str = "",
) -> Any:
    """``value`` must be a finite number (an int when ``integer``) within the bounds (open or closed)."""
    kind = "a whole number" if integer else "a number"
    ok_type = isinstance(value, int) if integer else isinstance(value, (int, float))
    if isinstance(value, bool) or not ok_type or (isinstance(value, float) and not math.isfinite(value)):
        raise BadValue(f"{name} must be {kind}, got {value!r}" + (f"; {hint}" if hint else ""))
    too_low = lo is not None and (value <= lo if lo_open else value < lo)
    too_high = hi is not None and (value >= hi if hi_open else value > hi)
    if too_low or too_high:
        raise BadValue(
            f"{name} must be {_describe(lo, hi, lo_open, hi_open)}, got {value!r}"
            + (f"; {hint}" if hint else "")
        )
    return value


def check_size_or_fraction(name: str, value: Any, total: int | None = None, hint: str = "") -> int | float:
    """A share of a set: a fraction in (0, 1) or a whole count >= 1 (below ``total`` when it is known). A float is
    a fraction (``1.0`` is every image, refused), an int a count; an integral float above 1 (``5000.0``, as older
    checkpoints recorded counts) is a count."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BadValue(f"{name} must be a fraction in (0, 1) or a count, got {value!r}")
    if isinstance(value, float) and value == 1.0:
        raise BadValue(
            f"{name} 1.0 is a fraction that takes every image; give a fraction below 1 (e.g. 0.1), or a count of "
            f"images written without a decimal point (1 for one image)"
        )
    if isinstance(value, float) and not value.is_integer():
        return check_number(name, value, 0, 1, lo_open=True, hi_open=True,
                            hint=hint or "give a fraction in (0, 1), or a whole count of images")  # fmt: skip
    count = int(value)
    if count < 1:
        raise BadValue(f"{name} must be a fraction in (0, 1) or a count >= 1, got {value!r}")
    if total is not None and count >= total:
        raise BadValue(
            f"{name}={count} takes all {total} images; use a fraction in (0, 1) or a count below {total}"
        )
    return count


def check_class_names(name: str, names: Sequence[str] | None, minimum: int = 2) -> list[str] | None:
    """A class list: no duplicates (each would read the same images under two labels), at least ``minimum``."""
    if names is None:
        return None
    names = [str(n) for n in names]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise BadValue(f"{name} lists {dupes} more than once; name each class once")
    if len(names) < minimum:
        raise BadValue(f"{name}: only {len(names)} class {names}; a classifier needs at least {minimum}")
    return names
