"""NeuroMask's seed check on the default study's models: how alike one model's masks are from two starts
(the start baseline), against two models of one precision and FP against BNN; and what the check costs.

    python benchmarks/neuromask_seed_check.py [--images 16] [--threads 1]

The first ``--images`` images of the default study's draw (Fashion-MNIST test, 128 drawn with seed 0), each
model explaining the true label at 2,000 iterations with the study's seed of chunk 0, as the study's seed
check does. Models: the cached default-study small-cnn models of seeds 0 and 1 per precision
(``binsight.train.cached_model``, trained once when missing). Prints the mean Spearman, SSIM and top-10 %
IoU of each kind of pair, and the CPU seconds per image of each call (a seed check of 16 images runs as one
call per model; the method's own chunks hold 32 images, timed once for comparison).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from binsight.data import load_dataset
from binsight.explain.neuromask import NeuroMask
from binsight.metrics.similarity import spearman, ssim, top_k_iou
from binsight.train import cached_model


def masks(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, start: int, label: str) -> torch.Tensor:
    cpu = time.process_time()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = NeuroMask(model, iterations=2000, return_history=False, seed=0, start=start).attribute(x, y)
    print(f"{label} start {start}, {len(x)} images: {(time.process_time() - cpu) / len(x):.2f} CPU s per image",
          flush=True)
    return out


def similarity(a: torch.Tensor, b: torch.Tensor) -> str:
    values = {"spearman": spearman(a, b), "ssim": ssim(a, b), "top_k_iou": top_k_iou(a, b, k=0.1)}
    return ", ".join(f"{name} {float(np.mean(v)):.3f}" for name, v in values.items())


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist", "test").subset(128, seed=0)
    x, y = data.images[:args.images], data.labels[:args.images]
    models = {f"{p}-{s}": cached_model(arch="small-cnn", precision=p, seed=s, progress=False)[0].eval()
              for p in ("fp", "bnn") for s in (0, 1)}
    first = {name: masks(m, x, y, 0, name) for name, m in models.items()}
    second = {name: masks(models[name], x, y, 1, name) for name in ("fp-0", "bnn-0")}
    masks(models["fp-0"], data.images[:32], data.labels[:32], 0, "fp-0 (a chunk of 32, for comparison)")
    for kind, a, b in (("FP start-to-start", first["fp-0"], second["fp-0"]),
                       ("BNN start-to-start", first["bnn-0"], second["bnn-0"]),
                       ("FP-vs-FP", first["fp-0"], first["fp-1"]), ("BNN-vs-BNN", first["bnn-0"], first["bnn-1"]),
                       ("FP-vs-BNN", first["fp-0"], first["bnn-0"])):
        print(f"{kind}: {similarity(a, b)}")


if __name__ == "__main__":
    main()
