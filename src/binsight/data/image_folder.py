"""An ImageNet-style folder, ``root/class_name/*.png|jpg|tif``, resized and centre-cropped to a square.

Splits: when ``root/train`` and ``root/test`` are both folders, each is such a tree and ``split`` picks
one; otherwise the whole of ``root`` is one split named "all", returned for ``split="all"`` or the default
``"test"`` (a folder without splits is data to evaluate, never to train on: ``split="train"`` is an error).

Classes are the subfolder names holding at least one image, sorted (label = index). Each image is read
by :mod:`binsight.data.images` (8- and 16-bit, palette and alpha images, a pixel limit checked before
decoding), resized so its shorter side is ``size`` (bilinear, antialiased) and centre-cropped to
``size`` x ``size`` (``fit="crop"``; or padded, stretched or refused).

Foreground masks come from an optional JSON side file (``masks=`` path, default ``root/masks.json`` when
present), keyed by image path relative to the side file's folder, in original-image pixel coordinates::

    {"cat/001.png": {"box": [x0, y0, x1, y1]},      # columns x0..x1-1, rows y0..y1-1
     "dog/002.jpg": {"mask": "masks/dog_002.png"}}  # a mask image of the same size; nonzero = foreground

Each mask undergoes the image's resize and crop (nearest neighbour). With a side file, every image
needs an entry; without one, ``masks`` is None. Mask images the side file names may lie inside ``root``
(e.g. ``root/masks/``): they are never taken for images of a class.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw

from binsight.data.dataset import DatasetError, ImageDataset, RootNeededError
from binsight.data.images import FITS, ImageReadError, convert_channels, open_image, pixels_of, resize_fit

NAME = "image-folder"
EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff")
MASKS_FILE = "masks.json"


def splits(root) -> list[str]:
    """["train", "test"] when ``root`` has both subfolders, else ["all"]."""
    if root is None:
        raise RootNeededError("image-folder needs a root folder, laid out as root/class_name/*.png|jpg|tif")
    root = Path(root).expanduser()
    return ["train", "test"] if (root / "train").is_dir() and (root / "test").is_dir() else ["all"]


def load(split: str = "test", root: str | os.PathLike | None = None, download: bool = True, size: int = 224,
         channels: int = 3, masks: str | os.PathLike | None = None, fit: str = "crop") -> ImageDataset:
    """Load an image folder as (N, channels, size, size) images in [0, 1] (``download`` is unused).

    Args:
        split: "train" or "test" when root has those subfolders, else "all" (or "test").
        root: the folder; required.
        size: side of the square output, in pixels.
        channels: 3 for RGB, 1 for grayscale.
        masks: JSON side file with boxes or mask images (default ``root/masks.json`` if it exists).
        fit: how images that are not square become square: "crop" (default: the centre square),
            "pad" (black borders), "stretch", or "refuse" (see :mod:`binsight.data.images`).
    """
    folder, split = _split_folder(root, split)
    if channels not in (1, 3):
        raise DatasetError(f"image-folder: channels must be 1 (grayscale) or 3 (RGB), not {channels}")
    if size < 1:
        raise DatasetError(f"image-folder: size must be a positive number of pixels, not {size}")
    if fit not in FITS:
        raise DatasetError(f"image-folder: fit must be one of {', '.join(FITS)}, not {fit!r}")
    side = _side_file(Path(root).expanduser(), masks)
    classes, files, labels = _scan(folder, exclude=_mask_files(side))
    loaded = [_load_one(f, size, channels, fit, side) for f in files]
    images = np.stack([pixels for pixels, _ in loaded])
    fg = None if side is None else np.stack([mask for _, mask in loaded])
    return ImageDataset(
        images=torch.from_numpy(images).permute(0, 3, 1, 2).contiguous(),
        labels=torch.tensor(labels, dtype=torch.int64),
        classes=classes,
        name=NAME,
        split=split,
        source=str(folder),
        masks=None if fg is None else torch.from_numpy(fg).unsqueeze(1),
    )


def _split_folder(root, split: str) -> tuple[Path, str]:
    available = splits(root)
    root = Path(root).expanduser()
    if not root.is_dir():
        raise DatasetError(f"image-folder: {root} is not a folder; pass a folder laid out as root/class_name/*.png")
    if available == ["all"]:
        if split not in ("all", "test"):
            raise DatasetError(f"image-folder: {root} has no train/ and test/ subfolders, so no {split!r} split; "
                               "use split 'all' (or 'test'), or make root/train and root/test")
        return root, "all"
    if split not in available:
        raise DatasetError(f"image-folder: {root} has splits train and test, not {split!r}")
    return root / split, split


def _scan(folder: Path, exclude: set[Path]) -> tuple[list[str], list[Path], list[int]]:
    """Sorted class names, the image files (less ``exclude``, resolved paths), and their labels."""
    per_class = {}
    for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
        found = sorted(f for f in sub.iterdir()
                       if f.is_file() and f.suffix.lower() in EXTENSIONS and f.resolve() not in exclude)
        if found:
            per_class[sub.name] = found
    if not per_class:
        raise DatasetError(f"image-folder: no images in {folder}: expected {folder}/class_name/*.png|jpg|jpeg|tif "
                           "(one subfolder per class)")
    classes = list(per_class)
    files = [f for name in classes for f in per_class[name]]
    labels = [i for i, name in enumerate(classes) for _ in per_class[name]]
    return classes, files, labels


def _open(path: Path) -> Image.Image:
    try:
        return open_image(path)
    except ImageReadError as e:
        raise ImageReadError(f"image-folder: {e}") from None


def _load_one(path: Path, size: int, channels: int, fit: str, side) -> tuple[np.ndarray, np.ndarray | None]:
    """One image's pixels (size, size, channels) and, with a side file, its mask (size, size)."""
    img = _open(path)
    pixels, _ = pixels_of(img, path.name)  # notices (transparency) are not reported for a dataset
    pixels, _ = convert_channels(pixels, channels, path.name)
    fitted = resize_fit(pixels, (size, size), fit=fit, name=str(path))
    return fitted, (None if side is None else _load_mask(path, img.size, side, size, fit))


def _side_file(root: Path, masks) -> tuple[Path, dict] | None:
    path = Path(masks).expanduser() if masks is not None else root / MASKS_FILE
    if masks is None and not path.is_file():
        return None
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise DatasetError(f"image-folder: cannot read the masks file {path}: {e.strerror or e}") from None
    except json.JSONDecodeError as e:
        raise DatasetError(f"image-folder: masks file {path} is not valid JSON ({e})") from None
    if not isinstance(entries, dict):
        raise DatasetError(f"image-folder: masks file {path} must hold an object keyed by image path")
    return path.parent, entries


def _mask_files(side) -> set[Path]:
    """Resolved paths of the mask images a side file names: they are not images of the dataset."""
    if side is None:
        return set()
    base, entries = side
    return {(base / e["mask"]).resolve() for e in entries.values() if isinstance(e, dict) and "mask" in e}


def _load_mask(image_path: Path, image_size: tuple[int, int], side: tuple[Path, dict], size: int,
               fit: str) -> np.ndarray:
    """bool (size, size): the image's foreground after the image's own resize and crop."""
    base, entries = side
    key = image_path.relative_to(base).as_posix() if image_path.is_relative_to(base) else str(image_path)
    entry = entries.get(key)
    if not isinstance(entry, dict) or not ("box" in entry or "mask" in entry):
        raise DatasetError(f"image-folder: the masks file has no {{'box': ...}} or {{'mask': ...}} entry for "
                           f"{key!r}; every image needs one")
    width, height = image_size
    mask = _box_mask(entry["box"], width, height, key) if "box" in entry else _mask_image(base / entry["mask"],
                                                                                         width, height, key)
    return resize_fit(np.asarray(mask, dtype=np.float32), (size, size), fit=fit, nearest=True) > 0


def _box_mask(box, width: int, height: int, key: str) -> Image.Image:
    try:
        x0, y0, x1, y1 = (int(v) for v in box)
    except (TypeError, ValueError):
        raise DatasetError(f"image-folder: box of {key!r} must be four integers [x0, y0, x1, y1], "
                           f"got {box!r}") from None
    if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
        raise DatasetError(f"image-folder: box {box} of {key!r} is empty or outside the {width}x{height} image; "
                           "use 0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height")
    mask = Image.new("L", (width, height), 0)
    ImageDraw.Draw(mask).rectangle((x0, y0, x1 - 1, y1 - 1), fill=255)
    return mask


def _mask_image(path: Path, width: int, height: int, key: str) -> Image.Image:
    mask = _open(path).convert("L")
    if mask.size != (width, height):
        raise DatasetError(f"image-folder: mask {path} of {key!r} is {mask.size[0]}x{mask.size[1]}, "
                           f"the image is {width}x{height}; they must match")
    return mask
