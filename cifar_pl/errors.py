"""User errors: what a person gave (a value, a name, a file) is wrong, as opposed to a bug in this package.

A user error is printed as one line (``error: ...``, the message says what to do), exits with status 2 and shows
no traceback; every other exception keeps its traceback, because it is a bug to report. Set
``CIFAR_PL_TRACEBACK=1`` to see the traceback of user errors too (the exit code stays 2).
"""

from __future__ import annotations

import errno
import os
import signal
import sys
import threading
import traceback
from collections.abc import Callable
from typing import TypeVar

TRACEBACK_ENV = "CIFAR_PL_TRACEBACK"
EXIT_USER_ERROR = 2
E = TypeVar("E", bound=BaseException)


class UserError(Exception):
    """Base of the errors a user can fix; the message is the whole story (what was wrong, what to do)."""


class BadValue(UserError, ValueError):
    """An option has a value outside its range, or names something that does not exist."""


class BadFile(UserError, ValueError):
    """A file exists but is not what it should be (not a checkpoint, a broken batch file, an image too large)."""


class MissingFile(UserError, FileNotFoundError):
    """A file or folder the user named does not exist."""


class TrainingDiverged(UserError, FloatingPointError):
    """The loss became NaN or infinite: a setting (usually the learning rate) is wrong for this net."""


def error_in(exc: BaseException | None, kind: type[E]) -> E | None:
    """The exception of type ``kind`` that caused ``exc`` (itself, or one in its chain of causes), if any."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kind):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def user_error_in(exc: BaseException) -> UserError | None:
    """The UserError that caused ``exc`` (itself, or one in its chain), if any. jsonargparse wraps an error
    raised while it instantiates a class in a report of its own; the original is kept in the chain."""
    return error_in(exc, UserError)


def run_main(fn: Callable[[], object]) -> int:
    """Run an entry point's body: 0 when it returns, 2 with one line on stderr for a user error, 130 for
    Ctrl+C outside training; ``SystemExit`` (argparse errors, a training stopped by a signal) passes through."""
    show = os.environ.get(TRACEBACK_ENV, "").lower() not in ("", "0", "false", "no")
    if hasattr(signal, "SIGXFSZ") and threading.current_thread() is threading.main_thread():
        # a write past the file-size limit (ulimit -f) fails with EFBIG, said in one line by the writer, instead
        # of the signal killing the process mid-write ("File size limit exceeded", core dumped)
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    try:
        fn()
    except KeyboardInterrupt:
        print("error: interrupted", file=sys.stderr)
        return 130
    except Exception as e:
        err = user_error_in(e)
        if err is None:
            too_large = error_in(e, OSError)
            if too_large is None or too_large.errno != errno.EFBIG:
                raise
            err = UserError(
                f"the file-size limit of this process (ulimit -f) stopped a write"
                f"{f' to {too_large.filename}' if too_large.filename else ''}; raise the limit (ulimit -f "
                f"unlimited) and run again"
            )
        if show:  # asked for: the traceback too, with the same line and the same exit code
            traceback.print_exc()
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    return 0


def run_main_code(fn: Callable[[], int]) -> int:
    """``run_main`` for a body that returns its own exit code (0, or e.g. 1 for a check that failed)."""
    code = 0

    def body() -> None:
        nonlocal code
        code = fn()

    return run_main(body) or code
