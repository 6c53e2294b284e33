"""``binsight study [CONFIG.toml] [--out DIR] [--print-config]``: run (or continue) the study, then build its
report."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from binsight.cli import report
from binsight.cli.parser import add_command


def add_parser(subparsers: Any) -> None:
    s = add_command(subparsers, "study", "the FP-vs-BNN explanation study, end to end, with an HTML report")
    s.add_argument("config", nargs="?", help="TOML configuration; default: the embedded default study")
    s.add_argument("--out", default=None, help="output folder (resumable); default: runs/study-HASH")
    s.add_argument("--print-config", action="store_true", help="print the resolved configuration and exit")
    s.add_argument("--quiet", action="store_true", help="no progress bar for the report")
    s.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    out = study(args.config, args.out, print_config=args.print_config)
    if out is not None:
        report.build(out, quiet=args.quiet)


def study(config_path: str | Path | None, out: str | Path | None = None, *, print_config: bool = False
          ) -> Path | None:
    """Load the configuration (None: the default study), run (or continue) the study into ``out`` (None:
    :func:`default_out`), print the verdicts and where the report goes; return the run folder. None on a
    rank other than 0 under torchrun, and with ``print_config``, which only prints the resolved
    configuration, each key under a comment with its description and default."""
    from binsight.study.config import load_config
    from binsight.study.settings_reference import commented_toml

    config = load_config(config_path)
    if print_config:
        print(commented_toml(config), end="")
        return None
    from binsight.report.render import verdict_table
    from binsight.study.plan import make_plan
    from binsight.study.runner import open_run, run_stages

    plan = make_plan(config)
    folder = Path(out) if out else default_out(plan.hash)
    with open_run(plan, folder) as ctx:
        if ctx.main:
            print(f"study: {folder} (configuration hash {plan.hash}, {ctx.ranks} process(es))")
        verdicts = run_stages(ctx)
    if verdicts is None:  # under torchrun, rank 0 alone prints the verdicts and builds the report
        return None
    print(verdict_table(verdicts))
    print(report_hint(folder))
    return folder


def default_out(config_hash: str) -> Path:
    """``runs/study-HASH`` (the first 8 characters of the configuration hash): rerunning the same
    configuration without ``--out`` continues the same run."""
    return Path("runs") / f"study-{config_hash[:8]}"


def report_hint(out: Path) -> str:
    """Where the run's report is (``OUT/report.html``, built from the folder right after the study) and how
    to open it or build it again."""
    page = (out / "report.html").resolve()
    return (f"study finished; its report: {page}\n"
            f"  open it in a web browser, e.g.: python -m webbrowser {page.as_uri()}\n"
            f"  rebuild it from the run folder at any time: binsight report {out}")
