"""A dataset's images as PNG files (``binsight data NAME --export DIR --n K``), for ``binsight explain``.

:func:`export_pngs` writes the first ``n`` images of a split as ``INDEX-CLASS.png`` (the image's index in
the split, five digits, and its class name with every character other than letters, digits, ``_``, ``.``
and ``-`` replaced by ``_``): 8-bit grayscale for one channel, RGB for three. Files are written atomically.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np
from PIL import Image

from binsight._io import atomic_path
from binsight.data.dataset import DatasetError, ImageDataset

_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")


def png_name(index: int, label: int, classes: list[str]) -> str:
    """``00042-Ankle_boot.png`` for image 42 of class "Ankle boot" (``00042-class3.png`` for a class without
    a name)."""
    name = classes[label] if 0 <= label < len(classes) else f"class{label}"
    return f"{index:05d}-{_UNSAFE.sub('_', name) or f'class{label}'}.png"


def export_pngs(dataset: ImageDataset, folder: str | os.PathLike, n: int) -> list[Path]:
    """Write the first ``n`` images of ``dataset`` (all of them when it holds fewer) into ``folder`` (made if
    missing) as PNG files named by :func:`png_name`; return their paths."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise DatasetError(f"--n must be a positive number of images, got {n!r}")
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise DatasetError(f"--export {folder} is a file; give a folder (it is created if it does not exist)")
    written = []
    for index in range(min(n, len(dataset))):
        pixels = dataset.images[index].permute(1, 2, 0).numpy()
        array = np.round(np.clip(pixels, 0, 1) * 255).astype(np.uint8)
        gray = array.shape[2] == 1
        image = Image.fromarray(array[:, :, 0] if gray else array, mode="L" if gray else "RGB")
        path = folder / png_name(index, int(dataset.labels[index]), dataset.classes)
        with atomic_path(path) as tmp:
            image.save(tmp, format="PNG")
        written.append(path)
    return written
