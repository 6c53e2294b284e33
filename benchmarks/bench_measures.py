"""Each measure of binsight.metrics against Quantus at equal settings, and against the bare forward passes
it needs, side by side in one run.

Same inputs for every row: Fashion-MNIST test images (a seeded subset), the default FP model
(``build_model("small-cnn", "fp")``, trained from binsight.train's cache when it holds it, else untrained:
speed does not depend on the weights; the header says which), Gradient maps of that model and its
predicted classes as targets, object masks from the images (pixels above 0.1; only the timing matters).

Rows (per-image seconds; "speed-up" = Quantus s per image / binsight s per image):
* ROAD, most relevant first, ``--percentages`` (default 10, 20, ..., 90) and noise 0.01: binsight's
  ``road`` (one batched CG solve of every image and percentage) against ``quantus.ROAD`` (one SciPy sparse
  solve per image and percentage) on ``--quantus-images`` of the images; the floor is the model alone on
  the N x P imputed images (binsight's imputation removed, bare forward passes of the same batch size);
* deletion (pixel flipping onto black, H W / 8 steps) against ``quantus.PixelFlipping(features_in_step=8)``,
  and its floor, the N (steps + 1) bare forward passes;
* maps only (no model): Gini against ``quantus.Sparseness``, entropy against ``quantus.Complexity``, the
  pointing game against ``quantus.PointingGame``, energy inside the mask against
  ``quantus.RelevanceMassAccuracy``, Spearman and SSIM against Quantus' ``correlation_spearman`` and
  ``ssim`` (``quantus.functions.similarity_func``, what its MPRT and other metrics call per pair);
  total variation and high-frequency energy have no Quantus counterpart (their row has binsight only);
* the chance test (no Quantus counterpart) of three methods' maps of the model (Gradient, SmoothGrad,
  GradCAM) on ``--chance-images`` images at the study's settings (20 chance maps of each kind, ROAD at 10,
  30, ..., 90 %, the four controls): a fresh test per method scoring every chance map (``chance_test`` and
  ``control_test`` with ``sequential=False``, the maps-independent parts scored again for each method), one
  :class:`binsight.metrics.chance.ChanceTest` shared by the three scoring every chance map, and the same
  shared test scoring sequentially (the default: the same decisions); per image and method, with the
  forward passes each made; the floor is the bare forward passes of as many images as the sequential run's.

Usage: nice .venv/bin/python benchmarks/bench_measures.py [--images 128] [--quantus-images 16] [--threads 1]
                                                          [--only road deletion maps chance] [--json FILE]
                                                          [--device cuda]
Without Quantus installed (the GPU machine), its columns are left empty.
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from binsight.data import load_dataset
from binsight.explain import get_explainer
from binsight.metrics import chance, deletion_area, energy_inside, entropy, gini, pointing_game, road, spearman, ssim
from binsight.metrics.faithfulness import pixel_ranks
from binsight.metrics.imputation import noisy_linear_imputation
from binsight.metrics.noise import high_frequency_energy, total_variation

from bench_metrics import load_model  # noqa: E402  (benchmarks/ is the script's own folder)


def timed(fn: Callable[[], object], repeats: int = 1) -> tuple[float, object]:
    """Best wall seconds of ``repeats`` calls of fn, and its last result."""
    best, out = float("inf"), None
    for _ in range(repeats):
        _synchronize()
        start = time.perf_counter()
        out = fn()
        _synchronize()
        best = min(best, time.perf_counter() - start)
    return best, out


def _synchronize() -> None:
    """Wait for queued GPU work, so that a wall time covers it (nothing on the CPU)."""
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def have_quantus() -> bool:
    """Whether Quantus is installed (the test extras); without it the Quantus columns are left empty."""
    try:
        import quantus  # noqa: F401
    except ImportError:
        return False
    return True


def forward_floor(model, inputs: torch.Tensor, batch_size: int) -> float:
    """Seconds of bare forward passes of ``inputs`` (M, C, H, W), ``batch_size`` at a time, softmax included."""
    def run():
        with torch.no_grad():
            for start in range(0, len(inputs), batch_size):
                torch.softmax(model(inputs[start:start + batch_size]), 1)
    return timed(run, 2)[0]


def quantus_metric(metric, model, images, maps, targets, masks=None, batch_size: int = 64):
    """Quantus' ``metric`` on NumPy copies of the tensors, its model on the model's device."""
    device = str(next(model.parameters()).device) if model is not None else "cpu"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return metric(model=model, x_batch=images.cpu().numpy(), y_batch=targets.cpu().numpy(),
                      a_batch=maps.cpu().numpy(), s_batch=None if masks is None else masks.cpu().numpy().astype(float),
                      device=device, softmax=True, batch_size=batch_size)


def road_rows(model, images, maps, targets, args) -> list[dict]:
    percentages = list(args.percentages)
    t_ours, _ = timed(lambda: road(model, images, maps, targets, percentages=percentages, batch_size=args.batch_size), 2)
    few = slice(0, args.quantus_images)
    t_theirs = float("nan")
    if have_quantus():
        import quantus

        metric = quantus.ROAD(percentages=percentages, noise=0.01, normalise=False, abs=False, disable_warnings=True)
        t_theirs, _ = timed(lambda: quantus_metric(metric, model, images[few], maps[few], targets[few]))
    n_pixels = images.shape[-2] * images.shape[-1]
    counts = torch.as_tensor(np.rint(np.array(percentages) / 100 * n_pixels).astype(np.int64)).to(images.device)
    ranks = pixel_ranks(maps.double()).to(images.device)
    removed = ranks.repeat_interleave(len(percentages), 0) < counts.repeat(len(images)).view(-1, 1, 1, 1)
    stacked = images.repeat_interleave(len(percentages), 0)
    t_impute, imputed = timed(lambda: noisy_linear_imputation(stacked, removed), 2)
    floor = forward_floor(model, imputed, args.batch_size)
    return [row(f"ROAD morf, {len(percentages)} percentages", len(images), t_ours, args.quantus_images, t_theirs,
                floor, note=f"imputation alone {t_impute / len(images) * 1e3:.2f} ms/image")]


def deletion_rows(model, images, maps, targets, args) -> list[dict]:
    steps = images.shape[-2] * images.shape[-1] // 8
    t_ours, _ = timed(lambda: deletion_area(model, images, maps, targets, steps=steps, substrate="black",
                                            batch_size=args.batch_size), 2)
    t_theirs = float("nan")
    if have_quantus():
        import quantus

        metric = quantus.PixelFlipping(features_in_step=8, perturb_baseline="black", normalise=False, abs=False,
                                       disable_warnings=True)
        t_theirs, _ = timed(lambda: quantus_metric(metric, model, images, maps, targets))
    inputs = images.repeat_interleave(steps + 1, 0)
    floor = forward_floor(model, inputs, args.batch_size)
    return [row(f"deletion onto black, {steps} steps", len(images), t_ours, len(images), t_theirs, floor)]


def map_rows(model, images, maps, targets, masks, other, args) -> list[dict]:
    n = len(images)
    ours = [("Gini / Sparseness", lambda: gini(maps)), ("entropy / Complexity", lambda: entropy(maps)),
            ("pointing game / PointingGame", lambda: pointing_game(maps, masks)),
            ("energy inside / RelevanceMassAccuracy", lambda: energy_inside(maps, masks)),
            ("Spearman / correlation_spearman", lambda: spearman(maps, other)),
            ("SSIM / ssim", lambda: ssim(maps, other)), ("total variation", lambda: total_variation(maps)),
            ("high-frequency energy", lambda: high_frequency_energy(maps))]
    theirs = quantus_map_calls(images, maps, targets, masks, other) if have_quantus() else {}
    rows = []
    for name, call in ours:
        t_ours, _ = timed(call, 3)
        t_theirs = timed(theirs[name], 3)[0] if name in theirs else float("nan")
        rows.append(row(name, n, t_ours, n, t_theirs, 0.0))
    return rows


def quantus_map_calls(images, maps, targets, masks, other) -> dict[str, Callable[[], object]]:
    """Quantus' counterpart of each maps-only row, by the row's name."""
    import quantus
    from quantus.functions import similarity_func

    a, b = maps.cpu().numpy()[:, 0], other.cpu().numpy()[:, 0]
    return {
        "Gini / Sparseness":
            lambda: quantus_metric(quantus.Sparseness(disable_warnings=True), None, images, maps, targets),
        "entropy / Complexity":
            lambda: quantus_metric(quantus.Complexity(disable_warnings=True), None, images, maps, targets),
        "pointing game / PointingGame":
            lambda: quantus_metric(quantus.PointingGame(disable_warnings=True), None, images, maps, targets, masks),
        "energy inside / RelevanceMassAccuracy":
            lambda: quantus_metric(quantus.RelevanceMassAccuracy(disable_warnings=True), None, images, maps,
                                   targets, masks),
        "Spearman / correlation_spearman":
            lambda: [similarity_func.correlation_spearman(x.ravel(), y.ravel()) for x, y in zip(a, b)],
        "SSIM / ssim": lambda: similarity_func.ssim(a, b, batched=True, win_size=7),
    }


def chance_rows(model, images, maps_by_method: dict, targets, masks, args) -> list[dict]:
    few = slice(0, args.chance_images)
    x, t, m = images[few], targets[few], masks[few]
    options = dict(n_chance=20, percentages=[10.0, 30.0, 50.0, 70.0, 90.0], dilation=2, batch_size=args.batch_size)
    seen = [0]
    hook = model.register_forward_hook(lambda module, inputs, out: seen.__setitem__(0, seen[0] + len(inputs[0])))

    def fresh():
        for maps in maps_by_method.values():
            chance.chance_test(model, x, maps[few], t, m, sequential=False, **options)
            chance.control_test(model, x, maps[few], t, m, sequential=False, **options)

    def shared(sequential: bool):
        test = chance.ChanceTest(model, x, t, m, sequential=sequential, **options)
        for maps in maps_by_method.values():
            test.test(maps[few])
            test.controls(maps[few])

    counts, walls = {}, {}
    for name, run in (("fresh", fresh), ("shared", lambda: shared(False)), ("sequential", lambda: shared(True))):
        seen[0] = 0
        walls[name], _ = timed(run)
        counts[name] = seen[0]
    hook.remove()
    passes = counts["sequential"]
    floor = forward_floor(model, x.repeat_interleave(-(-passes // len(x)), 0)[:passes], args.batch_size)
    n = len(x) * len(maps_by_method)
    label = f"chance test with controls, {len(maps_by_method)} methods"
    note = "{:,.0f} forward passes per image and method".format
    return [row(f"{label}, a fresh test per method, every chance map", n, walls["fresh"], n, float("nan"), 0.0,
                note=note(counts["fresh"] / n)),
            row(f"{label}, shared, every chance map", n, walls["shared"], n, float("nan"), 0.0,
                note=note(counts["shared"] / n)),
            row(f"{label}, shared, sequential (the default)", n, walls["sequential"], n, float("nan"), floor,
                note=note(passes / n))]


def row(name: str, n: int, t_ours: float, n_theirs: int, t_theirs: float, floor: float, note: str = "") -> dict:
    ours, theirs = t_ours / n, t_theirs / n_theirs
    return {"measure": name, "images": n, "binsight_s_per_image": ours, "quantus_images": n_theirs,
            "quantus_s_per_image": theirs, "speedup": theirs / ours, "floor_s_per_image": floor / n,
            "over_floor": ours / (floor / n) if floor > 0 else float("nan"), "note": note}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=128)
    parser.add_argument("--quantus-images", type=int, default=16, help="images for Quantus' ROAD (slow)")
    parser.add_argument("--percentages", type=float, nargs="+", default=[10, 20, 30, 40, 50, 60, 70, 80, 90])
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--chance-images", type=int, default=16, help="images of the chance test's rows")
    parser.add_argument("--only", choices=["road", "deletion", "maps", "chance"], nargs="+",
                        default=["road", "deletion", "maps", "chance"])
    parser.add_argument("--threads", type=int, help="torch threads (default: torch's); on a machine shared "
                        "with other jobs 1 thread is both faster and steadier")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--device", default="cpu", help="where binsight's measures run (cpu, cuda, ...): the "
                        "model, images and maps go there; Quantus runs its model there too, on NumPy copies")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    device = torch.device(args.device)
    data = load_dataset("fashion-mnist", "test").subset(args.images, seed=0)
    model, model_kind = load_model()
    model = model.to(device)
    images = data.images.to(device)
    explanation = get_explainer("gradient", model).explain(images)
    maps, targets = explanation.maps.detach(), explanation.targets
    other = get_explainer("smoothgrad", model).explain(images, targets).maps.detach()
    masks = images > 0.1
    print(f"model: small-cnn fp, {model_kind}; {len(images)} Fashion-MNIST test images; Gradient maps; "
          f"device {device}; torch threads: {torch.get_num_threads()}"
          + ("" if have_quantus() else "; Quantus not installed: its columns are empty"))
    rows = []
    if "road" in args.only:
        rows += road_rows(model, images, maps, targets, args)
    if "deletion" in args.only:
        rows += deletion_rows(model, images, maps, targets, args)
    if "maps" in args.only:
        rows += map_rows(model, images, maps, targets, masks, other, args)
    if "chance" in args.only:
        gradcam = get_explainer("gradcam", model).explain(images, targets).maps.detach()
        rows += chance_rows(model, images, {"gradient": maps, "smoothgrad": other, "gradcam": gradcam}, targets,
                            masks, args)
    print("\n| measure | binsight ms/image | Quantus ms/image (images) | speed-up | forward floor ms/image | x floor |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        floor = f"{r['floor_s_per_image'] * 1e3:.3f}" if r["floor_s_per_image"] > 0 else "-"
        over = f"{r['over_floor']:.2f}" if np.isfinite(r["over_floor"]) else "-"
        theirs = (f"{r['quantus_s_per_image'] * 1e3:.3f} ({r['quantus_images']})"
                  if np.isfinite(r["quantus_s_per_image"]) else "no counterpart")
        speedup = f"{r['speedup']:.1f}x" if np.isfinite(r["speedup"]) else "-"
        print(f"| {r['measure']} | {r['binsight_s_per_image'] * 1e3:.3f} | {theirs} | {speedup} | {floor} | {over} |"
              + (f" {r['note']}" if r["note"] else ""))
    if args.json:
        header = {"model": model_kind, "device": str(device), "threads": torch.get_num_threads()}
        args.json.write_text(json.dumps({**header, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
