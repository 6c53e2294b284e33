"""``binsight data NAME``: where a dataset comes from, its size, classes and checksum."""

from __future__ import annotations

import argparse
from typing import Any

from binsight.cli.parser import add_command


def add_parser(subparsers: Any) -> None:
    d = add_command(subparsers, "data", "where a dataset comes from, its size, classes and checksum")
    d.add_argument("name", help="a dataset: <<datasets>>")
    d.add_argument("--root", help="explicit path to the dataset's files (or the image folder)")
    d.add_argument("--no-download", action="store_true", help="never download; fail if not found locally")
    d.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from binsight.data import describe

    print(describe(args.name, root=args.root, download=not args.no_download))
