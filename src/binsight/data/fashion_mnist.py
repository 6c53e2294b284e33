"""Fashion-MNIST (Xiao et al., 2017) from its idx gzip files: 28x28 grayscale, 10 classes.

Where the files are looked for, in order:
1. ``root``, when given (then nowhere else: a wrong path is an error);
2. ``$BINSIGHT_DATA`` or its ``fashion-mnist`` subfolder;
3. ``/usr/share/datasets/fashion-mnist/`` (Debian's ``dataset-fashion-mnist`` package);
4. the download cache ``binsight._io.cache_dir("data/fashion-mnist")``, downloading the split's two
   files there when ``download`` is true.

Each file may be gzipped (``.gz``) or plain. Downloads are checked against the SHA-256 of the *unzipped*
idx content: Debian re-compressed the published archives (its .gz files differ byte-wise from the
mirror's, whose published MD5s are e.g. 8d4fb7e6... for train-images), but the idx content is the same,
so one set of checksums covers both.

Foreground masks: a pixel belongs to the object when its value exceeds ``MASK_THRESHOLD`` (10 of 255,
about 0.04): the background of Fashion-MNIST is black and mostly exactly 0, and 10 drops the faint
halo of compression noise around the object. Holes inside the object (dark prints, shadows) are filled
with ``scipy.ndimage.binary_fill_holes``, since they are part of the object.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Mapping

import numpy as np
import torch
from scipy import ndimage

from binsight._io import cache_dir
from binsight.data.dataset import DatasetError, ImageDataset
from binsight.data.download import fetch_verified
from binsight.data.idx import read_idx

NAME = "fashion-mnist"
CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
SYSTEM_DIR = Path("/usr/share/datasets/fashion-mnist")
URL_ENV = "BINSIGHT_FASHION_MNIST_URL"
MIRRORS = [
    "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
]
# SHA-256 of each file's unzipped idx content (the .gz bytes differ between Debian and the mirrors).
CHECKSUMS = {
    "train-images-idx3-ubyte.gz": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte.gz": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte.gz": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte.gz": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}
MASK_THRESHOLD = 10
_PREFIX = {"train": "train", "test": "t10k"}


def file_names(split: str) -> tuple[str, str]:
    """The (images, labels) .gz file names of a split, e.g. ("t10k-images-idx3-ubyte.gz", ...)."""
    if split not in _PREFIX:
        raise DatasetError(f"fashion-mnist has no split {split!r}; use 'train' or 'test'")
    prefix = _PREFIX[split]
    return f"{prefix}-images-idx3-ubyte.gz", f"{prefix}-labels-idx1-ubyte.gz"


def load(split: str = "test", root: str | os.PathLike | None = None, download: bool = True,
         url: str | None = None, checksums: Mapping[str, str] | None = None, masks: bool = True) -> ImageDataset:
    """Load one split of Fashion-MNIST as (N, 1, 28, 28) images in [0, 1] with foreground masks.

    Args:
        split: "train" (60,000 images) or "test" (10,000).
        root: a folder holding the split's idx files; when given, nothing else is searched.
        download: whether to download into the cache when the files are found nowhere else.
        url: base URL to download from (default ``$BINSIGHT_FASHION_MNIST_URL``, else the public mirrors).
        checksums: file name -> SHA-256 of the unzipped content, overriding ``CHECKSUMS`` entries.
        masks: whether to compute the foreground masks (about 1 s for the train split).
    """
    images_name, labels_name = file_names(split)
    folder, source = locate(split, root, download, url, checksums)
    images_path, labels_path = _existing(folder, images_name), _existing(folder, labels_name)
    images, labels, fg = _read_split(images_path, labels_path, _stamp(images_path), _stamp(labels_path), masks)
    return ImageDataset(
        images=torch.from_numpy(images.astype(np.float32)).div_(255.0).unsqueeze(1),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=list(CLASSES),
        name=NAME,
        split=split,
        source=source,
        masks=None if fg is None else torch.from_numpy(fg.copy()).unsqueeze(1),
    )


def locate(split: str, root=None, download: bool = True, url: str | None = None,
           checksums: Mapping[str, str] | None = None) -> tuple[Path, str]:
    """The folder holding the split's two files and a description of where they came from.

    Follows the lookup order in the module docstring; downloads when nothing local has them.
    """
    names = file_names(split)
    if root is not None:
        return _explicit_root(Path(root).expanduser(), names), str(Path(root).expanduser())
    looked = []
    for folder, label in _local_candidates():
        looked.append(f"{label}: {folder}")
        if _has_files(folder, names):
            return folder, str(folder)
    cache = cache_dir(f"data/{NAME}")
    looked.append(f"download cache: {cache}")
    if _has_files(cache, names):
        return cache, f"{cache} (download cache)"
    if not download:
        raise DatasetError(_not_found_message(split, names, looked))
    base = _download(cache, names, url, checksums)
    return cache, f"{base} (downloaded to {cache})"


def _explicit_root(root: Path, names: tuple[str, str]) -> Path:
    if not root.is_dir():
        raise DatasetError(f"fashion-mnist: {root} is not a folder; pass the folder that holds {names[0]} "
                           f"and {names[1]}")
    for candidate in (root, root / NAME):
        if _has_files(candidate, names):
            return candidate
    present = sorted(p.name for p in root.iterdir())[:8]
    raise DatasetError(f"fashion-mnist: {root} does not hold {names[0]} and {names[1]} (found: "
                       f"{', '.join(present) or 'nothing'}); pass the folder with the idx files, or leave "
                       "the path out to use BINSIGHT_DATA, /usr/share/datasets/fashion-mnist or a download")


def _local_candidates() -> list[tuple[Path, str]]:
    candidates = []
    env = os.environ.get("BINSIGHT_DATA")
    if env:
        base = Path(env).expanduser()
        candidates += [(base, "$BINSIGHT_DATA"), (base / NAME, "$BINSIGHT_DATA")]
    candidates.append((SYSTEM_DIR, "Debian dataset-fashion-mnist"))
    return candidates


def _existing(folder: Path, gz_name: str) -> Path:
    """``folder/gz_name`` if present, else the unzipped ``folder/name`` (callers checked one exists)."""
    gz = folder / gz_name
    return gz if gz.is_file() else folder / gz_name.removesuffix(".gz")


def _has_files(folder: Path, names: tuple[str, str]) -> bool:
    return all(_existing(folder, n).is_file() for n in names)


def _download(cache: Path, names: tuple[str, str], url: str | None, checksums) -> str:
    base = url or os.environ.get(URL_ENV)
    mirrors = [base] if base else MIRRORS
    sums = {**CHECKSUMS, **(checksums or {})}
    for name in names:
        if not (cache / name).is_file():
            fetch_verified([_join(m, name) for m in mirrors], cache / name, sums[name], gunzip=True)
    return mirrors[0] if len(mirrors) == 1 else ", ".join(mirrors)


def _join(base: str, name: str) -> str:
    return base.rstrip("/") + "/" + name


def _not_found_message(split: str, names: tuple[str, str], looked: list[str]) -> str:
    where = "\n".join(f"  - {line}" for line in looked)
    env_note = "" if os.environ.get("BINSIGHT_DATA") else "  ($BINSIGHT_DATA is not set)\n"
    return (f"fashion-mnist ({split}) not found: no folder holds {names[0]} and {names[1]}.\n"
            f"Looked in:\n{where}\n{env_note}Get it with one of:\n"
            "  - sudo apt-get install dataset-fashion-mnist   (Debian/Ubuntu: /usr/share/datasets/fashion-mnist)\n"
            "  - put the idx files in a folder and pass it as the root (--root / --data-root) or set BINSIGHT_DATA\n"
            "  - allow the download (drop --no-download / download=False)")


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=4)
def _read_split(images_path: Path, labels_path: Path, images_stamp, labels_stamp, masks: bool):
    """(images uint8 (N, 28, 28), labels uint8 (N,), masks bool (N, 28, 28) or None), validated.

    Cached in-process by path and (size, mtime), so loading the same split again costs a copy only; the
    arrays are read-only and callers always copy them into new tensors.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3:
        raise DatasetError(f"{images_path}: expected images of shape (N, H, W), the idx file holds {images.shape}")
    if labels.ndim != 1:
        raise DatasetError(f"{labels_path}: expected labels of shape (N,), the idx file holds {labels.shape}")
    if len(images) != len(labels):
        raise DatasetError(f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels; "
                           "the two files are from different splits or one is damaged")
    if labels.size and labels.max() >= len(CLASSES):
        raise DatasetError(f"{labels_path}: label {int(labels.max())} is out of range 0..{len(CLASSES) - 1}; "
                           "this is not a Fashion-MNIST label file")
    fg = foreground_masks(images) if masks else None
    if fg is not None:
        fg.flags.writeable = False
    return images, labels, fg


def foreground_masks(images: np.ndarray, threshold: int = MASK_THRESHOLD) -> np.ndarray:
    """bool (N, H, W): pixels above ``threshold`` (uint8 scale), holes inside each object filled."""
    per_image = np.zeros((3, 3, 3), dtype=bool)
    per_image[1] = ndimage.generate_binary_structure(2, 1)  # fill within each image, never across images
    return ndimage.binary_fill_holes(images > threshold, structure=per_image)
