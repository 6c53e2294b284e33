"""The ``binsight`` command line: argument parsing and printing only.

One module per command (:mod:`~binsight.cli.data`, :mod:`~binsight.cli.train`,
:mod:`~binsight.cli.evaluate`, :mod:`~binsight.cli.explain`, :mod:`~binsight.cli.study`,
:mod:`~binsight.cli.report`), each with ``add_parser(subparsers)`` (its arguments) and ``run(args)`` (it turns
the parsed arguments into plain keyword arguments of one library function and prints what that returns).
:mod:`~binsight.cli.main` builds the parser and runs a command; :mod:`~binsight.cli.parser` holds the help
formatter the commands share. ``argparse`` is imported here and nowhere else in binsight
(``tests/test_layering.py`` checks it), and no library function takes an ``argparse.Namespace``.
"""

from binsight.cli.main import build_parser, main

__all__ = ["build_parser", "main"]
