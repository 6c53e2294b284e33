"""``binsight explain IMAGE... --model CKPT --method NAME``: per image a PNG overlay and the raw map (.npy).

For each image file ``dir/NAME.ext`` it writes, in the output folder, ``NAME.METHOD.png`` (the map, scaled
to its own maximum, over the image) and ``NAME.METHOD.npy`` (the raw map, float32 (H, W) at the model's
input size); ``METHOD`` is the method name with ``:`` replaced by ``-``. Files are written atomically.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from binsight._io import atomic_path
from binsight.explain.base import ExplainerError, Explanation
from binsight.explain.registry import get_explainer


class ImageReadError(ValueError):
    """An image file that cannot be read as an image."""


def read_image(path: Path) -> np.ndarray:
    """Pixels of an image file as float32 (H, W, C) in [0, 1] (PNG, JPEG, ... via matplotlib and Pillow)."""
    import matplotlib.image as mpimg

    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        arr = mpimg.imread(path)
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageReadError(f"cannot read {path} as an image ({e}); give PNG or JPEG files") from None
    return _to_unit_float(np.asarray(arr), path)


def _to_unit_float(arr: np.ndarray, path: Path) -> np.ndarray:
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 2, 3, 4):
        raise ImageReadError(f"{path} has an unsupported pixel layout {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        arr = arr / np.iinfo(arr.dtype).max
    if arr.shape[2] in (2, 4):  # drop alpha
        arr = arr[:, :, :-1]
    return np.clip(arr, 0.0, 1.0).astype(np.float32)


def to_model_input(pixels: np.ndarray, channels: int, size: tuple[int, int] | None) -> torch.Tensor:
    """(H, W, C) pixels in [0, 1] -> float32 (1, channels, h, w), converting colour and resizing."""
    from skimage.transform import resize

    if pixels.shape[2] != channels:
        if channels == 1:
            gray = pixels @ np.array([0.2125, 0.7154, 0.0721], dtype=np.float32) if pixels.shape[2] == 3 else pixels[..., 0]
            pixels = gray[:, :, None]
        elif channels == 3 and pixels.shape[2] == 1:
            pixels = np.repeat(pixels, 3, axis=2)
        else:
            raise ImageReadError(f"cannot convert an image with {pixels.shape[2]} channels to {channels}")
    if size is not None and pixels.shape[:2] != tuple(size):
        pixels = resize(pixels, (*size, channels), order=1, anti_aliasing=True, preserve_range=True)
    return torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32)).permute(2, 0, 1).unsqueeze(0)


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
    if isinstance(size, int):
        size = (size, size)
    return int(channels), (tuple(int(s) for s in size) if size is not None else None)


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
    target: int | None = None, surrogate: str | None = None, device: str = "cpu",
) -> list[tuple[Path, Explanation]]:
    """Explain each image file with ``method``; write its outputs; return (image path, explanation) pairs."""
    paths = [Path(p) for p in images]
    stems = [p.stem for p in paths]
    dupes = sorted({s for s in stems if stems.count(s) > 1})
    if dupes:
        raise ExplainerError(f"several images share the name {dupes[0]!r}; their outputs would overwrite each other")
    channels, size = model_input_shape(model, meta)
    explainer = get_explainer(method, model, **({"surrogate": surrogate} if surrogate else {}))
    inputs = [to_model_input(read_image(p), channels, size) for p in paths]  # read all before writing any
    model.to(device)
    explanations = [explainer.explain(x.to(device), target) for x in inputs]  # all done before any file is written
    for path, x, explanation in zip(paths, inputs, explanations):
        maps = explanation.maps[0]
        if maps.shape[0] != 1:  # a method run without channel reduction
            maps = maps.abs().amax(0, keepdim=True)
        write_outputs(out_dir, path.stem, method, x, maps)
    return list(zip(paths, explanations))


def explain_command(args: argparse.Namespace) -> None:
    """``binsight explain``: load the checkpoint, explain every image, print where the outputs went."""
    from binsight.train import load_checkpoint

    model, meta = load_checkpoint(args.model, device=args.device)
    out_dir = Path(args.out)
    results = explain_files(args.images, model, meta, args.method, out_dir, args.target, args.surrogate, args.device)
    tag = args.method.replace(":", "-")
    names = meta.get("class_names") or []
    for path, explanation in results:
        target = int(explanation.targets[0])
        label = f"class {target}" + (f" ({names[target]})" if target < len(names) else "")
        extra = f", surrogate {explanation.surrogate}" if explanation.surrogate else ""
        print(f"{path}: {label}{extra} -> {out_dir / f'{path.stem}.{tag}.png'} (+ .npy)")
