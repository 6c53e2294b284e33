"""Deletion + insertion areas per second: binsight.metrics against Quantus PixelFlipping.

Same inputs for both: Fashion-MNIST test images (a seeded subset), the default FP model
(``build_model("small-cnn", "fp")``: a trained checkpoint from ``binsight.train.cached_model`` when that is
available, else the untrained model - speed does not depend on the weights; the table says which), Gradient
maps of that model, and its predicted classes as targets. Both runs remove pixels onto black (0) in the same
order; binsight also computes the insertion curve (restoring onto a blurred image), Quantus has no insertion.

Rows:
* same resolution: binsight with ``steps`` = H W / f against Quantus with ``features_in_step`` = f;
* with ``--matched-batch``: the same, Quantus given binsight's batch size (Quantus batches images only,
  one model call per step, so its batch is at most the number of images);
* each at its default: binsight ``steps=100`` against Quantus' default ``features_in_step=1`` (one model
  call per pixel), on ``--default-images`` images since that Quantus setting is slow.

Usage: nice .venv/bin/python benchmarks/bench_metrics.py [--images 256] [--features-in-step 8]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from binsight.data import load_dataset
from binsight.explain import get_explainer
from binsight.metrics import deletion_insertion
from binsight.models import build_model


def load_model() -> tuple[torch.nn.Module, str]:
    """The default FP model: trained if binsight.train's cache already holds it (never trains here),
    else untrained."""
    try:
        from binsight._io import cache_dir
        from binsight.train import TrainConfig, cache_key, checkpoint_paths, load_checkpoint

        weights, side = checkpoint_paths(cache_dir("models") / cache_key(TrainConfig()))
        if weights.is_file() and side.is_file():
            model, _ = load_checkpoint(weights)
            return model.eval(), f"trained ({weights})"
        reason = "not in the cache"
    except (ImportError, ValueError, OSError) as e:
        reason = f"{type(e).__name__}: {e}"
    torch.manual_seed(0)
    return build_model("small-cnn", "fp").eval(), f"untrained (no trained checkpoint: {reason})"


def time_binsight(model, images, maps, targets, steps: int, batch_size: int) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    result = deletion_insertion(model, images, maps, targets, steps=steps, substrate="black",
                                insertion_substrate="blur", batch_size=batch_size)
    return time.perf_counter() - start, result.deletion


def time_quantus(model, images, maps, targets, features_in_step: int, batch_size: int = 64) -> tuple[float, np.ndarray]:
    import quantus

    metric = quantus.PixelFlipping(features_in_step=features_in_step, perturb_baseline="black", normalise=False,
                                   abs=False, disable_warnings=True)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        curves = metric(model=model, x_batch=images.numpy(), y_batch=targets.numpy(), a_batch=maps.numpy(),
                        device="cpu", softmax=True, batch_size=batch_size)
    return time.perf_counter() - start, np.asarray(curves)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--features-in-step", type=int, default=8, help="pixels per step (must divide H W)")
    parser.add_argument("--default-images", type=int, default=16, help="images for the at-defaults row; 0 skips it")
    parser.add_argument("--batch-size", type=int, default=512, help="binsight's batch size (Quantus: its default, 64)")
    parser.add_argument("--matched-batch", action="store_true",
                        help="also run Quantus with binsight's batch size (it batches images, not steps)")
    args = parser.parse_args()

    data = load_dataset("fashion-mnist", "test").subset(args.images, seed=0)
    model, model_kind = load_model()
    images = data.images
    explainer = get_explainer("gradient", model)
    explanation = explainer.explain(images)
    maps, targets = explanation.maps, explanation.targets
    n_pixels = images.shape[-2] * images.shape[-1]
    steps = n_pixels // args.features_in_step

    print(f"model: small-cnn fp, {model_kind}; {len(images)} Fashion-MNIST test images; Gradient maps; "
          f"torch threads: {torch.get_num_threads()}")
    rows = []
    t_ours, ours = time_binsight(model, images, maps, targets, steps, args.batch_size)
    t_theirs, theirs = time_quantus(model, images, maps, targets, args.features_in_step)
    agree = np.abs(ours[:, 1:] - theirs).max()
    rows.append((f"same resolution ({steps} steps)", len(images), t_ours, t_theirs))
    if args.matched_batch:
        t_matched, _ = time_quantus(model, images, maps, targets, args.features_in_step, args.batch_size)
        rows.append((f"same resolution, Quantus batch_size={args.batch_size}", len(images), t_ours, t_matched))
    if args.default_images:
        few = slice(0, args.default_images)
        t_ours_d, _ = time_binsight(model, images[few], maps[few], targets[few], 100, args.batch_size)
        t_theirs_d, _ = time_quantus(model, images[few], maps[few], targets[few], 1)
        rows.append((f"defaults (100 vs {n_pixels} steps)", args.default_images, t_ours_d, t_theirs_d))

    print("\n| setting | images | binsight del+ins s | binsight areas/s | Quantus del s | Quantus areas/s | speed-up |")
    print("|---|---|---|---|---|---|---|")
    for name, n, t_a, t_b in rows:
        ours_rate, theirs_rate = 2 * n / t_a, n / t_b
        speedup = ours_rate / theirs_rate
        print(f"| {name} | {n} | {t_a:.1f} | {ours_rate:.1f} | {t_b:.1f} | {theirs_rate:.1f} | {speedup:.1f}x |")
    print("\nareas/s: binsight gives 2 areas per image (deletion and insertion), Quantus 1 (deletion).")
    print(f"largest |binsight - Quantus| deletion-curve difference, same resolution: {agree:.2e} "
          "(ties among equal map values may be ordered differently: Quantus' argsort is not stable)")


if __name__ == "__main__":
    main()
