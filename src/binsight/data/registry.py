"""Datasets by name: ``load_dataset(name, split, ...)``, and ``describe`` for ``binsight data NAME``.

Every reader is registered in :data:`DATASETS` as a :class:`DatasetReader` (its ``load`` function and the
splits it defines); :func:`register_dataset` adds one.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Callable

from binsight._registry import Registry
from binsight.data import cifar10, fashion_mnist, image_folder
from binsight.data.dataset import DatasetError, ImageDataset

Root = str | os.PathLike | None


def _train_and_test(root: Root) -> list[str]:
    return ["train", "test"]


@dataclass(frozen=True)
class DatasetReader:
    """load(split=, root=, download=, **options) -> ImageDataset; splits(root) -> the split names."""

    load: Callable[..., ImageDataset]
    splits: Callable[[Root], list[str]] = _train_and_test


DATASETS: Registry[DatasetReader] = Registry("dataset", DatasetError)


def register_dataset(
    name: str, *, splits: Callable[[Root], list[str]] = _train_and_test
) -> Callable[[Callable[..., ImageDataset]], Callable[..., ImageDataset]]:
    """Decorator adding a reader ``load(split=, root=, download=, **options)`` under ``name`` (lower case;
    a name is registered once); ``splits(root)`` lists its splits (default train and test)."""

    def add(load: Callable[..., ImageDataset]) -> Callable[..., ImageDataset]:
        DATASETS.add(name, DatasetReader(load, splits))
        return load

    return add


register_dataset("fashion-mnist")(fashion_mnist.load)
register_dataset("cifar-10")(cifar10.load)
register_dataset("image-folder", splits=image_folder.splits)(image_folder.load)


def available() -> list[str]:
    """The dataset names ``load_dataset`` accepts, sorted."""
    return DATASETS.names()


def load_dataset(name: str, split: str = "test", root: Root = None, download: bool = True, **options) -> ImageDataset:
    """Load split ``split`` of dataset ``name`` (see ``available()``; case-insensitive); ``options`` go to
    its reader.

    ``root`` is an explicit location (a folder, or for cifar-10 also the .tar.gz); ``download`` allows
    fetching a missing dataset into the cache. Raises DatasetError with what went wrong and what to do.
    """
    reader = DATASETS.get(name.lower() if isinstance(name, str) else name)
    return reader.load(split=split, root=root, download=download, **options)


def splits_of(name: str, root: Root = None) -> list[str]:
    """The splits dataset ``name`` defines (image-folder: train and test when the root has them, else "all")."""
    return DATASETS.get(name.lower()).splits(root)


def describe(name: str, root: Root = None, download: bool = True) -> str:
    """Where a dataset came from, each split's size, image shape, classes, masks and checksums, as text."""
    parts = {split: load_dataset(name, split=split, root=root, download=download) for split in splits_of(name, root)}
    first = next(iter(parts.values()))
    c, h, w = first.images.shape[1:]
    lines = [f"dataset: {first.name}"]
    lines += [f"source ({split}): {ds.source}" for split, ds in parts.items()]
    lines += ["size: " + ", ".join(f"{split} {len(ds):,} images" for split, ds in parts.items())]
    lines += [f"image shape: {c} x {h} x {w} (channels x height x width), float32 in [0, 1]",
              f"classes ({len(first.classes)}): {', '.join(first.classes)}",
              f"foreground masks: {'yes' if first.masks is not None else 'no'}"]
    lines += [f"checksum ({split}, sha256 of images+labels): {ds.checksum()}" for split, ds in parts.items()]
    return "\n".join(lines)
