"""``binsight explain IMAGE... --model CKPT --method NAME``: per image a PNG overlay and the raw map (.npy).

For each image file ``dir/NAME.ext`` it writes, in the output folder, ``NAME.METHOD.png`` (the map, scaled
to its own maximum, over the image) and ``NAME.METHOD.npy`` (the raw map, float32 (H, W) at the model's
input size); ``METHOD`` is the method name with ``:`` replaced by ``-``. Files are written atomically.

Images are read by :mod:`binsight.data.images` (8/16-bit, palette, pixel limit), converted to the model's
channels and fitted to its input size (padded by default, keeping the aspect ratio); each conversion or
resize is printed as a ``note:`` line on stderr. The checkpoint is loaded by
:mod:`binsight.models.checkpoint`: explaining never imports training code.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
from torch import nn

from binsight._io import atomic_path
from binsight.data.images import FITS, MAX_PIXELS, ImageReadError, load_image
from binsight.explain.base import ExplainerError, Explanation
from binsight.explain.registry import get_explainer
from binsight.models.checkpoint import load_checkpoint

__all__ = ["FITS", "ImageReadError", "as_target", "explain_command", "explain_files", "load_input"]


def load_input(path: str | Path, channels: int, size: tuple[int, int] | None, *, fit: str = "pad"
               ) -> tuple[torch.Tensor, list[str]]:
    """(float32 (1, channels, H, W) in [0, 1], notices) for image file ``path`` read by
    :func:`binsight.data.images.load_image`: converted to ``channels`` and fitted to ``size`` (None: kept)."""
    pixels, notices = load_image(path, channels=channels, size=size, fit=fit)
    return torch.from_numpy(pixels).permute(2, 0, 1).unsqueeze(0), notices


def as_target(target: Any) -> int | None:
    """``target`` (None, an int, a numpy integer, a 0-d or one-element integer array or tensor) as int or None."""
    if target is None:
        return None
    if isinstance(target, (bool, np.bool_)):
        raise ExplainerError(f"target must be a class index (an integer), not {target!r}")
    if isinstance(target, (int, np.integer)):
        return int(target)
    if isinstance(target, (np.ndarray, torch.Tensor)) and tuple(target.shape) in ((), (1,)):
        value = target.reshape(()).item()
        if type(value) is int:
            return value
    raise ExplainerError(f"target must be one class index (an integer) for every image, or None; got {target!r}")


def model_input_shape(model: nn.Module, meta: dict[str, Any]) -> tuple[int, tuple[int, int] | None]:
    """(channels, (H, W) or None) the model takes: from its build spec (binsight models, checkpoint side
    file), else the first convolution's channels and the images' own size."""
    spec = {**(meta.get("spec") or {}), **getattr(model, "binsight_spec", {})}
    channels = spec.get("in_channels")
    if channels is None:
        first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
        if first is None:
            raise ExplainerError("cannot tell how many image channels the model takes (no in_channels in its meta)")
        channels = first.in_channels
    size = spec.get("input_size")
    if size is None:
        return int(channels), None
    size = (size, size) if isinstance(size, int) else tuple(size)
    if len(size) != 2 or not all(isinstance(s, int) and s >= 1 for s in size) or size[0] * size[1] > MAX_PIXELS:
        raise ExplainerError(f"the model's input size {spec.get('input_size')!r} is not (H, W) of at most "
                             f"{MAX_PIXELS:,} pixels; check the checkpoint's side file")
    return int(channels), size


def write_outputs(out_dir: Path, stem: str, method: str, image: torch.Tensor, saliency: torch.Tensor) -> list[Path]:
    """Write ``stem.method.npy`` (raw (H, W) map) and ``stem.method.png`` (overlay); return both paths."""
    tag = method.replace(":", "-")
    npy, png = out_dir / f"{stem}.{tag}.npy", out_dir / f"{stem}.{tag}.png"
    raw = saliency[0].detach().cpu().numpy().astype(np.float32)
    with atomic_path(npy) as tmp, open(tmp, "wb") as fh:
        np.save(fh, raw)
    with atomic_path(png) as tmp:
        save_overlay(tmp, image[0].permute(1, 2, 0).cpu().numpy(), raw, f"{stem}: {method}")
    return [npy, png]


def save_overlay(path: Path, pixels: np.ndarray, saliency: np.ndarray, title: str) -> None:
    """A PNG of the map (scaled to its max |.|, 'jet', 50% opaque) over the image (H, W, C) in [0, 1]."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(3, 3), dpi=100)
    ax = fig.add_subplot()
    if pixels.shape[2] == 1:
        ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(pixels)
    scale = float(np.abs(saliency).max()) or 1.0
    if saliency.min() < 0:
        ax.imshow(saliency / scale, cmap="bwr", vmin=-1, vmax=1, alpha=0.5)
    else:
        ax.imshow(saliency / scale, cmap="jet", vmin=0, vmax=1, alpha=0.5)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    fig.savefig(path, format="png", bbox_inches="tight")


def explain_files(
    images: list[str], model: nn.Module, meta: dict[str, Any], method: str, out_dir: Path,
    target: Any = None, surrogate: str | None = None, device: str = "cpu", *, fit: str = "pad",
    notify: Callable[[str], None] | None = None,
) -> list[tuple[Path, Explanation]]:
    """Explain each image file with ``method``; write its outputs; return (image path, explanation) pairs.

    ``target``: None (the predicted class) or one class index for every image (an int, numpy integer or
    0-d tensor). ``fit``: how an image of another size meets the model's input (see
    :mod:`binsight.data.images`). ``notify`` receives one line per conversion or resize of an input.
    """
    paths = [Path(p) for p in images]
    stems = [p.stem for p in paths]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ExplainerError(f"several images share the name {dupes[0]!r}; their outputs would overwrite each other")
    target = as_target(target)
    channels, size = model_input_shape(model, meta)
    explainer = get_explainer(method, model, **({"surrogate": surrogate} if surrogate else {}))
    loaded = [load_input(p, channels, size, fit=fit) for p in paths]  # read all before writing any
    for line in (line for _, notices in loaded for line in notices):
        if notify is not None:
            notify(line)
    inputs = [x for x, _ in loaded]
    model.to(device)
    explanations = [explainer.explain(x.to(device), target) for x in inputs]  # all done before any file is written
    for path, x, explanation in zip(paths, inputs, explanations):
        maps = explanation.maps[0]
        if maps.shape[0] != 1:  # a method run without channel reduction
            maps = maps.abs().amax(0, keepdim=True)
        write_outputs(out_dir, path.stem, method, x, maps)
    return list(zip(paths, explanations))


def explain_command(args: argparse.Namespace) -> None:
    """``binsight explain``: load the checkpoint, explain every image, print notices (stderr) and where the
    outputs went (stdout). ``args.fit`` (default "pad") says how images of another size are fitted."""
    model, meta = load_checkpoint(args.model, device=args.device)
    out_dir = Path(args.out)
    results = explain_files(args.images, model, meta, args.method, out_dir, args.target, args.surrogate, args.device,
                            fit=getattr(args, "fit", "pad"), notify=lambda line: print(f"note: {line}", file=sys.stderr))
    tag = args.method.replace(":", "-")
    names = meta.get("class_names") or []
    for path, explanation in results:
        target = int(explanation.targets[0])
        label = f"class {target}" + (f" ({names[target]})" if target < len(names) else "")
        extra = f", surrogate {explanation.surrogate}" if explanation.surrogate else ""
        print(f"{path}: {label}{extra} -> {out_dir / f'{path.stem}.{tag}.png'} (+ .npy)")
