"""The study's verdicts as the fixed-width table ``binsight study`` prints (:mod:`binsight.cli.study`)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def study_command(args: Any) -> Path | None:
    """Temporary: the previous interface of :func:`binsight.cli.study.study` (an object with ``config``,
    ``out`` and ``print_config`` attributes), kept until its last caller (tests/test_study_run.py) calls
    that function; the same steps and printing, without the report."""
    from binsight.study.config import config_hash, load_config
    from binsight.study.runner import StudyRunner
    from binsight.study.settings_reference import commented_toml

    config = load_config(args.config)
    if args.print_config:
        print(commented_toml(config), end="")
        return None
    out = Path(args.out) if args.out else Path("runs") / f"study-{config_hash(config)[:8]}"
    runner = StudyRunner(config, out)
    if runner.rank == 0:
        print(f"study: {out} (configuration hash {config_hash(config)}, {runner.ranks} process(es))")
    result = runner.run()
    if runner.rank != 0:
        return None
    page = (out / "report.html").resolve()
    print(verdict_table(result))
    print(f"study finished; its report: {page}\n  open it in a web browser, e.g.: python -m webbrowser "
          f"{page.as_uri()}\n  rebuild it from the run folder at any time: binsight report {out}")
    return out


def verdict_table(verdicts: dict[str, Any]) -> str:
    """The verdicts (verdicts.json's content) as fixed-width text: number, full title and status (with
    "fragile" where a robustness setting changes it), then each part's status and reading; a part that
    compares levels (FP-vs-BNN, FP-vs-FP, ...) lists every level with its interval on the next line, any
    other part its statistic [interval] and the bound it is compared with."""
    rows = verdicts.get("verdicts", [])
    width = max([len("finding")] + [len(v["title"]) for v in rows])
    lines = [f"{'#':<2} {'finding':<{width}}  status"]
    for v in rows:
        status = v["status"] + (", fragile" if v.get("fragile") else "")
        lines.append(f"{v['id']:<2} {v['title']:<{width}}  {status}")
        for part in v.get("parts", []):
            reading = f" ({part['reading']})" if part.get("reading") not in (None, "", part["status"]) else ""
            levels, estimate = part.get("levels") or {}, part.get("estimate")
            compared = estimate and estimate not in levels.values()  # as the README findings: not said twice
            text = f"  {_interval(estimate)} ({_level(estimate)})" if compared else ""
            bound = f", bound {part['bound']:+.3f}" if compared and part.get("bound") is not None else ""
            lines.append(f"     - {part['name']}: {part['status']}{reading}{text}{bound}")
            if levels:
                shown = "; ".join(f"{name} {_interval(level)}" for name, level in levels.items())
                lines.append(f"         {shown} ({_level(next(iter(levels.values())))})")
    return "\n".join(lines)


def _interval(estimate: dict[str, Any]) -> str:
    return f"{estimate['value']:+.3f} [{estimate['low']:+.3f}, {estimate['high']:+.3f}]"


def _level(estimate: dict[str, Any]) -> str:
    return f"{estimate.get('confidence', 0.95):.0%} CI"
