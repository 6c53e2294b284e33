"""The ``binsight`` parser and :func:`main`, which runs one command.

Each command only parses its arguments and calls one library function; the work lives in the library so
that everything the command line does can also be done from Python.

Errors: a :class:`~binsight.errors.BinsightError` (bad input, a file that cannot be read, a setting that
cannot work) is printed as one line, ``binsight COMMAND: error: MESSAGE``, with exit status 2. Any other
exception is a bug and propagates with its traceback. Warnings raised by binsight's own modules (an
option that does not apply, a degenerate map, a corrupt stored unit) are printed as one line,
``warning: MESSAGE``; other libraries' warnings keep Python's format.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import warnings
from typing import Iterator

from binsight import __version__
from binsight.cli import data, evaluate, explain, report, study, train
from binsight.cli.parser import HelpFormatter
from binsight.errors import BinsightError

COMMANDS = (data, train, evaluate, explain, study, report)
"""The command modules, in the order ``binsight --help`` lists them."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="binsight", formatter_class=HelpFormatter,
        description="Explain full-precision and binarized image classifiers, and measure how far the explanations can be trusted.",
    )
    p.add_argument("--version", action="version", version=f"binsight {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def _show_warning(message, category, filename, lineno, file=None, line=None, *, _default=warnings.showwarning):
    """binsight's own warnings as ``warning: MESSAGE`` on stderr; others in Python's format."""
    if getattr(category, "__module__", "").split(".")[0] == "binsight":
        print(f"warning: {_one_line(str(message))}", file=file or sys.stderr)
    else:
        _default(message, category, filename, lineno, file, line)


@contextlib.contextmanager
def _binsight_warnings() -> Iterator[None]:
    """Inside: binsight's warnings printed by :func:`_show_warning`, each one every time it is raised;
    the warning filters and ``showwarning`` are restored on exit."""
    with warnings.catch_warnings():
        warnings.showwarning = _show_warning
        warnings.filterwarnings("always", module=r"binsight(\.|$)")
        yield


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        with _binsight_warnings():
            args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BinsightError as e:
        print(f"binsight {args.command}: error: {_one_line(str(e))}", file=sys.stderr)
        return 2
    return 0


def _one_line(message: str) -> str:
    return " ".join(message.split())
