"""Training, evaluation and the model cache.

``train(TrainConfig(...)) -> (model, TrainResult)`` trains a registered architecture on a dataset's
train split and evaluates it on the test split. Each precision has its own recipe (:data:`RECIPES`):

* ``fp``: SGD with Nesterov momentum 0.9, weight decay 5e-4, one-cycle learning rate schedule.
* ``bnn``: Adam, no weight decay (the latent weights are clipped to [-1, 1] after every step instead),
  cosine learning rate schedule.

Training is deterministic on CPU for a given seed: the seed fixes the initial weights, and a seeded
generator fixes the shuffling and the augmentation (random shifts by up to ``pad`` pixels and horizontal
flips, done in torch).

``cached_model(...)`` returns a trained model from the cache (``binsight._io.cache_dir("models")``),
training and saving it first when the configuration has not been trained before.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from binsight._io import cache_dir
from binsight.models import build_model
from binsight.models.checkpoint import (
    CheckpointError,
    checkpoint_paths,
    load_checkpoint,
    save_checkpoint,
)
from binsight.nn import clip_latent_weights

__all__ = [
    "RECIPES",
    "CheckpointError",
    "Recipe",
    "TrainConfig",
    "TrainResult",
    "cache_key",
    "cached_model",
    "evaluate",
    "evaluate_command",
    "load_checkpoint",
    "load_or_train",
    "save_checkpoint",
    "train",
    "train_command",
]

#: Bump when the training procedure changes, so that cached models trained the old way are not reused.
RECIPE_VERSION = 1


@dataclass(frozen=True)
class Recipe:
    """Optimiser and schedule of one precision."""

    optimizer: str  # "sgd" (Nesterov, momentum 0.9) or "adam"
    lr: float  # peak learning rate
    weight_decay: float
    schedule: str  # "onecycle" or "cosine" (both stepped every batch)
    epochs: int


RECIPES: dict[str, Recipe] = {
    "fp": Recipe(optimizer="sgd", lr=0.05, weight_decay=5e-4, schedule="onecycle", epochs=10),
    "bnn": Recipe(optimizer="adam", lr=1e-3, weight_decay=0.0, schedule="cosine", epochs=12),
}


class TrainError(ValueError):
    """A training configuration that cannot work; the message says which setting and why."""


@dataclass
class TrainConfig:
    """What to train. ``epochs`` and ``lr`` None take the precision's :data:`RECIPES` values."""

    model: str = "small-cnn"
    precision: str = "fp"
    dataset: str = "fashion-mnist"
    data_root: str | None = None
    epochs: int | None = None
    batch_size: int = 128
    lr: float | None = None
    seed: int = 0
    surrogate: str = "ste"
    first_last_fp: bool = True
    scaling: bool = False
    model_options: dict[str, Any] = field(default_factory=dict)
    augment: bool = True
    pad: int = 1
    train_subset: int | None = None
    test_subset: int | None = None
    device: str = "cpu"
    progress: bool = True

    def resolved(self) -> TrainConfig:
        """A copy with ``epochs`` and ``lr`` filled in from the recipe, checked."""
        if self.precision not in RECIPES:
            raise TrainError(f"precision must be one of {sorted(RECIPES)}, got {self.precision!r}")
        recipe = RECIPES[self.precision]
        config = replace(
            self,
            epochs=recipe.epochs if self.epochs is None else self.epochs,
            lr=recipe.lr if self.lr is None else self.lr,
        )
        for name in ("epochs", "batch_size"):
            value = getattr(config, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise TrainError(f"{name} must be a positive integer, got {value!r}")
        if not config.lr > 0:
            raise TrainError(f"lr must be positive, got {config.lr!r}")
        if config.pad < 0:
            raise TrainError(f"pad must be >= 0, got {config.pad!r}")
        return config


@dataclass
class TrainResult:
    """What training measured. ``history``: one dict per epoch (train loss and accuracy, seconds)."""

    test_accuracy: float
    train_seconds: float
    config: dict[str, Any]
    recipe: dict[str, Any]
    history: list[dict[str, float]]
    num_train: int
    num_test: int
    classes: list[str]


# -- data ---------------------------------------------------------------------------------------------
def _load_split(config: TrainConfig, split: str, subset: int | None):
    from binsight.data import load_dataset

    data = load_dataset(config.dataset, split, root=config.data_root)
    if subset is not None:
        data = data.subset(min(subset, len(data)), seed=config.seed)
    return data


def augment_batch(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random shift by up to ``pad`` pixels (zero fill) and random horizontal flip, per image.

    images: (N, C, H, W) -> (N, C, H, W); the randomness comes from ``generator`` only.
    """
    n, c, h, w = images.shape
    flip = torch.rand(n, generator=generator) < 0.5
    images = torch.where(flip.view(n, 1, 1, 1), images.flip(3), images)
    if pad == 0:
        return images
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator)
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = (shifts[0].view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
    cols = (shifts[1].view(n, 1) + torch.arange(w)).view(n, 1, 1, w)
    batch = torch.arange(n).view(n, 1, 1, 1)
    chans = torch.arange(c).view(1, c, 1, 1)
    return padded[batch, chans, rows, cols]


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of images (N, C, H, W): the model's built-in normalisation."""
    flat = images.transpose(0, 1).reshape(images.shape[1], -1).double()
    std = flat.std(dim=1).clamp_min(1e-3)
    return [round(float(v), 4) for v in flat.mean(dim=1)], [round(float(v), 4) for v in std]


# -- optimisation ---------------------------------------------------------------------------------------
def make_optimizer(model: nn.Module, recipe: Recipe, lr: float) -> torch.optim.Optimizer:
    """The recipe's optimiser over all parameters (weight decay only where the recipe has any)."""
    if recipe.optimizer == "sgd":
        return torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, nesterov=True, weight_decay=recipe.weight_decay)
    return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=recipe.weight_decay)


def make_schedule(optimizer: torch.optim.Optimizer, recipe: Recipe, lr: float, total_steps: int):
    """Per-batch learning rate schedule over ``total_steps`` steps."""
    if recipe.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps, pct_start=0.2)
    return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)


@contextlib.contextmanager
def deterministic_algorithms() -> Iterator[None]:
    """Ask torch for deterministic kernels inside the block; the previous setting is restored."""
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


def _batches(n: int, batch_size: int, generator: torch.Generator) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch of a single image is dropped (batch norm needs two)."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) == 1:
        batches.pop()
    return batches


def train_epoch(model, optimizer, schedule, data, config: TrainConfig, generator, bar) -> dict[str, float]:
    """One pass over ``data`` (an ImageDataset); returns mean train loss and accuracy."""
    model.train()
    binary = config.precision == "bnn"
    total_loss, correct, seen = 0.0, 0, 0
    for index in _batches(len(data), config.batch_size, generator):
        images = data.images[index]
        if config.augment:
            images = augment_batch(images, config.pad, generator)
        images, labels = images.to(config.device), data.labels[index].to(config.device)
        logits = model(images)
        loss = F.cross_entropy(logits, labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if binary:
            clip_latent_weights(model)
        total_loss += loss.item() * len(index)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(index)
        bar.update(1)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    return {"train_loss": total_loss / seen, "train_accuracy": correct / seen}


@torch.no_grad()
def evaluate(model: nn.Module, data, batch_size: int = 1000, device: str = "cpu") -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``data`` (an ImageDataset); the model's mode is restored."""
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        correct = 0
        for start in range(0, len(data), batch_size):
            images = data.images[start : start + batch_size].to(device)
            labels = data.labels[start : start + batch_size].to(device)
            logits = model(images)
            if logits.shape[1] <= int(labels.max()):
                raise TrainError(
                    f"the model has {logits.shape[1]} classes but {data.name} has labels up to {int(labels.max())}"
                )
            correct += int((logits.argmax(1) == labels).sum())
        return correct / len(data)
    finally:
        for m, mode in modes.items():
            m.train(mode)


def train(config: TrainConfig) -> tuple[nn.Module, TrainResult]:
    """Train ``config.model`` in ``config.precision`` on the train split; evaluate on the test split."""
    config = config.resolved()
    recipe = RECIPES[config.precision]
    train_data = _load_split(config, "train", config.train_subset)
    test_data = _load_split(config, "test", config.test_subset)
    mean, std = channel_stats(train_data.images)
    torch.manual_seed(config.seed)
    model = build_model(
        config.model, config.precision, in_channels=train_data.images.shape[1], num_classes=len(train_data.classes),
        input_size=list(train_data.images.shape[2:]), mean=mean, std=std, first_last_fp=config.first_last_fp, scaling=config.scaling,
        surrogate=config.surrogate, **config.model_options,
    ).to(config.device)
    generator = torch.Generator().manual_seed(config.seed)
    steps_per_epoch = len(_batches(len(train_data), config.batch_size, torch.Generator().manual_seed(0)))
    optimizer = make_optimizer(model, recipe, config.lr)
    schedule = make_schedule(optimizer, recipe, config.lr, steps_per_epoch * config.epochs)
    history = []
    start = time.perf_counter()
    with deterministic_algorithms():
        for epoch in range(config.epochs):
            desc = f"{config.model} {config.precision} epoch {epoch + 1}/{config.epochs}"
            with tqdm(total=steps_per_epoch, desc=desc, disable=not config.progress, leave=False) as bar:
                stats = train_epoch(model, optimizer, schedule, train_data, config, generator, bar)
            history.append({"epoch": epoch + 1, **stats, "seconds": time.perf_counter() - start})
    train_seconds = time.perf_counter() - start
    accuracy = evaluate(model, test_data, device=config.device)
    model.eval()
    result = TrainResult(
        test_accuracy=accuracy, train_seconds=train_seconds, config=asdict(config), recipe=asdict(recipe),
        history=history, num_train=len(train_data), num_test=len(test_data), classes=list(train_data.classes),
    )
    return model, result


# -- checkpoints and the cache ------------------------------------------------------------------------
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
        "history": result.history,
    }


def cache_key(config: TrainConfig) -> str:
    """A file stem naming ``config``: readable fields plus a hash of everything that changes the weights.

    Device and progress bar are left out; so are the binarization settings of a full-precision model.
    """
    config = config.resolved()
    fields = asdict(config)
    for name in ("device", "progress"):
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
    **config: Any,
) -> tuple[nn.Module, dict[str, Any]]:
    """The trained model for this configuration, from the cache or trained now and saved there.

    ``config`` takes any other :class:`TrainConfig` field (``surrogate``, ``lr``, ``train_subset``,
    ``data_root``, ...). ``cache`` defaults to ``binsight._io.cache_dir("models")``. Returns
    (model in eval mode, side-file metadata); the metadata's ``checkpoint`` is the weights' path and
    ``from_cache`` says whether it was already there.
    """
    train_config = TrainConfig(model=arch, precision=precision, dataset=dataset, seed=seed, epochs=epochs,
                               progress=progress, **config)
    return load_or_train(train_config, cache)


def load_or_train(config: TrainConfig, cache: str | Path | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """:func:`cached_model` for a ready :class:`TrainConfig`."""
    folder = Path(cache) if cache is not None else cache_dir("models")
    weights, side = checkpoint_paths(folder / cache_key(config))
    from_cache = weights.is_file() and side.is_file()
    if from_cache:
        model, meta = load_checkpoint(weights, device=config.device)
    else:
        model, result = train(config)
        save_checkpoint(model, weights, checkpoint_meta(result))
        meta = json.loads(side.read_text(encoding="utf-8"))
    return model, {**meta, "checkpoint": str(weights), "from_cache": from_cache}


# -- command line ---------------------------------------------------------------------------------------
def _config_from_args(args) -> TrainConfig:
    return TrainConfig(
        model=args.model, precision=args.precision, dataset=args.dataset, data_root=args.data_root,
        epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, seed=args.seed, surrogate=args.surrogate,
        train_subset=args.train_subset, device=args.device,
    )


def train_command(args) -> None:
    """``binsight train``: train (or reuse from the cache), save the checkpoint, print accuracy and path."""
    config = _config_from_args(args)
    if args.out:
        model, result = train(config)
        path = save_checkpoint(model, args.out, checkpoint_meta(result))
        accuracy, note = result.test_accuracy, f"trained in {result.train_seconds:.0f} s"
    else:
        _, meta = load_or_train(config)
        path = meta["checkpoint"]
        accuracy = meta["test_accuracy"]
        note = "found in the cache" if meta["from_cache"] else f"trained in {meta['train_seconds']:.0f} s"
    print(f"{config.model} ({config.precision}) on {config.dataset}: test accuracy {accuracy:.2%} ({note})")
    print(f"checkpoint: {path}")


def evaluate_command(args) -> None:
    """``binsight evaluate CKPT``: test accuracy on the checkpoint's dataset (or ``--dataset``)."""
    from binsight.data import load_dataset

    model, meta = load_checkpoint(args.checkpoint, device=args.device)
    name = args.dataset or meta.get("dataset")
    if not name:
        raise TrainError(f"checkpoint {args.checkpoint} does not say which dataset it was trained on; give --dataset")
    data = load_dataset(name, "test", root=args.data_root)
    accuracy = evaluate(model, data, device=args.device)
    print(f"{meta.get('architecture')} ({meta.get('precision')}) on {name} test ({len(data)} images): "
          f"accuracy {accuracy:.2%}")
