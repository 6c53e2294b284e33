"""How long a mistyped path takes to be reported: ``binsight explain missing.png --model x`` against
``python -c pass`` (the interpreter's own start), in the same run.

``binsight explain`` checks the files its flags name (images, checkpoints, ``--weights``) and ``--out``
before it imports torch, so a missing file costs the interpreter's start plus binsight's command line
only. The test ``tests/cli/test_explain_command.py`` checks that no torch is imported on that path; this
benchmark gives the seconds. Each round runs both commands once, so that changing load on a shared machine
hits both alike; the median of ``--repeats`` rounds is printed.

Run: ``python benchmarks/bench_cli_errors.py`` (``--repeats 20``).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time


def seconds(argv: list[str], cwd: str) -> float:
    """Wall seconds of one run of ``argv`` in ``cwd``."""
    start = time.perf_counter()
    subprocess.run(argv, cwd=cwd, capture_output=True, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    args = parser.parse_args()
    commands = {
        "python -c pass": [sys.executable, "-c", "pass"],
        "binsight explain missing.png --model x": [sys.executable, "-m", "binsight", "explain", "missing.png",
                                                   "--model", "x"],
        "python -c 'import torch'": [sys.executable, "-c", "import torch"],
    }
    with tempfile.TemporaryDirectory() as cwd:
        error = subprocess.run(commands["binsight explain missing.png --model x"], cwd=cwd, capture_output=True,
                               text=True)
        print(f"the error: {error.stderr.strip()} (exit status {error.returncode})")
        times: dict[str, list[float]] = {name: [] for name in commands}
        for _ in range(args.repeats):
            for name, argv in commands.items():
                times[name].append(seconds(argv, cwd))
    for name, values in times.items():
        print(f"{name:<42} median {statistics.median(values):6.3f} s  (min {min(values):.3f}, {args.repeats} runs)")


if __name__ == "__main__":
    main()
