"""The study's explain (maps) and measure stages on 1 and on K processes (torchrun, gloo on the CPU or
one GPU per process with NCCL), from a fresh run folder each time; models are trained once into a
private cache first, so no run trains.

    python benchmarks/bench_scaling.py --ranks 1 2 --images 32
    python benchmarks/bench_scaling.py --ranks 1 8 --images 128 --device cpu   # a 16-core machine

Prints, per process count, the wall seconds of the maps and measures stages (rank 0's, which include
waiting for the slowest rank) and the speed-up over the first count; and, from the first run, the CPU
seconds per map of each method (explaining, measuring), the per-unit costs that docs/scaling.md scales
up. Every process runs ``--threads`` torch threads (default 1), so K processes use K cores.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CONFIG = """
[data]
n_images = {images}
[models]
seeds = [0]
epochs_fp = 1
epochs_bnn = 1
train_subset = 512
test_subset = 256
[methods]
run = ["gradient", "smoothgrad", "gradcam", "neuromask"]
[methods.smoothgrad]
n_samples = 50
convergence = {{}}
[methods.neuromask]
iterations = {iterations}
n_images = {images}
[measures]
sanity = false
chance_methods = ["gradient"]
chance_maps = 10
chance_images = {images}
[verdicts]
n_resamples = 200
robustness_surrogates = ["ste"]
[run]
device = "{device}"
chunk_size = {chunk}
progress = false
"""


def run(config: Path, out: Path, ranks: int, env: dict[str, str]) -> tuple[float, dict]:
    study = ["-m", "binsight", "study", str(config), "--out", str(out)]
    cmd = [sys.executable, *study] if ranks == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", *study]
    start = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return wall, json.loads((out / "timings.json").read_text())


def per_map(timings: dict, images: int, models: int) -> dict[str, float]:
    """CPU seconds per map of each method label (explaining and measuring), from one process's run."""
    out = {}
    for key, seconds in timings["cpu_by_method"].items():
        stage, method = key.split("/", 1)
        out[f"{stage}/{method}"] = seconds / (images * models)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--ranks", type=int, nargs="+", default=[1, 2], help="process counts to time")
    p.add_argument("--images", type=int, default=32)
    p.add_argument("--iterations", type=int, default=100, help="NeuroMask iterations")
    p.add_argument("--chunk", type=int, default=4, help="images per work unit")
    p.add_argument("--device", default="cpu", help="cpu or cuda (one GPU per process)")
    p.add_argument("--threads", type=int, default=1, help="torch threads per process")
    p.add_argument("--keep", default="", help="keep the run folders here")
    args = p.parse_args()

    root = Path(args.keep or tempfile.mkdtemp(prefix="bench-scaling-"))
    root.mkdir(parents=True, exist_ok=True)
    config = root / "scaling.toml"
    config.write_text(CONFIG.format(images=args.images, iterations=args.iterations, device=args.device,
                                    chunk=args.chunk))
    env = {**os.environ, "BINSIGHT_CACHE": str(root / "cache"), "OMP_NUM_THREADS": str(args.threads)}
    print(f"machine: {os.cpu_count()} cores, load {os.getloadavg()[0]:.1f}; device {args.device}; "
          f"{args.images} images, chunks of {args.chunk}, NeuroMask {args.iterations} iterations")
    warm = root / "warm.toml"  # the same models on a few images: trains them into the cache; not timed
    warm.write_text(CONFIG.format(images=args.chunk, iterations=1, device=args.device, chunk=args.chunk))
    run(warm, root / "warm", 1, env)
    results = {}
    for k in args.ranks:
        out = root / f"ranks-{k}"
        shutil.rmtree(out, ignore_errors=True)
        wall, timings = run(config, out, k, env)
        results[k] = (wall, timings)
        stages = timings["stages"]
        print(f"{k} process(es): maps {stages['maps']:.1f} s, measures {stages['measures']:.1f} s, "
              f"whole job {wall:.1f} s")
    first = args.ranks[0]
    for k in args.ranks[1:]:
        a, b = results[first][1]["stages"], results[k][1]["stages"]
        print(f"speed-up {first} -> {k} processes: maps {a['maps'] / b['maps']:.2f}x, "
              f"measures {a['measures'] / b['measures']:.2f}x")
    models = len(json.loads((root / f"ranks-{first}" / "models.json").read_text()))
    print(f"CPU seconds per map ({first} process(es), {models} table models):")
    for key, seconds in sorted(per_map(results[first][1], args.images, models).items()):
        print(f"  {key:<28} {seconds:.4f}")
    if not args.keep:
        shutil.rmtree(root)


if __name__ == "__main__":
    main()
