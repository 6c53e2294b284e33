"""``binsight report DIR``: rebuild report.html of a finished or partial study run."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from binsight.cli.parser import add_command


def add_parser(subparsers: Any) -> None:
    r = add_command(subparsers, "report", "rebuild report.html of a finished or partial study run")
    r.add_argument("dir", help="the run folder")
    r.add_argument("--quiet", action="store_true", help="no progress bar")
    r.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    build(args.dir, quiet=args.quiet)


def build(out: str | Path, *, quiet: bool) -> None:
    """Build ``out``'s report (a progress bar on stderr unless ``quiet``) and print where it is."""
    from binsight.report import build_report, tqdm_progress

    bar = tqdm_progress(file=sys.stderr, disable=True if quiet else None, leave=False)
    print(f"report: {build_report(out, progress=bar)}")
