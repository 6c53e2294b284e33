"""Stage ``data``: the plan's images drawn from the dataset (the same ones on every rerun), recorded in
images.json with a checksum that guards a continued run, and a few kept in examples.npz for the report."""

from __future__ import annotations

import hashlib

import numpy as np
import torch

from binsight.data import load_dataset
from binsight.study.config import ConfigError
from binsight.study.context import RunContext, StudyImages
from binsight.study.errors import RunFolderError
from binsight.study.plan import ImageChoice
from binsight.study.records import ImageSet

EXAMPLES = 8  # images kept in examples.npz, for the report's grid


class ImagesStage:
    """Draws the images (``ctx.images``); rank 0 checks them against images.json and records them."""

    name = "data"

    def run(self, ctx: RunContext) -> None:
        choice = ctx.plan.images
        ds = dataset(choice)
        if choice.n > len(ds):
            raise ConfigError(f"data.n_images = {choice.n} but {choice.name} ({choice.split}) has only {len(ds)} "
                              "images; lower data.n_images")
        indices = np.sort(np.random.default_rng(choice.seed).choice(len(ds), size=choice.n, replace=False))
        index = torch.from_numpy(indices)
        data = StudyImages(indices, ds.images[index], ds.labels[index],
                           None if ds.masks is None else ds.masks[index], list(ds.classes))
        data.record = ImageSet(ds.name, ds.split, ds.source, int(indices.size), checksum(data), data.masks is not None,
                               tuple(data.classes), tuple(indices.tolist()))
        old = ctx.folder.records.read_images()
        ctx.images = data
        if not ctx.main:
            return
        if old is not None and old.checksum != data.record.checksum:
            raise RunFolderError(f"the images of {choice.name} differ from those this run started with "
                                 f"(checksum {old.checksum[:12]} then, {data.record.checksum[:12]} now): the dataset "
                                 "files changed; use a new --out folder")
        ctx.folder.records.write_images(data.record)
        ctx.folder.records.save_examples(data.images[:EXAMPLES].numpy(), data.labels[:EXAMPLES].numpy(),
                                         None if data.masks is None else data.masks[:EXAMPLES].numpy())


def dataset(choice: ImageChoice):
    """The chosen dataset split (:class:`binsight.data.ImageDataset`)."""
    return load_dataset(choice.name, split=choice.split, **choice.options)


def checksum(data: StudyImages) -> str:
    """sha256 of the images' pixels and labels (hex)."""
    digest = hashlib.sha256(data.images.contiguous().numpy().tobytes())
    digest.update(data.labels.contiguous().numpy().tobytes())
    return digest.hexdigest()
