"""Write docs/settings.md, the reference of every study setting, from where each study setting is declared.

    python scripts/settings_reference.py [--check]

The text comes from :func:`binsight.study.settings_reference.markdown` (the configuration's dataclasses and the
registered explainers' options). ``--check`` writes nothing and exits 1 when docs/settings.md differs from
what the configuration gives now.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from binsight.study.settings_reference import markdown

TARGET = Path(__file__).resolve().parent.parent / "docs" / "settings.md"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="write docs/settings.md from where each study setting is declared")
    parser.add_argument("--check", action="store_true", help="only check that docs/settings.md is up to date")
    args = parser.parse_args(argv)
    text = markdown()
    if args.check:
        current = TARGET.read_text(encoding="utf-8") if TARGET.exists() else ""
        if current != text:
            print(f"{TARGET} is out of date; run: python scripts/settings_reference.py", file=sys.stderr)
            return 1
        return 0
    TARGET.write_text(text, encoding="utf-8")
    print(f"wrote {TARGET}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
