"""Write a finished run's findings into the README, between its findings markers.

    python scripts/readme_findings.py RUN_DIR [--readme README.md] [--block NAME] [--print]

The block (``binsight.report.findings.findings_markdown``) is generated from the run folder alone: the
models and their accuracy, the images and seeds the verdicts rest on, every verdict and part with its
interval and what the interval covers, the intervention tests of a run on planted data, and the stage
times. ``--block NAME`` writes between the markers of the block NAME (the planted studies' blocks) instead
of the default study's; ``--print`` writes it to stdout instead.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from binsight.errors import BinsightError
from binsight.report.findings import findings_markdown, replace_block


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run_dir", type=Path)
    p.add_argument("--readme", type=Path, default=Path(__file__).resolve().parents[1] / "README.md")
    p.add_argument("--block", default="", help="the named findings block (e.g. planted); default: the default study's")
    p.add_argument("--print", action="store_true", help="print the block instead of writing the README")
    args = p.parse_args(argv)
    try:
        block = findings_markdown(args.run_dir)
        if args.print:
            print(block, end="")
            return 0
        args.readme.write_text(replace_block(args.readme.read_text(encoding="utf-8"), block, args.block), encoding="utf-8")
    except BinsightError as e:
        print(f"readme_findings: {e}", file=sys.stderr)
        return 2
    print(f"wrote the findings of {args.run_dir} into {args.readme}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
