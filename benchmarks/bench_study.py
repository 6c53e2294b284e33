"""Time the default study (``binsight study``) twice: from nothing cached, then with the models cached.

    nice python benchmarks/bench_study.py [--workdir DIR] [--config CONFIG.toml] [--threads N]

Run 1 uses an empty BINSIGHT_CACHE (models trained); run 2 the same cache and a new output folder
(models reused, every map and measure computed again). Prints each run's stages (from timings.json) and
the wall time against the issue's targets: < 15 min from nothing, < 3 min with cached models, on 2 CPU
cores. Numbers depend on what else the machine runs; the load average is printed with them.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS_S = {"cold": 15 * 60, "cached": 3 * 60}


def run_study(out: Path, cache: Path, config: str | None, threads: int | None) -> float:
    """Wall seconds of one ``binsight study`` in a child process (imports included)."""
    env = {**os.environ, "BINSIGHT_CACHE": str(cache)}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "binsight.cli", "study", *([config] if config else []), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="where the cache and run folders go (default: a temp dir)")
    parser.add_argument("--config", default=None, help="a study TOML (default: the embedded default study)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the study processes")
    args = parser.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-study-"))
    cache = work / "cache"
    walls, stages = {}, {}
    for name in ("cold", "cached"):
        out = work / f"run-{name}"
        walls[name] = run_study(out, cache, args.config, args.threads)
        stages[name] = json.loads((out / "timings.json").read_text())["stages"]
    print(f"\ncpu cores: {os.cpu_count()}, load average now: {os.getloadavg()}, threads: {args.threads or 'default'}")
    print(f"{'stage':<16}" + "".join(f"{n + ' (s)':>14}" for n in walls))
    for stage in stages["cold"]:
        print(f"{stage:<16}" + "".join(f"{stages[n].get(stage, 0.0):>14.1f}" for n in walls))
    print(f"{'wall (process)':<16}" + "".join(f"{walls[n]:>14.1f}" for n in walls))
    print(f"{'target':<16}" + "".join(f"{TARGETS_S[n]:>14.0f}" for n in walls))
    print(f"{'met':<16}" + "".join(f"{'yes' if walls[n] < TARGETS_S[n] else 'NO':>14}" for n in walls))
    print(f"run folders: {work}")


if __name__ == "__main__":
    main()
