"""``load_dataset`` by name, and ``describe`` for ``binsight data NAME``."""

from __future__ import annotations

import os
from typing import Callable

from binsight.data import cifar10, fashion_mnist, image_folder
from binsight.data.dataset import DatasetError, ImageDataset

_LOADERS: dict[str, Callable[..., ImageDataset]] = {
    "fashion-mnist": fashion_mnist.load,
    "cifar-10": cifar10.load,
    "image-folder": image_folder.load,
}


def available() -> list[str]:
    """The dataset names ``load_dataset`` accepts."""
    return list(_LOADERS)


def load_dataset(name: str, split: str = "test", root: str | os.PathLike | None = None, download: bool = True,
                 **options) -> ImageDataset:
    """Load split ``split`` of dataset ``name`` (see ``available()``); ``options`` go to its reader.

    ``root`` is an explicit location (a folder, or for cifar-10 also the .tar.gz); ``download`` allows
    fetching a missing dataset into the cache. Raises DatasetError with what went wrong and what to do.
    """
    key = name.lower()
    if key not in _LOADERS:
        raise DatasetError(f"unknown dataset {name!r}; available: {', '.join(available())}")
    return _LOADERS[key](split=split, root=root, download=download, **options)


def splits_of(name: str, root=None) -> list[str]:
    """The splits a dataset defines (image-folder: train/test when the root has them, else "all")."""
    if name.lower() == "image-folder":
        return image_folder.splits(root)
    return ["train", "test"]


def describe(name: str, root: str | os.PathLike | None = None, download: bool = True) -> str:
    """Where a dataset came from, each split's size, image shape, classes, masks and checksums, as text."""
    parts = {split: load_dataset(name, split=split, root=root, download=download) for split in splits_of(name, root)}
    first = next(iter(parts.values()))
    c, h, w = first.images.shape[1:]
    lines = [f"dataset: {first.name}"]
    lines += [f"source ({split}): {ds.source}" for split, ds in parts.items()]
    lines += [f"size: " + ", ".join(f"{split} {len(ds):,} images" for split, ds in parts.items())]
    lines += [f"image shape: {c} x {h} x {w} (channels x height x width), float32 in [0, 1]",
              f"classes ({len(first.classes)}): {', '.join(first.classes)}",
              f"foreground masks: {'yes' if first.masks is not None else 'no'}"]
    lines += [f"checksum ({split}, sha256 of images+labels): {ds.checksum()}" for split, ds in parts.items()]
    return "\n".join(lines)
