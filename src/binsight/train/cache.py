"""The model cache: a trained model is saved under a key of everything that changes its weights.

``cached_model(...)`` returns a trained model from the cache (``binsight._io.cache_dir("models")``),
training and saving it first (rank 0 writes, the other ranks wait) when the configuration has not been
trained before. ``train_checkpoint`` and ``evaluate_checkpoint`` are what ``binsight train`` and
``binsight evaluate`` run, with plain arguments.
"""

from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import asdict
from pathlib import Path
from typing import Any

from torch import nn

from binsight import distributed
from binsight._io import cache_dir
from binsight._utils import BinsightWarning
from binsight.models.checkpoint import CheckpointError, checkpoint_paths, load_checkpoint, save_checkpoint
from binsight.train.loop import (RECIPE_VERSION, RECIPES, STREAMS, TrainConfig, TrainError, TrainResult, _ranks,
                                 derived_seed, evaluate, read_split, train)

__all__ = ["cache_key", "cached_model", "checkpoint_meta", "checkpoint_paths", "evaluate_checkpoint", "load_or_train",
           "train_checkpoint"]


def checkpoint_meta(result: TrainResult) -> dict[str, Any]:
    """The side-file metadata of a trained model."""
    config = result.config
    return {
        "dataset": config["dataset"],
        "class_names": result.classes,
        "test_accuracy": result.test_accuracy,
        "seed": config["seed"],
        "epochs": config["epochs"],
        "train_seconds": result.train_seconds,
        "num_train": result.num_train,
        "num_test": result.num_test,
        "train_config": config,
        "recipe": result.recipe,
        "recipe_version": RECIPE_VERSION,
        "seeds": {stream: derived_seed(config["seed"], config["precision"], stream) for stream in STREAMS},
        "world_size": result.world_size,
        "history": result.history,
        "training_warnings": result.warnings,
    }


def cache_key(config: TrainConfig) -> str:
    """A file stem naming ``config``: readable fields plus a hash of everything that changes the weights.

    Device and progress bar are left out; so are the binarization settings of a full-precision model.
    The seeds derived from (seed, precision) are implied by ``seed`` and ``precision``; the number of
    processes is left out (it changes only which rank computes which slice of a batch). ``image_size``
    and ``channels`` are in the key where set (left out at None, so the keys of models trained on a
    dataset's own size are those they always were).
    """
    config = config.resolved()
    fields = asdict(config)
    for name in ("device", "progress"):
        fields.pop(name)
    for name in ("image_size", "channels"):
        if fields[name] is None:
            fields.pop(name)
    if config.precision == "fp":
        for name in ("surrogate", "first_last_fp", "scaling"):
            fields.pop(name)
    fields["recipe"] = asdict(RECIPES[config.precision])
    fields["recipe_version"] = RECIPE_VERSION
    digest = hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:12]
    return f"{config.model}-{config.precision}-{config.dataset}-s{config.seed}-e{config.epochs}-{digest}"


def cached_model(
    arch: str = "small-cnn",
    precision: str = "fp",
    dataset: str = "fashion-mnist",
    seed: int = 0,
    epochs: int | None = None,
    *,
    cache: str | Path | None = None,
    progress: bool = True,
    data_parallel: bool = True,
    **config: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model for this configuration, from the cache or trained now and saved there.

    ``config`` takes any other :class:`TrainConfig` field (``surrogate``, ``lr``, ``train_subset``,
    ``data_root``, ...). ``cache`` defaults to ``binsight._io.cache_dir("models")``. Returns
    (model in eval mode, side-file metadata); the metadata's ``checkpoint`` is the weights' path and
    ``from_cache`` says whether it was already there. ``data_parallel``: see :func:`load_or_train`.
    """
    train_config = TrainConfig(model=arch, precision=precision, dataset=dataset, seed=seed, epochs=epochs,
                               progress=progress, **config)
    return load_or_train(train_config, cache, data_parallel=data_parallel)


def load_or_train(config: TrainConfig, cache: str | Path | None = None, *,
                  data_parallel: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`cached_model` for a ready :class:`TrainConfig`.

    In a process group with ``data_parallel`` all ranks must call it: rank 0 decides whether the cache
    holds the model; if not, all ranks train it together, rank 0 saves it and the others wait until it
    is saved. ``data_parallel=False``: this process alone looks up, trains and saves.
    """
    folder = Path(cache) if cache is not None else cache_dir("models")
    weights, side = checkpoint_paths(folder / cache_key(config))
    found = weights.is_file() and side.is_file()
    from_cache = bool(distributed.broadcast_int(found)) if _ranks(data_parallel)[1] > 1 else found
    if from_cache:
        try:
            model, meta = load_checkpoint(weights, device=distributed.device_for_rank(config.device))
            for message in meta.get("training_warnings") or []:
                warnings.warn(f"cached model {weights.name}: {message}", BinsightWarning, stacklevel=2)
            return model, {**meta, "checkpoint": str(weights), "from_cache": True}
        except CheckpointError as e:  # e.g. a save cut short: the cache is ours, so train again
            if _ranks(data_parallel)[1] > 1:
                raise
            warnings.warn(f"the cached model cannot be used ({e}); training it again", BinsightWarning, stacklevel=2)
    model, result = train(config, data_parallel=data_parallel)
    meta = _save_on_rank0(model, weights, result)
    return model, {**meta, "checkpoint": str(weights), "from_cache": False}


def _save_on_rank0(model: nn.Module, path: str | Path, result: TrainResult) -> dict[str, Any]:
    """Save the checkpoint on rank 0 of the group that trained it while its other ranks wait; return the
    side-file metadata (from the file where this rank can read it, else as it was written)."""
    if result.world_size == 1:
        save_checkpoint(model, path, checkpoint_meta(result))
        return json.loads(checkpoint_paths(path)[1].read_text(encoding="utf-8"))
    if distributed.rank() == 0:
        save_checkpoint(model, path, checkpoint_meta(result))
    distributed.barrier()
    side = checkpoint_paths(path)[1]
    return json.loads(side.read_text(encoding="utf-8")) if side.is_file() else checkpoint_meta(result)


def train_checkpoint(config: TrainConfig, out: str | Path | None = None) -> dict[str, Any]:
    """Train ``config`` (or take it from the cache when ``out`` is None) and save its checkpoint: ``out``, or
    the cache. Returns the side-file metadata with ``checkpoint`` (the weights' path) and ``from_cache``.

    Call it inside ``distributed.session(config.device)`` under torchrun: every rank trains with
    DistributedDataParallel, rank 0 writes the checkpoint.
    """
    if out is None:
        _, meta = load_or_train(config)
        return meta
    model, result = train(config)
    meta = _save_on_rank0(model, out, result)
    return {**meta, "checkpoint": str(checkpoint_paths(out)[0]), "from_cache": False}


def evaluate_checkpoint(checkpoint: str | Path, dataset: str | None = None, data_root: str | Path | None = None,
                        device: str = "auto") -> tuple[float, int, dict[str, Any]]:
    """(test accuracy, number of test images, side-file metadata) of a checkpoint, on the dataset it was
    trained on or on ``dataset``; on the dataset it was trained on, at the image size and channels it
    was trained at."""
    device = distributed.resolve_device(device)
    model, meta = load_checkpoint(checkpoint, device=device)
    name = dataset or meta.get("dataset")
    if not name:
        raise TrainError(f"checkpoint {checkpoint} does not say which dataset it was trained on; give --dataset")
    trained = meta.get("train_config") or {}
    options = {key: trained[field] for key, field in (("size", "image_size"), ("channels", "channels"))
               if name == meta.get("dataset") and trained.get(field) is not None}
    data = read_split(name, "test", data_root, **options)
    return evaluate(model, data, device=device), len(data), {**meta, "dataset": name}
