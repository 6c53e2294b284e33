"""Speed of binsight's built-in explainers against Captum's equivalents and the bare gradient cost.

For each model (untrained weights: speed does not depend on training) and one fixed batch, prints images
per second (median of ``--repeats`` timed rounds after one warm-up; each round runs every contender once,
so that changing load on a shared machine hits all of them alike) of:

* ``bare fwd+bwd``: one forward and one backward pass to the input (x.requires_grad, autograd.grad of the
  target logits) - the floor no gradient method can beat; for SmoothGrad the floor is one such pass over
  all N x n copies (column "floor", in original images per second);
* ``gradient`` vs ``Saliency`` (abs=True, then max over channels);
* ``smoothgrad`` vs ``NoiseTunnel(Saliency)`` (same n and the same absolute noise std, abs=False, then
  |.| max over channels);
* ``gradcam`` vs ``LayerGradCam(relu_attributions=True)`` + ``LayerAttribution.interpolate(bilinear)``.

Every method gets the same explicit targets (the predicted classes), as Captum requires them.

Below the table, per model: the per-call work outside the model (input and target checks,
``preserved_model``, the surrogate lookup, the finiteness check of the maps): the median time of a
``gradient`` call on ONE image minus that of the bare pass on that image, in ms and as a share of a
``gradient`` call on the whole batch. It must stay within a few percent.
Run: ``nice python benchmarks/bench_explain.py`` (``--quick`` for a smoke run; ``--device cuda`` on a GPU).
Timings on a shared CPU are noisy: compare rows of the same run only.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from typing import Callable

import torch
from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

from binsight.explain.gradcam import GradCAM, find_module
from binsight.explain.gradient import Gradient
from binsight.explain.smoothgrad import SmoothGrad
from binsight.models import build_model

MODELS = {  # label: (build_model arguments, batch size N)
    "small-cnn fp 28x28x1": (dict(name="small-cnn", precision="fp", in_channels=1, input_size=28), 64),
    "small-cnn bnn 28x28x1": (dict(name="small-cnn", precision="bnn", in_channels=1, input_size=28), 64),
    "resnet18 fp 32x32x3": (dict(name="resnet18", precision="fp", in_channels=3, input_size=32), 32),
}
NOISE_STD = 0.15  # absolute, images in [0, 1]: the same noise scale for binsight and Captum


def interleaved_medians(fns: dict[str, Callable[[], object]], repeats: int) -> dict[str, float]:
    """Median wall seconds of each ``fn()``: one warm-up each, then ``repeats`` rounds that run every fn once
    (in an order rotated each round), so that changing load on a shared machine hits all of them alike."""
    names = list(fns)
    for name in names:
        fns[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[: r % len(names)]:
            sync()
            start = time.perf_counter()
            fns[name]()
            sync()
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(ts) for name, ts in times.items()}


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def bare_forward_backward(model: torch.nn.Module, x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """d logit_t / d x with nothing else: one forward, one backward."""
    x = x.detach().requires_grad_(True)
    sel = model(x).gather(1, t.view(-1, 1)).sum()
    return torch.autograd.grad(sel, x)[0]


def captum_saliency(model, x, t):
    return Saliency(model).attribute(x, target=t).amax(1, keepdim=True)


def captum_smoothgrad(model, x, t, n):
    nt = NoiseTunnel(Saliency(model))
    sg = nt.attribute(x, nt_type="smoothgrad", nt_samples=n, stdevs=NOISE_STD, target=t, abs=False)
    return sg.abs().amax(1, keepdim=True)


def captum_gradcam(model, x, t):
    layer = find_module(model, model.gradcam_layer)
    cam = LayerGradCam(model, layer).attribute(x, target=t, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")


def bench_model(label: str, build_args: dict, n_images: int, n_samples: int, repeats: int, device: str) -> list[tuple]:
    """Rows (label, method, binsight img/s, captum img/s, floor img/s) for one model."""
    torch.manual_seed(0)
    model = build_model(**build_args).eval().to(device)
    size = build_args["input_size"]
    x = torch.rand(n_images, build_args["in_channels"], size, size, device=device)
    with torch.no_grad():
        t = model(x).argmax(1)
    copies = x.repeat_interleave(n_samples, 0)
    t_copies = t.repeat_interleave(n_samples)
    ours = {
        "gradient": Gradient(model),
        "smoothgrad": SmoothGrad(model, n_samples=n_samples, noise_std=NOISE_STD),
        "gradcam": GradCAM(model),
    }
    fns = {
        "bare": lambda: bare_forward_backward(model, x, t),
        "bare copies": lambda: bare_forward_backward(model, copies, t_copies),
        "captum gradient": lambda: captum_saliency(model, x, t),
        "captum smoothgrad": lambda: captum_smoothgrad(model, x, t, n_samples),
        "captum gradcam": lambda: captum_gradcam(model, x, t),
    }
    for method, explainer in ours.items():
        fns[method] = lambda e=explainer: e.attribute(x, t)
    fns["gradient one image"] = lambda: ours["gradient"].attribute(x[:1], t[:1])
    fns["bare one image"] = lambda: bare_forward_backward(model, x[:1], t[:1])
    seconds = interleaved_medians(fns, repeats)
    rate = {name: n_images / s for name, s in seconds.items()}
    floors = {"gradient": rate["bare"], "smoothgrad": rate["bare copies"], "gradcam": rate["bare"]}
    rows = [(label, "bare fwd+bwd", rate["bare"], None, rate["bare"])]
    rows += [(label, m, rate[m], rate[f"captum {m}"], floors[m]) for m in ours]
    outside = seconds["gradient one image"] - seconds["bare one image"]
    print(f"{label}: per-call work outside the model {outside * 1e3:.3f} ms = {outside / seconds['gradient']:.1%} "
          f"of a gradient call on {n_images} images ({seconds['gradient'] * 1e3:.1f} ms)", flush=True)
    return rows


def print_table(rows: list[tuple]) -> None:
    print(f"{'model':<22} {'method':<13} {'binsight img/s':>14} {'captum img/s':>13} {'vs captum':>9} "
          f"{'floor img/s':>11} {'vs floor':>8}")
    for label, method, mine, captum, floor in rows:
        vs_captum = f"{mine / captum:8.2f}x" if captum else ""
        captum_s = f"{captum:13.1f}" if captum else " " * 13
        print(f"{label:<22} {method:<13} {mine:14.1f} {captum_s} {vs_captum:>9} {floor:11.1f} {mine / floor:7.2f}x")


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n-samples", type=int, default=50, help="SmoothGrad copies per image (default 50)")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="tiny batches, 2 repeats: a smoke run")
    p.add_argument("--models", nargs="*", default=list(MODELS), help="subset of: " + ", ".join(MODELS))
    p.add_argument("--n-images", type=int, default=None, help="batch size N for every model (default: per model)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's own)")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require gradients")
    print(f"torch {torch.__version__}, device {args.device}, {torch.get_num_threads()} CPU threads; "
          f"median of {args.repeats} after warm-up")
    rows = []
    for label in args.models:
        build_args, n_images = MODELS[label]
        n_images = args.n_images or n_images
        n_images, n_samples, repeats = (4, 4, 2) if args.quick else (n_images, args.n_samples, args.repeats)
        print(f"{label}: N={n_images} images, SmoothGrad n={n_samples}", flush=True)
        rows += bench_model(label, build_args, n_images, n_samples, repeats, args.device)
    print_table(rows)


if __name__ == "__main__":
    main()
