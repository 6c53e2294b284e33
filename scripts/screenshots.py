"""Pictures of a real study run for the README: the top of its report and an overlay of one method's maps.

    python scripts/screenshots.py RUN_DIR OUT_DIR [--method gradient] [--example 0] [--height 1400]

Writes OUT_DIR/report.png (the report as headless Chromium shows it, 1280 px wide, the top HEIGHT pixels)
and OUT_DIR/overlay.png (METHOD's maps of the run's example image EXAMPLE over the image, every model).
Builds report.html first when the run folder has none. Needs Chromium (``apt-get install chromium``).
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from binsight.report import build_report
from binsight.report.build import overlay_png

BROWSERS = ("chromium", "chromium-browser", "google-chrome")


def screenshot(page: Path, out: Path, *, width: int, height: int) -> None:
    """Render ``page`` in headless Chromium into the PNG ``out`` (width x height CSS pixels)."""
    browser = next((b for b in map(shutil.which, BROWSERS) if b), None)
    if browser is None:
        sys.exit("screenshots: Chromium not found; install it (apt-get install chromium) and rerun")
    with tempfile.TemporaryDirectory() as profile:
        subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run",
                        "--disable-background-networking", "--disable-component-update", "--disable-sync",
                        f"--user-data-dir={profile}", f"--window-size={width},{height}", f"--screenshot={out}",
                        page.resolve().as_uri()], check=True, capture_output=True, timeout=180)
    if not out.is_file():
        sys.exit(f"screenshots: Chromium wrote no {out}")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("run_dir", type=Path, help="a study's run folder (binsight study --out DIR)")
    p.add_argument("out_dir", type=Path, help="where report.png and overlay.png go")
    p.add_argument("--method", default="gradient", help="the method whose maps overlay.png shows")
    p.add_argument("--example", type=int, default=0, help="which of the run's example images overlay.png shows")
    p.add_argument("--height", type=int, default=1400, help="pixels of the report's top in report.png")
    args = p.parse_args(argv)
    page = args.run_dir / "report.html"
    if not page.is_file():
        page = build_report(args.run_dir)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    screenshot(page, args.out_dir / "report.png", width=1280, height=args.height)
    png = overlay_png(args.run_dir, method=args.method, example=args.example)
    if png is None:
        sys.exit(f"screenshots: {args.run_dir} holds no {args.method} maps of example image {args.example}")
    (args.out_dir / "overlay.png").write_bytes(png)
    print(f"wrote {args.out_dir / 'report.png'} and {args.out_dir / 'overlay.png'}")


if __name__ == "__main__":
    main()
