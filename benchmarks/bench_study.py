"""Time the default study (``binsight study``) twice: from nothing cached, then with the models cached.

    nice python benchmarks/bench_study.py [--workdir DIR] [--config CONFIG.toml] [--threads N] [--only cached]
                                          [--nproc K]

Run 1 uses an empty BINSIGHT_CACHE (models trained); run 2 the same cache and a new output folder
(models reused, every map and measure computed again). Prints each run's stages from timings.json: wall
seconds and this process's CPU seconds (on a machine shared with other jobs the CPU seconds tell the
work apart from the waiting; with one thread, wall = CPU on an idle machine), the wall time of the
whole process against the targets (< 30 min from nothing, < 3 min with cached models, 2 CPU cores),
the load average before and after, and a probe of the machine's speed (a bare forward and backward pass)
before and after, to compare runs taken under different loads. ``--only cached`` skips run 1 (the cache
in ``--workdir`` must already hold the models); ``--only floor`` measures the floor below and nothing else;
``--only floor --run DIR`` sets every stage of the run in DIR against its own floor: the images its models
saw (timings.json's ``passes``: forward-only and forward-and-backward, over all ranks) at the rate of bare
passes of the default models on ``--nproc`` processes.
``--nproc K`` runs the study under ``torchrun --standalone --nproc-per-node K`` (one thread per process
unless ``--threads``), the same study sharded over K processes.

The floor: the default study's NeuroMask alone makes 3 x 64 x 2,000 forward and backward passes per
precision (64 images, 3 models, 2,000 steps); the script times bare forward + backward-to-the-input passes of
small-cnn FP and BNN (the best of batch sizes 32 to 512, float32, PyTorch's own kernels) and prints how long
that many passes take at least, with nothing else of the study: a floor under which no float32
implementation of the default study on those kernels can go on this machine.

On a machine shared with other jobs the full default study takes hours of wall time; there,
``--config benchmarks/study_reduced.toml --threads 1`` runs the same stages on fewer images (32 of 128;
NeuroMask on 8 of 64; the chance test on 4 of 16; models trained briefly, which changes no cost but
training's), and timings.json's ``cpu_by_method`` gives the CPU seconds of each method's maps and measures,
which scale linearly with the images to the default study.
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

TARGETS_S = {"cold": 30 * 60, "cached": 3 * 60}
NEUROMASK_PASSES = 3 * 64 * 2000  # per precision: 3 seeds x 64 images x 2,000 steps of the default study


def run_study(out: Path, cache: Path, config: str | None, threads: int | None, nproc: int = 1) -> float:
    """Wall seconds of one ``binsight study`` in a child process (imports and report included); with
    ``nproc`` > 1 under torchrun, one thread per process unless ``threads`` says otherwise."""
    env = {**os.environ, "BINSIGHT_CACHE": str(cache)}
    if threads or nproc > 1:
        env["OMP_NUM_THREADS"] = str(threads or 1)
    launcher = ["-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}"] if nproc > 1 else []
    cmd = [sys.executable, *launcher, "-m", "binsight", "study", *([config] if config else []), "--out", str(out)]
    start = time.perf_counter()
    subprocess.run(cmd, env=env, check=True)
    return time.perf_counter() - start


def probe(threads: int | None) -> float:
    """Images per second of a bare forward and backward pass of small-cnn (BNN, batch 64) in a child
    process: the unit most of the study's cost is made of (maps: SmoothGrad, NeuroMask), measured beside
    the study so that numbers taken on a loaded machine can be compared with an idle one's."""
    code = (
        "import time, torch; from binsight.models import build_model\n"
        "m = build_model('small-cnn', 'bnn').eval(); x = torch.rand(64, 1, 28, 28, requires_grad=True)\n"
        "for _ in range(3): m(x).sum().backward()\n"
        "t = time.perf_counter(); n = 0\n"
        "while time.perf_counter() - t < 5: m(x).sum().backward(); n += 64\n"
        "print(n / (time.perf_counter() - t))\n"
    )
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads)} if threads else {})}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def probe_lines(code: str, threads: int | None, nproc: int) -> list[str]:
    """The output lines of ``nproc`` child processes running ``code`` at once (the study's layout; one
    thread each when ``nproc`` > 1 unless ``threads``), all children's lines together."""
    env = {**os.environ, **({"OMP_NUM_THREADS": str(threads or 1)} if threads or nproc > 1 else {})}
    children = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, text=True)
                for _ in range(nproc)]
    lines = []
    for child in children:
        out, _ = child.communicate()
        if child.returncode:
            raise RuntimeError(f"a probe process failed (exit {child.returncode})")
        lines += out.strip().splitlines()
    return lines


def floor_seconds(threads: int | None, nproc: int = 1) -> dict[str, float]:
    """Seconds that the default study's NeuroMask passes take at least (see the module docstring), per
    precision, from the rate of bare forward + backward-to-the-input passes at the best of batch sizes
    32 to 512: ``nproc`` child processes at once (the study's layout; one thread each when ``nproc`` > 1
    unless ``threads``), their rates summed."""
    code = (
        "import sys, time, torch; from binsight.models import build_model\n"
        "for precision in ('fp', 'bnn'):\n"
        "    m = build_model('small-cnn', precision).eval(); best = 0.0\n"
        "    for batch in (32, 64, 128, 256, 512):\n"
        "        x = torch.rand(batch, 1, 28, 28, requires_grad=True)\n"
        "        for _ in range(3): torch.autograd.grad(m(x)[:, 0].sum(), x)\n"
        "        t = time.perf_counter(); n = 0\n"
        "        while time.perf_counter() - t < 3: torch.autograd.grad(m(x)[:, 0].sum(), x); n += batch\n"
        "        best = max(best, n / (time.perf_counter() - t))\n"
        "    print(precision, best)\n"
    )
    rates: dict[str, float] = {}
    for line in probe_lines(code, threads, nproc):
        precision, rate = line.split()
        rates[precision] = rates.get(precision, 0.0) + float(rate)
    return {precision: NEUROMASK_PASSES / rate for precision, rate in rates.items()}


def pass_rates(threads: int | None, nproc: int) -> dict[str, float]:
    """Images per second of bare passes of the default models, ``nproc`` child processes at once (their
    rates summed): "forward" (no gradients, softmax) and "forward_backward" (forward and backward to the
    input), each the best of batch sizes 64 to 512 and the harmonic mean of small-cnn FP and BNN (a count
    split evenly between them takes count / that rate)."""
    code = (
        "import time, torch; from binsight.models import build_model\n"
        "def best(step, m):\n"
        "    top = 0.0\n"
        "    for batch in (64, 256, 512):\n"
        "        x = torch.rand(batch, 1, 28, 28, requires_grad=True)\n"
        "        for _ in range(3): step(m, x)\n"
        "        t = time.perf_counter(); n = 0\n"
        "        while time.perf_counter() - t < 2: step(m, x); n += batch\n"
        "        top = max(top, n / (time.perf_counter() - t))\n"
        "    return top\n"
        "def fwd(m, x):\n"
        "    with torch.no_grad(): torch.softmax(m(x), 1)\n"
        "def fwd_bwd(m, x): torch.autograd.grad(m(x)[:, 0].sum(), x)\n"
        "for precision in ('fp', 'bnn'):\n"
        "    m = build_model('small-cnn', precision).eval()\n"
        "    print(precision, best(fwd, m), best(fwd_bwd, m))\n"
    )
    rates = {"fp": [0.0, 0.0], "bnn": [0.0, 0.0]}
    for line in probe_lines(code, threads, nproc):
        precision, forward, backward = line.split()
        rates[precision][0] += float(forward)
        rates[precision][1] += float(backward)
    return {kind: 2 / (1 / rates["fp"][i] + 1 / rates["bnn"][i]) for i, kind in enumerate(("forward", "forward_backward"))}


def print_stage_floors(run: Path, threads: int | None, nproc: int) -> None:
    """Each stage of the run in ``run`` against its floor: the bare passes of the images its models saw
    (timings.json's ``passes``, counted by binsight.study.passes) at :func:`pass_rates`."""
    timings = json.loads((run / "timings.json").read_text())
    if not timings.get("passes"):
        raise SystemExit(f"{run}/timings.json has no pass counts (a run of an older binsight): rerun the study")
    rates = pass_rates(threads, nproc)
    print(f"bare pass rates, {nproc} process(es): forward {rates['forward']:,.0f} img/s, forward + backward "
          f"{rates['forward_backward']:,.0f} img/s (small-cnn FP and BNN, harmonic mean)")
    print(f"{'stage':<12}{'forward':>14}{'fwd+bwd':>14}{'floor s':>10}{'wall s':>10}{'x floor':>9}")
    floors, walls = 0.0, 0.0
    for stage, counts in timings["passes"].items():
        floor = sum(counts.get(kind, 0.0) / rates[kind] for kind in rates)
        wall = timings["stages"].get(stage, 0.0)
        floors, walls = floors + floor, walls + wall
        ratio = f"{wall / floor:.2f}" if floor > 0 else "-"
        print(f"{stage:<12}{counts.get('forward', 0):>14,.0f}{counts.get('forward_backward', 0):>14,.0f}"
              f"{floor:>10.1f}{wall:>10.1f}{ratio:>9}")
    print(f"{'all stages':<12}{'':>28}{floors:>10.1f}{walls:>10.1f}{walls / floors:>9.2f}")


def print_floor(threads: int | None, nproc: int) -> None:
    floor = floor_seconds(threads, nproc)
    print(f"floor: the default study's NeuroMask passes alone (bare forward + backward to the input, best of "
          f"batches 32-512, {NEUROMASK_PASSES:,} per precision, {nproc} process(es)) take at least "
          f"{floor['fp']:.0f} s (FP) + {floor['bnn']:.0f} s (BNN) = {sum(floor.values()):.0f} s on this machine, "
          f"against the cached target of {TARGETS_S['cached']} s")


def print_table(walls: dict[str, float], timings: dict[str, dict]) -> None:
    names = list(walls)
    print(f"{'stage':<16}" + "".join(f"{n + ' wall':>14}{n + ' cpu':>14}" for n in names))
    for stage in timings[names[0]]["stages"]:
        print(f"{stage:<16}" + "".join(f"{timings[n]['stages'].get(stage, 0.0):>14.1f}"
                                        f"{timings[n].get('cpu', {}).get(stage, 0.0):>14.1f}" for n in names))
    print(f"{'wall (process)':<16}" + "".join(f"{walls[n]:>14.1f}{'':>14}" for n in names))
    print(f"{'target':<16}" + "".join(f"{TARGETS_S[n]:>14.0f}{'':>14}" for n in names))
    print(f"{'met':<16}" + "".join(f"{'yes' if walls[n] < TARGETS_S[n] else 'NO':>14}{'':>14}" for n in names))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", default=None, help="where the cache and run folders go (default: a temp dir)")
    parser.add_argument("--config", default=None, help="a study TOML (default: the embedded default study)")
    parser.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS for the study processes")
    parser.add_argument("--only", choices=("cold", "cached", "floor"), default=None,
                        help="run one of the two runs only, or only measure the floor")
    parser.add_argument("--nproc", type=int, default=1, help="processes (torchrun) the study runs on")
    parser.add_argument("--run", default=None, help="with --only floor: a run folder; each of its stages against "
                        "the bare passes of the images its models saw (timings.json's passes)")
    args = parser.parse_args()
    if args.only == "floor":
        if args.run:
            print_stage_floors(Path(args.run), args.threads, args.nproc)
        else:
            print_floor(args.threads, args.nproc)
        return
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench-study-"))
    cache = work / "cache"
    walls, timings = {}, {}
    load_before, speed_before = os.getloadavg(), probe(args.threads)
    for name in ("cold", "cached"):
        if args.only and name != args.only:
            continue
        out = work / f"run-{name}"
        walls[name] = run_study(out, cache, args.config, args.threads, args.nproc)
        timings[name] = json.loads((out / "timings.json").read_text())
    print(f"\ncpu cores: {os.cpu_count()}, threads: {args.threads or 'default'}, load average before: "
          f"{load_before}, after: {os.getloadavg()}")
    print(f"probe (small-cnn BNN forward+backward, batch 64): {speed_before:.0f} img/s before, "
          f"{probe(args.threads):.0f} img/s after")
    print_table(walls, timings)
    print_floor(args.threads, args.nproc)
    print(f"processes: {args.nproc}; run folders: {work}")


if __name__ == "__main__":
    main()
