"""Cost and convergence of ``smoothgrad-forward`` (verdict 2's surrogate-free method) on the default study's models.

For each of the default study's models (small-cnn on Fashion-MNIST, FP and BNN, seeds 0-2, the recipes'
epochs; from the model cache, trained there first if missing) and each ``--pairs`` count, explains the first
``--images`` test images of the study's draw (true labels, noise_level 0.15) and prints the seconds per
antithetic pair (two forward passes; CPU seconds of this process, so that other work on a shared machine
does not inflate them) and the maps' split-half reliability (min-max over the images), beside
SmoothGrad's at 50 samples. From the seconds per pair it prints the cost of the default table
(``methods.smoothgrad-forward``: 16 images, 4000 + 16000 pairs) in core-seconds.

Run: ``nice python benchmarks/bench_smoothgrad_forward.py`` (``--pairs 1000,8000 --images 4 --threads 1``).
CPU time still varies with a shared machine's caches and memory bandwidth.
"""

from __future__ import annotations

import argparse
import time
import warnings

import torch

from binsight.data import load_dataset
from binsight.explain import get_explainer
from binsight.train import cached_model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", default="1000,8000", help="comma-separated pair counts")
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.simplefilter("ignore")
    data = load_dataset("fashion-mnist", "test").subset(args.images, seed=0)
    per_pair: dict[str, list[float]] = {"fp": [], "bnn": []}
    for precision in ("fp", "bnn"):
        for seed in (0, 1, 2):
            model, _ = cached_model("small-cnn", precision, "fashion-mnist", seed, progress=False)
            sg = get_explainer("smoothgrad", model, n_samples=50).explain(data.images, data.labels)
            line = [f"{precision}-{seed}: smoothgrad n=50 reliability {reliability(sg)}"]
            for pairs in (int(p) for p in args.pairs.split(",")):
                start = time.process_time()
                ex = get_explainer("smoothgrad-forward", model, n_samples=pairs, batch_size=512).explain(
                    data.images, data.labels)
                seconds = (time.process_time() - start) / (pairs * args.images)
                per_pair[precision].append(seconds)
                line.append(f"{pairs} pairs {seconds * 1e3:.2f} CPU ms/pair reliability {reliability(ex)}")
            print("; ".join(line), flush=True)
    mean = {p: sum(v) / len(v) for p, v in per_pair.items()}
    cost = 16 * 3 * (4000 + 16000) * (mean["fp"] + mean["bnn"])
    print(f"default table (16 images, 4000 + 16000 pairs, 3 FP + 3 BNN): {cost:.0f} core-seconds "
          f"(FP {mean['fp'] * 1e3:.2f} ms/pair, BNN {mean['bnn'] * 1e3:.2f} ms/pair)")


def reliability(explanation) -> str:
    r = explanation.extras["split_half_reliability"]
    return f"{float(r.min()):.2f}-{float(r.max()):.2f}"


if __name__ == "__main__":
    main()
