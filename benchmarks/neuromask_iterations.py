"""How far NeuroMask's mask after fewer steps is from the reference's 2,000-step mask: could the study cut
its iterations (its biggest cost) without changing what it measures?

    python benchmarks/neuromask_iterations.py [--images 16] [--threads 1] [--checkpoints CKPT ...]

One faithful run of ``--iterations`` (default 2,000) steps per model; the masks after 250, 500 and 1,000
steps are the states of that same run (the loop is deterministic, so a shorter run ends exactly there).
For each model prints, against the final mask: the median (and minimum) Spearman correlation and top-10 %
IoU over the images, and the mean deletion area onto a blurred image (lower is more faithful) of both.
Default models: the cached default-study models of seed 0 (``binsight.train.cached_model``, trained once
when missing). Also prints seconds per image-step.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch

from binsight.data import load_dataset
from binsight.explain.neuromask import NeuroMask
from binsight.metrics import deletion_area, spearman, top_k_iou

SNAPSHOTS = (250, 500, 1000)


class SnapshotNeuroMask(NeuroMask):
    """The faithful loop, keeping the mask after each step in :data:`SNAPSHOTS` (``self.snapshots``)."""

    def _descend(self, group, w, preset, image_size, history):
        self.snapshots = {}
        mean_square = torch.ones_like(w)
        for step in range(self.iterations):
            self._runner(w, mean_square, group.substrate, group.difference, group.targets)
            if step + 1 in SNAPSHOTS:
                self.snapshots[step + 1] = torch.sigmoid(w / preset.temperature).detach().clone()
        return w


def models(checkpoints: list[str]) -> list[tuple[str, torch.nn.Module]]:
    if checkpoints:
        from binsight.models.checkpoint import load_checkpoint

        return [(path, load_checkpoint(path)[0]) for path in checkpoints]
    from binsight.train import cached_model

    return [(f"small-cnn {p} seed 0", cached_model(arch="small-cnn", precision=p, seed=0, progress=False)[0]) for p in ("fp", "bnn")]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--images", type=int, default=16)
    p.add_argument("--iterations", type=int, default=2000)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--checkpoints", nargs="*", default=[])
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    data = load_dataset("fashion-mnist", "test")
    x, t = data.images[: args.images], data.labels[: args.images]
    for name, model in models(args.checkpoints):
        explainer = SnapshotNeuroMask(model, iterations=args.iterations, return_history=False)
        start = time.perf_counter()
        final = explainer.explain(x, t).maps
        seconds = time.perf_counter() - start
        print(f"{name}: {args.iterations} steps on {args.images} images, "
              f"{1e3 * seconds / args.images / args.iterations:.3f} ms per image-step ({args.threads} thread(s))")
        reference = deletion_area(model, x, final, t, steps=14, substrate="blur").mean()
        for step, mask in explainer.snapshots.items():
            rho, iou = spearman(mask, final), top_k_iou(mask, final, k=0.1)
            area = deletion_area(model, x, mask, t, steps=14, substrate="blur").mean()
            print(f"  after {step:4d} steps: Spearman to the final mask median {np.median(rho):.3f} (min {rho.min():.3f}), "
                  f"top-10% IoU median {np.median(iou):.3f}; deletion onto blur {area:.3f} (final mask {reference:.3f})")


if __name__ == "__main__":
    main()
