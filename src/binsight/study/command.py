"""``binsight study [CONFIG.toml] [--out DIR] [--print-config]``: run (or continue) the study."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from binsight.study.config import StudyConfig, config_hash, load_config, to_toml


def default_out(config: StudyConfig) -> Path:
    """``runs/study-HASH``: rerunning the same configuration without --out continues the same run."""
    return Path("runs") / f"study-{config_hash(config)[:8]}"


def study_command(args: argparse.Namespace) -> Path | None:
    """Load the configuration, run (or continue) the study and print the verdicts; return the run folder
    (None with ``--print-config``, which only prints the resolved configuration)."""
    config = load_config(args.config)
    if args.print_config:
        print(to_toml(config), end="")
        return None
    from binsight.study.runner import StudyRunner

    out = Path(args.out) if args.out else default_out(config)
    print(f"study: {out} (configuration hash {config_hash(config)})")
    result = StudyRunner(config, out).run()
    print(verdict_table(result))
    return out


def verdict_table(verdicts: dict[str, Any]) -> str:
    """The verdicts as a short fixed-width text table: number, title, status, estimate and interval."""
    level = f"{verdicts.get('confidence', 0.95):.0%} CI"
    lines = [f"{'#':<2} {'finding':<58} {'status':<13} estimate [{level}]"]
    for v in verdicts["verdicts"]:
        if v.get("estimate") is None or v.get("ci") is None or None in v["ci"]:
            numbers = "-"
        else:
            numbers = f"{v['estimate']:+.3f} [{v['ci'][0]:+.3f}, {v['ci'][1]:+.3f}]"
        lines.append(f"{v['id']:<2} {v['title'][:58]:<58} {v['status']:<13} {numbers}")
    return "\n".join(lines)
