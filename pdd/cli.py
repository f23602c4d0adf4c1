"""What every ``python -m pdd.<command>`` does with a user's mistake.

An unknown domain, preset or config field, missing data, a bad weights file or photo folder:
the library raises a ValueError / FileNotFoundError (or one of its named subclasses:
DatasetNotFoundError, WeightsError, PhotoError, ...) whose message already says what was
found and what to do. A command line prints that message, without a Python traceback, and
exits with status 2 (argparse's status for a usage error). ``--debug`` shows the traceback.
Anything else is a bug and keeps its traceback.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

# a user's mistake: the message is for them; everything else is ours and keeps its traceback
USER_ERRORS = (ValueError, FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError)


def add_debug_flag(ap: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """List ``--debug`` in the command's help (``run`` consumes it before ``main`` sees it)."""
    ap.add_argument("--debug", action="store_true", help="show the Python traceback of an error")
    return ap


def add_run_flags(ap: argparse.ArgumentParser, set_help: str) -> argparse.ArgumentParser:
    """What every training command takes last: ``--set KEY=VALUE`` (repeatable; read with
    ``set_items``), ``--no-progress`` and ``--debug``."""
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=set_help)
    ap.add_argument("--no-progress", action="store_true")
    return add_debug_flag(ap)


def set_items(ap: argparse.ArgumentParser, items: Sequence[str]) -> list[tuple[str, str]]:
    """A command's ``--set KEY=VALUE`` items (config fields by name, dotted for nested ones) as
    (KEY, VALUE) pairs, stripped, in the order given (applied in turn: a later one wins); an item
    without '=' is a usage error (``ap.error``: exit status 2)."""
    pairs = []
    for item in items:
        if "=" not in item:
            ap.error(f"--set expects KEY=VALUE, got {item!r}")
        k, v = item.split("=", 1)
        pairs.append((k.strip(), v.strip()))
    return pairs


def run(main: Callable[[list[str]], int], prog: str, argv: Sequence[str] | None = None) -> int:
    """``main(argv)``'s exit status; a user error becomes ``<prog>: error: <message>`` and 2,
    Ctrl-C becomes 130."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    args = [a for a in args if a != "--debug"]
    try:
        return main(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if debug:
            raise
        print(f"{prog}: error: {e}", file=sys.stderr)
        print(f"{prog}: (run again with --debug for the traceback)", file=sys.stderr)
        return 2
