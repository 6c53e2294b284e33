"""The in-memory dataset every binsight reader returns, and the error every reader raises."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import numpy as np
import torch
from torch import Tensor

from binsight.errors import BinsightError


class DatasetError(BinsightError):
    """A dataset could not be found or read: the message says what, where binsight looked, and what to do."""


class RootNeededError(DatasetError):
    """A dataset that has no default place was asked for without a root. ``need`` says what the root must
    hold; the message adds where each command takes it, and a command may say its own flag instead."""

    def __init__(self, need: str):
        self.need = need
        super().__init__(f"{need}; give its path: --root of binsight data, --data-root of binsight train and "
                         "evaluate, data.root of a study")


@dataclass
class ImageDataset:
    """Images with labels, in binsight's pixel space.

    Attributes:
        images: float32 (N, C, H, W), pixels in [0, 1].
        labels: int64 (N,), class indices into ``classes``.
        classes: class names, index = label.
        name: the dataset's name ("fashion-mnist", "cifar-10", "image-folder").
        split: "train" or "test" (image-folder without splits: "all").
        source: where it came from (a path, or the URL it was downloaded from).
        masks: bool (N, 1, H, W) foreground pixels of the object, or None where unknown.
    """

    images: Tensor
    labels: Tensor
    classes: list[str]
    name: str
    split: str
    source: str
    masks: Tensor | None = None

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, n: int, seed: int = 0) -> ImageDataset:
        """``n`` images drawn without replacement, the same ones for the same ``seed``, in dataset order."""
        if not 1 <= n <= len(self):
            raise DatasetError(f"subset of {n} images asked from {self.name} ({self.split}), which has {len(self)}; "
                               f"ask for 1 to {len(self)}")
        chosen = np.sort(np.random.default_rng(seed).choice(len(self), size=n, replace=False))
        index = torch.from_numpy(chosen)
        masks = None if self.masks is None else self.masks[index]
        return replace(self, images=self.images[index], labels=self.labels[index], masks=masks)

    def checksum(self) -> str:
        """SHA-256 (hex) of the images' float32 bytes followed by the labels' int64 bytes."""
        digest = hashlib.sha256()
        digest.update(self.images.detach().cpu().contiguous().to(torch.float32).numpy().tobytes())
        digest.update(self.labels.detach().cpu().contiguous().to(torch.int64).numpy().tobytes())
        return digest.hexdigest()
