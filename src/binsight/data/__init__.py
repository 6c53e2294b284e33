"""Datasets as :class:`ImageDataset`: float32 (N, C, H, W) images in [0, 1], int64 labels, class names.

``load_dataset(name, split, root, download, **options)`` reads ``fashion-mnist`` (idx gzip files),
``cifar-10`` (the binary version) and ``image-folder`` (root/class_name/*.png|jpg) from their raw formats,
and the planted-evidence datasets ``fashion-mnist-shortcut`` and ``fashion-mnist-decoy``
(:mod:`binsight.data.planted`);
nothing is ever unpickled. ``describe`` is the text of ``binsight data NAME``; ``register_dataset`` adds a
reader to the registry ``DATASETS``.
"""

from binsight.data.dataset import DatasetError, ImageDataset, RootNeededError
from binsight.data.registry import DATASETS, DatasetReader, available, describe, load_dataset, register_dataset
from binsight.data import planted

register_dataset(planted.SHORTCUT)(planted.load_shortcut)
register_dataset(planted.DECOY)(planted.load_decoy)

__all__ = [
    "DATASETS",
    "DatasetError",
    "DatasetReader",
    "ImageDataset",
    "RootNeededError",
    "available",
    "describe",
    "load_dataset",
    "register_dataset",
]
