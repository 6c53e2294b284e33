"""Speed of NeuroMask batched, one image at a time, and against the bare model cost.

For each model and one batch of N images (default 64), prints masks per second of:

* ``batched``: ``NeuroMask(iterations=I)`` on all N images at once (the faithful mode);
* ``one at a time``: the same explainer on each of the first ``--single-images`` images alone, with
  ``--single-iterations`` iterations, scaled to N images and I iterations (the per-iteration cost is constant);
* ``bare``: I x (one forward + one backward pass to the input) of the same N images through the model -
  the floor any mask-learning method pays; ``overhead`` is batched time / bare time - 1;
* ``bare 1x1``: the bare cost one image at a time (scaled like the one-at-a-time leg): bare 1x1 / bare is
  the most that batching can gain on this device, whatever the explainer does;
* ``early stop``: the batched run with ``early_stopping=True`` (default patience and tolerance): masks/s,
  mean steps taken, mean final loss and the share of masked images that keep their class against the
  faithful run's, and the mean |mask difference| to the faithful masks. Meaningful at the reference's 2,000
  iterations (the loss falls steadily for the first few hundred); ``--no-early`` skips it.

Models: binsight's default ``small-cnn`` FP and BNN on Fashion-MNIST test images (28x28x1) and ``resnet18``
at 32x32x3 (uniform random images: speed does not depend on content). Weights are untrained unless
``--trained`` (``binsight.train.cached_model``: trained once, then read from the cache).

Run: ``nice python benchmarks/bench_neuromask.py`` (``--quick`` for a smoke run); ``--device cuda`` for a GPU.
Timings on a shared CPU are noisy: compare rows of the same run only.
"""

from __future__ import annotations

import argparse
import math
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from binsight.explain.base import preserved_model
from binsight.explain.neuromask import NeuroMask
from binsight.models import build_model

MODELS = {  # label: (build_model arguments, image shape)
    "small-cnn-fp": (dict(name="small-cnn", precision="fp", in_channels=1, input_size=28), (1, 28, 28)),
    "small-cnn-bnn": (dict(name="small-cnn", precision="bnn", in_channels=1, input_size=28), (1, 28, 28)),
    "resnet18-fp": (dict(name="resnet18", precision="fp", in_channels=3, input_size=32), (3, 32, 32)),
}


@dataclass
class Row:
    label: str
    weights: str
    batched_s: float
    single_s_scaled: float
    bare_s: float
    bare_single_s_scaled: float
    early_s: float
    mask_change: float
    early_steps: float
    loss_faithful: float
    loss_early: float
    keeps_faithful: float
    keeps_early: float


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--batch", type=int, default=64, help="images explained together (N)")
    p.add_argument("--iterations", type=int, default=300, help="iterations of the batched, bare and early-stop legs")
    p.add_argument("--single-iterations", type=int, default=30, help="iterations of the one-at-a-time leg (scaled)")
    p.add_argument("--single-images", type=int, default=16, help="images explained one at a time")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--no-early", action="store_true", help="skip the early-stopping leg")
    p.add_argument("--trained", action="store_true", help="trained small-cnn weights from binsight.train.cached_model")
    p.add_argument("--cache", default=None, help="cached_model's cache folder (default: binsight's cache)")
    p.add_argument("--train-epochs", type=int, default=1)
    p.add_argument("--train-subset", type=int, default=10000)
    p.add_argument("--quick", action="store_true", help="smoke run: tiny sizes")
    return p.parse_args()


def load_model(label: str, args: argparse.Namespace) -> tuple[torch.nn.Module, str]:
    spec, _ = MODELS[label]
    if args.trained and spec["name"] == "small-cnn":
        from binsight.train import cached_model

        model, meta = cached_model("small-cnn", spec["precision"], "fashion-mnist", seed=0, epochs=args.train_epochs,
                                   train_subset=args.train_subset, progress=False, cache=args.cache)
        return model, f"trained ({args.train_epochs} ep on {args.train_subset}, acc {meta.get('test_accuracy', '?')})"
    return build_model(**spec), "untrained"


def load_images(label: str, n: int) -> tuple[torch.Tensor, str]:
    shape = MODELS[label][1]
    if shape == (1, 28, 28):
        try:
            from binsight.data import load_dataset

            return load_dataset("fashion-mnist", "test", download=False).images[:n].clone(), "fashion-mnist"
        except Exception as e:  # noqa: BLE001 - the benchmark runs on random images where the data is absent
            print(f"({label}: Fashion-MNIST unavailable, {e}; random images)")
    return torch.rand((n, *shape), generator=torch.Generator().manual_seed(0)), "random"


def timed(fn, device: str) -> tuple[float, object]:
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = fn()
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def bare_cost(model: torch.nn.Module, x: torch.Tensor, iterations: int) -> None:
    """iterations x (forward + backward to the input) of the batch, the model frozen as the explainer has it."""
    with preserved_model(model):
        with torch.no_grad():
            targets = model(x).argmax(1)
        for _ in range(iterations):
            xg = x.detach().requires_grad_(True)
            loss = F.cross_entropy(model(xg), targets, reduction="none").sum()
            torch.autograd.grad(loss, xg)


def one_at_a_time(model: torch.nn.Module, x: torch.Tensor, iterations: int) -> None:
    explainer = NeuroMask(model, iterations=iterations)
    for i in range(x.shape[0]):
        explainer.explain(x[i:i + 1])


def bare_one_at_a_time(model: torch.nn.Module, x: torch.Tensor, iterations: int) -> None:
    for i in range(x.shape[0]):
        bare_cost(model, x[i:i + 1], iterations)


def measure(label: str, args: argparse.Namespace) -> Row:
    model, weights = load_model(label, args)
    model = model.to(args.device)
    x, source = load_images(label, args.batch)
    x = x.to(args.device)
    NeuroMask(model, iterations=2).explain(x[:2])  # warm-up (allocator, kernels)
    batched_s, faithful = timed(lambda: NeuroMask(model, iterations=args.iterations).explain(x), args.device)
    bare_s, _ = timed(lambda: bare_cost(model, x, args.iterations), args.device)
    single = x[: args.single_images]
    scale = (args.iterations / args.single_iterations) * (args.batch / single.shape[0])
    single_s, _ = timed(lambda: one_at_a_time(model, single, args.single_iterations), args.device)
    bare_single_s, _ = timed(lambda: bare_one_at_a_time(model, single, args.single_iterations), args.device)
    early_s, stopped = math.nan, faithful
    if not args.no_early:
        early = NeuroMask(model, iterations=args.iterations, early_stopping=True)
        early_s, stopped = timed(lambda: early.explain(x), args.device)
    return Row(
        label=f"{label} ({source})", weights=weights, batched_s=batched_s, single_s_scaled=single_s * scale,
        bare_s=bare_s, bare_single_s_scaled=bare_single_s * scale, early_s=early_s,
        mask_change=(stopped.maps - faithful.maps).abs().mean().item(),
        early_steps=stopped.extras["iterations_run"].float().mean().item(),
        loss_faithful=faithful.extras["final_loss"].mean().item(),
        loss_early=stopped.extras["final_loss"].mean().item(),
        keeps_faithful=faithful.extras["keeps_target"].float().mean().item(),
        keeps_early=stopped.extras["keeps_target"].float().mean().item(),
    )


def print_table(rows: list[Row], args: argparse.Namespace) -> None:
    n = args.batch
    print(f"\nN = {n} images, {args.iterations} iterations (one-at-a-time legs: {args.single_images} images x "
          f"{args.single_iterations} iterations, scaled), device {args.device}, torch threads {torch.get_num_threads()}")
    print("masks per second (N / seconds); speedup = one-at-a-time / batched time; ceiling = bare 1x1 / bare time")
    print(f"{'model':30} {'weights':9} {'batched':>8} {'1x1':>7} {'speedup':>8} {'bare':>7} {'overhead':>8} "
          f"{'bare 1x1':>8} {'ceiling':>8}")
    for r in rows:
        print(f"{r.label:30} {r.weights.split()[0]:9} {n / r.batched_s:8.2f} {n / r.single_s_scaled:7.2f} "
              f"{r.single_s_scaled / r.batched_s:7.1f}x {n / r.bare_s:7.2f} {r.batched_s / r.bare_s - 1:+8.1%} "
              f"{n / r.bare_single_s_scaled:8.2f} {r.bare_single_s_scaled / r.bare_s:7.1f}x")
    if not args.no_early:
        print(f"\nearly stopping (patience {NeuroMask(torch.nn.Identity()).patience}, tolerance "
              f"{NeuroMask(torch.nn.Identity()).tolerance}) against the faithful run of {args.iterations} iterations")
        print(f"{'model':30} {'masks/s':>8} {'speedup':>8} {'steps':>7} {'final loss':>17} {'keeps class':>13} {'|dM|':>7}")
        for r in rows:
            print(f"{r.label:30} {n / r.early_s:8.2f} {r.batched_s / r.early_s:7.2f}x {r.early_steps:7.0f} "
                  f"{r.loss_faithful:8.3f}->{r.loss_early:<8.3f} {r.keeps_faithful:6.2f}/{r.keeps_early:<6.2f} "
                  f"{r.mask_change:7.4f}")
    for r in rows:
        if r.weights != "untrained":
            print(f"{r.label}: {r.weights}")


def main() -> None:
    args = parse_args()
    if args.quick:
        args.batch, args.iterations, args.single_iterations, args.single_images = 8, 10, 5, 2
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for label in args.models:
        rows.append(measure(label, args))
        print_table(rows[-1:], args)  # each model's rows as soon as they are measured
    if len(rows) > 1:
        print_table(rows, args)


if __name__ == "__main__":
    main()
