"""Every GPU speed row of the README in one run: binsight against Captum and the eager floor, fast paths, bf16.

Sections (each row measured in this same run, on the device given):

1. ``methods``: at batch ``--batch`` (64) on small-cnn FP/BNN (28x28x1) and resnet18 FP/BNN (32x32x3):
   gradient, smoothgrad (n = ``--n-samples``, 50) and gradcam against Captum's equivalents and the floor
   (one eager forward + backward pass to the input; for SmoothGrad over all N x n copies), images/s
   (``benchmarks/bench_explain.py``'s interleaved medians).
2. ``fast``: SmoothGrad (n = 50) and NeuroMask (``--iterations`` steps) eager against ``fast="graph"``
   (and ``"compile"`` with ``--compile``), with NeuroMask's bare cost (iterations x forward + backward of
   the batch): speedup = eager time / fast time; overhead = eager time / bare time - 1.
3. ``bf16``: ``precision="bf16"`` against float32 maps (graph path where on CUDA): speed and agreement per
   image, mean Spearman rank correlation and top-10 % pixel agreement (|A n B| / k).
4. ``neuromask-full``: faithful NeuroMask (2,000 iterations, ``fast="graph"``) on every Fashion-MNIST test
   image (10,000; random images when the data is absent, said so) with small-cnn FP, the batch size chosen
   from the free GPU memory (measured per image on a small batch); total seconds.

Run on a GPU: ``PYTHONPATH=src python benchmarks/bench_gpu.py --device cuda --out DIR`` (under 8 minutes
on one H100). Smoke run: ``--device cpu --quick`` (tiny sizes; CPU numbers say nothing about a GPU).
Writes ``DIR/bench_gpu.json`` (every row) and ``DIR/bench_gpu.md`` (the tables), and prints the tables.
Untrained weights: speed does not depend on training.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import platform
import sys
import time
import traceback
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_explain import bench_model, interleaved_medians  # noqa: E402  (a sibling script)

from binsight._utils import preserved_model, resolve_device  # noqa: E402
from binsight.explain.neuromask import NeuroMask  # noqa: E402
from binsight.explain.smoothgrad import SmoothGrad  # noqa: E402
from binsight.models import build_model  # noqa: E402

MODELS = {
    "small-cnn fp": dict(name="small-cnn", precision="fp", in_channels=1, input_size=28),
    "small-cnn bnn": dict(name="small-cnn", precision="bnn", in_channels=1, input_size=28),
    "resnet18 fp": dict(name="resnet18", precision="fp", in_channels=3, input_size=32),
    "resnet18 bnn": dict(name="resnet18", precision="bnn", in_channels=3, input_size=32),
}
FULL_IMAGES = 10_000
FULL_ITERATIONS = 2_000
MEMORY_SHARE = 0.7  # of the free GPU memory that the full NeuroMask run may plan to use


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device: torch.device) -> tuple[float, object]:
    sync(device)
    start = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - start, out


def model_and_images(label: str, n: int, device: torch.device) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    # Free whatever the previous model's explainers left (captured CUDA graphs and their private memory
    # pools) before the next model: garbage still waiting for a collection, then the allocator's cache.
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    torch.manual_seed(0)
    args = MODELS[label]
    model = build_model(**args).eval().to(device)
    x = torch.rand(n, args["in_channels"], args["input_size"], args["input_size"], device=device)
    with torch.no_grad():
        return model, x, model(x).argmax(1)


# -- 1. methods against Captum and the floor -----------------------------------------------------------
def methods_section(args, device) -> list[dict]:
    rows = []
    for label in args.models:
        for model_label, method, mine, captum, floor in bench_model(
                label, MODELS[label], args.batch, args.n_samples, args.repeats, str(device)):
            rows.append(dict(model=model_label, method=method, batch=args.batch, binsight=mine, captum=captum,
                             floor=floor, vs_captum=mine / captum if captum else None, vs_floor=mine / floor))
        print_rows(rows[-4:], "methods")
    return rows


# -- 2. fast paths --------------------------------------------------------------------------------------
def bare_cost(model, x, t, iterations: int) -> None:
    with preserved_model(model):
        for _ in range(iterations):
            xg = x.detach().requires_grad_(True)
            torch.autograd.grad(F.cross_entropy(model(xg), t, reduction="none").sum(), xg)


def fast_section(args, device) -> list[dict]:
    rows = []
    modes = ["graph"] + (["compile"] if args.compile else [])
    for label in args.models:
        model, x, t = model_and_images(label, args.batch, device)
        sg = {m: SmoothGrad(model, n_samples=args.n_samples, fast=m) for m in [False, *modes]}
        fns = {f"smoothgrad {m or 'eager'}": (lambda e=e: e.attribute(x, t)) for m, e in sg.items()}
        fns["smoothgrad floor"] = lambda: bare_cost(model, x.repeat_interleave(args.n_samples, 0),
                                                    t.repeat_interleave(args.n_samples), 1)
        seconds = interleaved_medians(fns, args.repeats)
        rows += [dict(model=label, method="smoothgrad", path=name.split()[1], seconds=s,
                      speedup=seconds["smoothgrad eager"] / s, vs_floor=seconds["smoothgrad floor"] / s)
                 for name, s in seconds.items()]
        nm = {m: NeuroMask(model, iterations=args.iterations, fast=m, return_history=False) for m in [False, *modes]}
        for m, e in nm.items():  # NeuroMask runs are long: one warm-up (captures, compiles) and one timed run
            e.explain(x[:2] if m is False else x, t[:2] if m is False else t)
        timings = {m: timed(lambda e=e: e.explain(x, t), device)[0] for m, e in nm.items()}
        bare = timed(lambda: bare_cost(model, x, t, args.iterations), device)[0]
        rows.append(dict(model=label, method="neuromask", path="bare", seconds=bare, speedup=None, vs_floor=1.0))
        rows += [dict(model=label, method="neuromask", path=m or "eager", seconds=s, speedup=timings[False] / s,
                      vs_floor=bare / s, overhead=s / bare - 1) for m, s in timings.items()]
        print_rows(rows[-(len(seconds) + len(timings) + 1):], "fast")
    return rows


# -- 3. bf16 against fp32 ----------------------------------------------------------------------------------
def spearman_rows(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-image Spearman rank correlation of two map batches (N, ...) (ties broken by position)."""
    ra = a.flatten(1).argsort(1).argsort(1).double()
    rb = b.flatten(1).argsort(1).argsort(1).double()
    ra, rb = ra - ra.mean(1, keepdim=True), rb - rb.mean(1, keepdim=True)
    return (ra * rb).sum(1) / (ra.norm(dim=1) * rb.norm(dim=1))


def top_k_agreement(a: torch.Tensor, b: torch.Tensor, share: float = 0.1) -> torch.Tensor:
    """Per image, |top-k(a) n top-k(b)| / k with k = share of the pixels."""
    fa, fb = a.flatten(1), b.flatten(1)
    k = max(1, int(share * fa.shape[1]))
    ia, ib = torch.zeros_like(fa, dtype=torch.bool), torch.zeros_like(fb, dtype=torch.bool)
    ia.scatter_(1, fa.topk(k, 1).indices, True)
    ib.scatter_(1, fb.topk(k, 1).indices, True)
    return (ia & ib).sum(1).double() / k


def bf16_section(args, device) -> list[dict]:
    rows = []
    path = "graph" if device.type == "cuda" else False
    for label in args.models:
        model, x, t = model_and_images(label, args.batch, device)
        for method, make in {
            "smoothgrad": lambda p: SmoothGrad(model, n_samples=args.n_samples, fast=path, precision=p),
            "neuromask": lambda p: NeuroMask(model, iterations=args.iterations, fast=path, precision=p,
                                             return_history=False),
        }.items():
            explainers = {p: make(p) for p in ("fp32", "bf16")}
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # bf16 on the CPU: ignored with a warning, said in the row
                for e in explainers.values():
                    e.attribute(x, t)  # warm-up (capture)
                (s32, m32), (s16, m16) = (timed(lambda e=e: e.attribute(x, t), device) for e in explainers.values())
            rho, top = spearman_rows(m32, m16), top_k_agreement(m32, m16)
            rows.append(dict(model=label, method=method, path=path or "eager", fp32_s=s32, bf16_s=s16,
                             speedup=s32 / s16, spearman_mean=rho.mean().item(), spearman_min=rho.min().item(),
                             top10_agreement=top.mean().item(), applied=device.type == "cuda"))
        print_rows(rows[-2:], "bf16")
    return rows


# -- 4. NeuroMask on all Fashion-MNIST test images ------------------------------------------------------------
def fashion_test_images(n: int) -> tuple[torch.Tensor, str]:
    try:
        from binsight.data import load_dataset

        return load_dataset("fashion-mnist", "test", download=False).images[:n], "fashion-mnist test"
    except Exception as e:  # noqa: BLE001 - the timing does not depend on content; say where images came from
        print(f"(Fashion-MNIST unavailable: {str(e).splitlines()[0]}; uniform random images)")
        return torch.rand((n, 1, 28, 28), generator=torch.Generator().manual_seed(0)), "random 28x28"


def batch_by_memory(model, images: torch.Tensor, device: torch.device, total: int) -> tuple[int, float]:
    """The batch size whose NeuroMask step fits ``MEMORY_SHARE`` of the free GPU memory (all images on a CPU),
    and the bytes one image needs (peak of a short run on 256 images / 256)."""
    if device.type != "cuda":
        return total, math.nan
    probe = images[:256].to(device)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats(device)
    start = torch.cuda.memory_allocated(device)
    NeuroMask(model, iterations=3, fast="graph", return_history=False).explain(probe)
    per_image = (torch.cuda.max_memory_allocated(device) - start) / probe.shape[0]
    free, _ = torch.cuda.mem_get_info(device)
    return max(1, min(total, int(free * MEMORY_SHARE / per_image))), per_image


def full_section(args, device) -> list[dict]:
    model, _, _ = model_and_images("small-cnn fp", 1, device)
    images, source = fashion_test_images(args.full_images)
    batch, per_image = batch_by_memory(model, images, device, images.shape[0])
    explainer = NeuroMask(model, iterations=args.full_iterations, fast="graph", batch_size=batch, return_history=False)
    seconds, exp = timed(lambda: explainer.explain(images.to(device)), device)
    row = dict(model="small-cnn fp", method="neuromask faithful", path="graph", images=images.shape[0], source=source,
               iterations=args.full_iterations, batch=batch, bytes_per_image=per_image, seconds=seconds,
               keeps_target=exp.extras["keeps_target"].float().mean().item())
    print_rows([row], "neuromask-full")
    return [row]


# -- output -----------------------------------------------------------------------------------------------------
def fmt(v) -> str:
    if isinstance(v, float):
        return "nan" if math.isnan(v) else f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
    return "" if v is None else str(v)


def table(rows: list[dict]) -> str:
    keys = list(dict.fromkeys(k for r in rows for k in r))
    lines = ["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
    lines += ["| " + " | ".join(fmt(r.get(k)) for k in keys) + " |" for r in rows]
    return "\n".join(lines)


def print_rows(rows: list[dict], section: str) -> None:
    print(f"\n[{section}]\n{table(rows)}", flush=True)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N")
    p.add_argument("--out", default=None, help="folder for bench_gpu.json and bench_gpu.md")
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes, small-cnn only")
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--sections", nargs="+", default=["methods", "fast", "bf16", "neuromask-full"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--n-samples", type=int, default=50)
    p.add_argument("--iterations", type=int, default=100, help="NeuroMask steps in the fast and bf16 sections")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--full-images", type=int, default=FULL_IMAGES)
    p.add_argument("--full-iterations", type=int, default=FULL_ITERATIONS)
    p.add_argument("--compile", action="store_true", help="also time fast='compile' (adds compile time)")
    args = p.parse_args(argv)
    if args.quick:
        args.batch, args.n_samples, args.iterations, args.repeats = 4, 4, 5, 2
        args.full_images, args.full_iterations = 16, 5
        args.models = [m for m in args.models if m.startswith("small-cnn")] or args.models[:1]
    return args


def main(argv=None) -> None:
    args = parse_args(argv)
    device = resolve_device(args.device)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    print(f"torch {torch.__version__}, device {device} ({name}), {torch.get_num_threads()} CPU threads")
    sections = {"methods": methods_section, "fast": fast_section, "bf16": bf16_section, "neuromask-full": full_section}
    results: dict = {"device": str(device), "device_name": name, "torch": torch.__version__, "args": vars(args)}
    start = time.perf_counter()
    failed: list[str] = []
    for section in args.sections:
        t0 = time.perf_counter()
        try:
            results[section] = sections[section](args, device)
        except Exception as e:  # noqa: BLE001 - one failing section must not cost the others' numbers
            traceback.print_exc()
            results[section] = [dict(section=section, error=f"{type(e).__name__}: {e}")]
            failed.append(section)
            if device.type == "cuda":
                torch.cuda.empty_cache()
        results.setdefault("section_seconds", {})[section] = time.perf_counter() - t0
        print(f"({section}: {time.perf_counter() - t0:.1f} s)", flush=True)
        write_results(args.out, results, name)  # after each section: a run stopped later keeps what it measured
    results["total_seconds"] = time.perf_counter() - start
    print(f"\ntotal {results['total_seconds']:.1f} s")
    write_results(args.out, results, name)
    if failed:
        sys.exit(f"failed sections: {', '.join(failed)} (tracebacks above)")


def write_results(out: str | None, results: dict, name: str) -> None:
    """``out``/bench_gpu.json (every row) and ``out``/bench_gpu.md (the tables) of the sections done so far."""
    if not out:
        return
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "bench_gpu.json").write_text(json.dumps(results, indent=1, default=str))
    done = [s for s in results["args"]["sections"] if s in results]
    md = [f"# bench_gpu: {name}, torch {torch.__version__}\n"]
    md += [f"## {s}\n\n{table(results[s])}\n" for s in done]
    (out / "bench_gpu.md").write_text("\n".join(md))


if __name__ == "__main__":
    main()
