"""What every command's parser shares: the help formatter, registry names filled in lazily, the device help.

Help: every option's default is shown, and the names the registries hold (datasets, models, methods,
surrogates) are listed. Those names are looked up only when a help text is printed, so that commands
that do not need torch (``binsight report --help``) do not import it to build the parser.
"""

from __future__ import annotations

import argparse
import re
from typing import Any

from binsight.errors import BinsightError

DEVICE_HELP = "auto (a CUDA GPU when torch sees one, else the CPU), cpu, cuda or cuda:N"

_LAZY = re.compile(r"<<(\w+)>>")


class ArgumentError(BinsightError):
    """A command-line argument that cannot be used as given (a file that is not there, an ``--out`` that is
    a file, a value of the wrong form), found before the command imports torch; the message names the flag
    and what to do."""


def registry_names(kind: str) -> str:
    """The names a registry holds, comma-separated: ``datasets``, ``models``, ``surrogates``, ``methods``."""
    if kind == "datasets":
        from binsight import data

        return ", ".join(data.available())
    if kind == "models":
        from binsight import models

        return ", ".join(models.available())
    if kind == "surrogates":
        from binsight import nn

        return ", ".join(nn.surrogates())
    if kind == "methods":
        from binsight import explain

        return ", ".join(explain.available() + [f"{family}:ClassName" for family in explain.families()])
    raise KeyError(kind)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows each option's default (not None or False ones) and fills ``<<kind>>`` with
    :func:`registry_names` when, and only when, help is printed."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if default is None or default is False or default == [] or default == argparse.SUPPRESS or "default:" in text:
            return text
        return super()._get_help_string(action)

    def _expand_help(self, action: argparse.Action) -> str:
        return _LAZY.sub(lambda m: registry_names(m.group(1)), super()._expand_help(action))


def add_command(subparsers: Any, name: str, text: str) -> argparse.ArgumentParser:
    """The parser of subcommand ``name``, described by ``text`` (its help line and its description)."""
    return subparsers.add_parser(name, help=text, description=text, formatter_class=HelpFormatter)
