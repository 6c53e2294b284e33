"""The training loop and evaluation (the model cache is :mod:`binsight.train.cache`).

``train(TrainConfig(...)) -> (model, TrainResult)`` trains a registered architecture on a dataset's
train split and evaluates it on the test split. Each precision has one recipe (:data:`RECIPES`); a
:class:`TrainConfig` field left at None takes the recipe's value.

Seeding: every random stream of a training run is seeded from ``(seed, precision, stream)`` by
:func:`derived_seed` (the first 8 bytes of a SHA-256), with the streams ``"init"`` (initial weights),
``"data"`` (shuffling and augmentation) and ``"subset"`` (which training images ``train_subset``
keeps). So the FP and BNN models of one seed share no initial weights and no data order, and a run is
deterministic on CPU for a given (seed, precision). The global torch RNG is left as it was.

Distributed: in a process group of K ranks (``torchrun --nproc-per-node K``, see
:mod:`binsight.distributed`) the model is wrapped in DistributedDataParallel. Every rank draws the same
global batch order and augmentation; rank r trains on the r-th of K near-equal slices of every batch, and
the loss is scaled so that the averaged gradient is the mean over the whole batch. The effective batch,
the number of steps and the schedule are those of a single-process run (batch norm statistics are
per rank). The test accuracy is counted over slices of the test split and summed over ranks.

Training runs in channels-last memory format (faster convolutions on CPU); the returned model is in the
usual contiguous format.

"""

from __future__ import annotations

import contextlib
import hashlib
import math
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from binsight import distributed
from binsight._utils import BinsightWarning
from binsight.errors import BinsightError
from binsight.models import build_model
from binsight.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: F401  (re-exported)
from binsight.nn import clip_latent_weights

__all__ = [
    "RECIPES",
    "CheckpointError",
    "Recipe",
    "TrainConfig",
    "TrainError",
    "TrainResult",
    "apply_augmentation",
    "augment_batch",
    "derived_seed",
    "draw_augmentation",
    "evaluate",
    "load_checkpoint",
    "read_split",
    "save_checkpoint",
    "shard",
    "shard_loss",
    "train",
]

#: Bump when the training procedure changes, so that cached models trained the old way are not reused.
RECIPE_VERSION = 2


@dataclass(frozen=True)
class Recipe:
    """Optimiser, schedule and batch of one precision.

    optimizer: "sgd" (Nesterov, momentum 0.9) or "adam". lr: peak learning rate. schedule: "onecycle"
    (rises for the first ``warmup`` fraction of the steps, then anneals) or "cosine"; both are stepped
    every batch. batch_size: the effective (global) batch. label_smoothing: of the cross-entropy loss.
    """

    optimizer: str
    lr: float
    weight_decay: float
    schedule: str
    warmup: float
    epochs: int
    batch_size: int
    label_smoothing: float


RECIPES: dict[str, Recipe] = {
    "fp": Recipe(optimizer="sgd", lr=0.2, weight_decay=5e-4, schedule="onecycle", warmup=0.25, epochs=5,
                 batch_size=256, label_smoothing=0.1),
    "bnn": Recipe(optimizer="adam", lr=2e-3, weight_decay=0.0, schedule="onecycle", warmup=0.2, epochs=8,
                  batch_size=256, label_smoothing=0.0),
}

#: The random streams of one training run, each seeded by :func:`derived_seed`.
STREAMS = ("init", "data", "subset")

MAX_LR = 10.0
"""Largest learning rate accepted: the recipes use 0.2 (SGD) and 0.002 (Adam); far larger rates only diverge
(and above float32's range, about 3.4e38, the optimiser's step overflows)."""
MAX_SEED = 2**63 - 1
"""Largest seed accepted (seeds are non-negative: numpy's generators refuse negative ones)."""
NEAR_CHANCE = 0.15
"""A model is near chance when its test accuracy covers less than this share of the way from the chance
level (the share of the test split's most common class) to 100 %: below 23.5 % for 10 balanced classes."""
DIVERGED = 2.0
"""The train loss diverged when the last epoch's mean exceeds this multiple of the first batch's loss (the
untrained model's, about ln(classes))."""


class TrainError(BinsightError):
    """A training configuration that cannot work; the message says which setting and why."""


def derived_seed(seed: int, precision: str, stream: str) -> int:
    """A 63-bit seed for one random ``stream`` of the run ``(seed, precision)``.

    The first 8 bytes (big-endian) of SHA-256 of ``"binsight.train/{precision}/{seed}/{stream}"``, top bit
    cleared: stable across platforms and Python versions, and unrelated between precisions and streams.
    """
    text = f"binsight.train/{precision}/{int(seed)}/{stream}".encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:8], "big") >> 1


@dataclass
class TrainConfig:
    """What to train. ``epochs``, ``lr`` and ``batch_size`` None take the precision's :data:`RECIPES`
    values. ``image_size`` (pixels, the side of the square images) and ``channels`` (1 or 3) are the
    dataset reader's options (image-folder); None = the reader's default. ``device``: "auto" (a CUDA GPU
    when torch sees one, else the CPU), "cpu", "cuda", "cuda:N"."""

    model: str = "small-cnn"
    precision: str = "fp"
    dataset: str = "fashion-mnist"
    data_root: str | None = None
    image_size: int | None = None
    channels: int | None = None
    epochs: int | None = None
    batch_size: int | None = None
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
    device: str = "auto"
    progress: bool = True

    def resolved(self) -> TrainConfig:
        """A copy with ``epochs``, ``lr`` and ``batch_size`` filled in from the recipe, checked."""
        if self.precision not in RECIPES:
            raise TrainError(f"precision must be one of {sorted(RECIPES)}, got {self.precision!r}")
        recipe = RECIPES[self.precision]
        config = replace(
            self,
            epochs=recipe.epochs if self.epochs is None else self.epochs,
            lr=recipe.lr if self.lr is None else self.lr,
            batch_size=recipe.batch_size if self.batch_size is None else self.batch_size,
        )
        for name in ("epochs", "batch_size", "train_subset", "test_subset", "image_size", "channels"):
            value = getattr(config, name)
            if (value is not None or name in ("epochs", "batch_size")) and not _is_int(value, 1):
                none = "" if name in ("epochs", "batch_size") else " or None"
                raise TrainError(f"{name} must be a positive integer{none}, got {value!r}")
        if not _is_int(config.seed, 0, MAX_SEED):
            raise TrainError(f"seed must be an integer from 0 to 2**63 - 1, got {config.seed!r}")
        lr = config.lr
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr <= MAX_LR:
            raise TrainError(f"lr must be a number in (0, {MAX_LR:g}], got {lr!r}; the recipes use "
                             f"{RECIPES['fp'].lr:g} (fp) and {RECIPES['bnn'].lr:g} (bnn)")
        if not _is_int(config.pad, 0):
            raise TrainError(f"pad must be an integer >= 0, got {config.pad!r}")
        return config


def _is_int(value: Any, low: int, high: int | None = None) -> bool:
    """``value`` is an int (not a bool) in [low, high] (no upper end when ``high`` is None)."""
    if isinstance(value, bool) or not isinstance(value, int):
        return False
    return low <= value and (high is None or value <= high)


@dataclass
class TrainResult:
    """What training measured. ``history``: one dict per epoch (train loss and accuracy, the first batch's
    loss, seconds). ``warnings``: what makes the model doubtful (:func:`training_warnings`), each also
    issued as a :class:`~binsight._utils.BinsightWarning`."""

    test_accuracy: float
    train_seconds: float
    config: dict[str, Any]
    recipe: dict[str, Any]
    history: list[dict[str, float]]
    num_train: int
    num_test: int
    classes: list[str]
    world_size: int = 1
    warnings: list[str] = field(default_factory=list)


# -- data ---------------------------------------------------------------------------------------------
def _load_split(config: TrainConfig, split: str, subset: int | None):
    """The split, cut to ``subset`` images: train images drawn by the run's "subset" stream, test images
    by ``seed`` alone (so FP and BNN of one seed are tested on the same images)."""
    data = read_split(config.dataset, split, config.data_root, **data_options(config))
    if subset is not None:
        seed = derived_seed(config.seed, config.precision, "subset") if split == "train" else config.seed
        data = data.subset(min(subset, len(data)), seed=seed)
    return data


def read_split(dataset: str, split: str, root: str | None, **options: Any):
    """``binsight.data.load_dataset``; a dataset that needs a root and has none names ``--data-root`` (the
    flag of binsight train and evaluate)."""
    from binsight.data import RootNeededError, load_dataset

    try:
        return load_dataset(dataset, split, root=root, **options)
    except RootNeededError as e:
        raise TrainError(f"{e.need}; give its path with --data-root") from None


def data_options(config: TrainConfig) -> dict[str, int]:
    """The reader's options ``config`` sets: ``size`` and ``channels`` where not None."""
    return {key: value for key, value in (("size", config.image_size), ("channels", config.channels))
            if value is not None}


def draw_augmentation(n: int, pad: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """(flip (n,) bool, shifts (2, n) int in [0, 2 pad]) for a batch of n images, drawn from ``generator``."""
    flip = torch.rand(n, generator=generator) < 0.5
    shifts = torch.randint(0, 2 * pad + 1, (2, n), generator=generator) if pad else torch.zeros(2, n, dtype=torch.long)
    return flip, shifts


def apply_augmentation(images: torch.Tensor, pad: int, flip: torch.Tensor, shifts: torch.Tensor) -> torch.Tensor:
    """Flip horizontally where ``flip``, then shift by ``shifts - pad`` pixels (rows, cols) with zero fill.

    images: (N, C, H, W) -> (N, C, H, W).
    """
    n, c, h, w = images.shape
    images = torch.where(flip.view(n, 1, 1, 1), images.flip(3), images)
    if pad == 0:
        return images
    padded = F.pad(images, (pad, pad, pad, pad))
    rows = (shifts[0].view(n, 1) + torch.arange(h)).view(n, 1, h, 1)
    cols = (shifts[1].view(n, 1) + torch.arange(w)).view(n, 1, 1, w)
    batch = torch.arange(n).view(n, 1, 1, 1)
    chans = torch.arange(c).view(1, c, 1, 1)
    return padded[batch, chans, rows, cols]


def augment_batch(images: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """Random shift by up to ``pad`` pixels (zero fill) and random horizontal flip, per image.

    images: (N, C, H, W) -> (N, C, H, W); the randomness comes from ``generator`` only.
    """
    return apply_augmentation(images, pad, *draw_augmentation(len(images), pad, generator))


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
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=lr, total_steps=total_steps,
                                                   pct_start=recipe.warmup)
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


def _batches(n: int, batch_size: int, generator: torch.Generator, *, shards: int = 1) -> list[torch.Tensor]:
    """Shuffled index batches; a last batch too small to give every shard two images is dropped (batch
    norm needs two per rank)."""
    order = torch.randperm(n, generator=generator)
    batches = list(order.split(batch_size))
    if len(batches) > 1 and len(batches[-1]) < 2 * shards:
        batches.pop()
    return batches


def shard(batch: torch.Tensor, rank: int, world: int) -> torch.Tensor:
    """Rank ``rank``'s slice of ``batch`` (dim 0): the ``rank``-th of ``world`` contiguous, near-equal parts."""
    return batch.tensor_split(world)[rank]


def _ranks(data_parallel: bool) -> tuple[int, int]:
    """(rank, world size) of the data-parallel group: the process group's, or (0, 1) when training alone."""
    return (distributed.rank(), distributed.world_size()) if data_parallel else (0, 1)


def _sum(values: list[float], world: int) -> list[float]:
    """``values`` summed over the ranks of a data-parallel group of ``world`` processes."""
    return distributed.sum_over_ranks(values) if world > 1 else values


def shard_loss(logits: torch.Tensor, labels: torch.Tensor, *, label_smoothing: float, batch_len: int,
               world: int) -> torch.Tensor:
    """This rank's cross-entropy summed over its slice, times ``world / batch_len``: DDP averages the
    gradients over ``world`` ranks, which then gives the gradient of the mean loss over the whole batch
    of ``batch_len`` images (the single-process loss when ``world`` is 1)."""
    total = F.cross_entropy(logits, labels, label_smoothing=label_smoothing, reduction="sum")
    return total * (world / batch_len)


def train_epoch(model, optimizer, schedule, data, config: TrainConfig, generator, bar, *,
                ranks: tuple[int, int] = (0, 1)) -> dict[str, float]:
    """One pass over ``data`` (an ImageDataset) on this rank's slices of each batch; returns the mean train
    loss and accuracy over the whole batches (summed over the ``ranks`` = (rank, world size) group)."""
    model.train()
    rank, world = ranks
    unwrapped = getattr(model, "module", model)
    smoothing = RECIPES[config.precision].label_smoothing
    total_loss, correct, seen, first_loss = 0.0, 0, 0, None
    for index in _batches(len(data), config.batch_size, generator, shards=world):
        flip, shifts = draw_augmentation(len(index), config.pad, generator)
        mine = shard(torch.arange(len(index)), rank, world)
        images = data.images[index[mine]]
        if config.augment:
            images = apply_augmentation(images, config.pad, flip[mine], shifts[:, mine])
        images = images.to(config.device, memory_format=torch.channels_last)
        labels = data.labels[index[mine]].to(config.device)
        logits = model(images)
        loss = shard_loss(logits, labels, label_smoothing=smoothing, batch_len=len(index), world=world)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
        if config.precision == "bnn":
            clip_latent_weights(unwrapped)
        batch_loss = float(loss.detach()) / world  # summed over the ranks: the whole batch's mean loss
        first_loss = batch_loss if first_loss is None else first_loss
        total_loss += batch_loss * len(index)
        correct += int((logits.argmax(1) == labels).sum())
        seen += len(mine)
        bar.update(1)
        bar.set_postfix(loss=f"{total_loss / seen:.3f}", acc=f"{correct / seen:.3f}")
    total_loss, correct, seen, first_loss = _sum([total_loss, correct, seen, first_loss or 0.0], world)
    return {"train_loss": total_loss / seen, "train_accuracy": correct / seen, "first_batch_loss": first_loss}


def _count_correct(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: str) -> int:
    """Number of ``images`` whose top-1 class is their label (the model must be in eval mode)."""
    correct = 0
    for start in range(0, len(images), batch_size):
        logits = model(images[start : start + batch_size].to(device))
        batch_labels = labels[start : start + batch_size].to(device)
        if len(batch_labels) and logits.shape[1] <= int(batch_labels.max()):
            raise TrainError(
                f"the model has {logits.shape[1]} classes but the data has labels up to {int(batch_labels.max())}; "
                "evaluate on the dataset the model was trained for"
            )
        correct += int((logits.argmax(1) == batch_labels).sum())
    return correct


@torch.no_grad()
def evaluate(model: nn.Module, data, batch_size: int = 1000, device: str = "cpu", *, sharded: bool = False) -> float:
    """Top-1 accuracy (0..1) of ``model`` on ``data`` (an ImageDataset); the model's mode is restored.

    ``sharded``: in a process group each rank counts its slice of ``data`` and the counts are summed over
    ranks, so every rank returns the accuracy on the whole of ``data`` (all ranks must call it).
    """
    modes = {m: m.training for m in model.modules()}
    model.eval()
    try:
        rank, world = _ranks(sharded)
        mine = shard(torch.arange(len(data)), rank, world)
        correct = _count_correct(model, data.images[mine], data.labels[mine], batch_size, device)
        correct, total = _sum([correct, len(mine)], world)
        return correct / total
    finally:
        for m, mode in modes.items():
            m.train(mode)


def _build(config: TrainConfig, train_data) -> nn.Module:
    """The untrained model of ``config``, its weights drawn from the run's "init" stream."""
    mean, std = channel_stats(train_data.images)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derived_seed(config.seed, config.precision, "init"))
        return build_model(
            config.model, config.precision, in_channels=train_data.images.shape[1],
            num_classes=len(train_data.classes), input_size=list(train_data.images.shape[2:]), mean=mean, std=std,
            first_last_fp=config.first_last_fp, scaling=config.scaling, surrogate=config.surrogate,
            **config.model_options,
        )


def _wrap(model: nn.Module, device: str, world: int) -> nn.Module:
    """``model`` in DistributedDataParallel for a group of ``world`` > 1 processes, else ``model`` itself."""
    if world == 1:
        return model
    ids = [torch.device(device).index] if device.startswith("cuda") else None
    return nn.parallel.DistributedDataParallel(model, device_ids=ids)


def train(config: TrainConfig, *, data_parallel: bool = True) -> tuple[nn.Module, TrainResult]:
    """Train ``config.model`` in ``config.precision`` on the train split; evaluate on the test split.

    Returns (model in eval mode on the training device, result). In a process group (and with
    ``data_parallel``) all ranks train the one model together and return the same weights and result;
    ``data_parallel=False`` trains in this process alone (e.g. when ranks train different models).
    """
    config = config.resolved()
    config = replace(config, device=distributed.device_for_rank(config.device))
    recipe, ranks = RECIPES[config.precision], _ranks(data_parallel)
    world = ranks[1]
    train_data = _load_split(config, "train", config.train_subset)
    test_data = _load_split(config, "test", config.test_subset)
    model = _build(config, train_data).to(config.device, memory_format=torch.channels_last)
    net = _wrap(model, config.device, world)
    generator = torch.Generator().manual_seed(derived_seed(config.seed, config.precision, "data"))
    steps_per_epoch = len(_batches(len(train_data), config.batch_size, torch.Generator().manual_seed(0), shards=world))
    optimizer = make_optimizer(model, recipe, config.lr)
    schedule = make_schedule(optimizer, recipe, config.lr, steps_per_epoch * config.epochs)
    history = []
    progress = config.progress and ranks[0] == 0
    start = time.perf_counter()
    with deterministic_algorithms():
        for epoch in range(config.epochs):
            desc = f"{config.model} {config.precision} epoch {epoch + 1}/{config.epochs}"
            with tqdm(total=steps_per_epoch, desc=desc, disable=not progress, leave=False) as bar:
                stats = train_epoch(net, optimizer, schedule, train_data, config, generator, bar, ranks=ranks)
            history.append({"epoch": epoch + 1, **stats, "seconds": time.perf_counter() - start})
            _check_finite(stats["train_loss"], epoch, config)
    train_seconds = time.perf_counter() - start
    model.to(memory_format=torch.contiguous_format)
    if world > 1:
        distributed.broadcast_module(model)
    accuracy = evaluate(model, test_data, device=config.device, sharded=world > 1)
    model.eval()
    result = TrainResult(
        test_accuracy=accuracy, train_seconds=train_seconds, config=asdict(config), recipe=asdict(recipe),
        history=history, num_train=len(train_data), num_test=len(test_data), classes=list(train_data.classes),
        world_size=world, warnings=training_warnings(history, accuracy, chance_level(test_data.labels), config),
    )
    for message in result.warnings:
        warnings.warn(message, BinsightWarning, stacklevel=2)
    return model, result


def _check_finite(loss: float, epoch: int, config: TrainConfig) -> None:
    """Stop training (TrainError) once an epoch's mean train loss is NaN or infinite. Checked per epoch on
    the loss summed over the ranks, so every rank of a process group stops at the same point."""
    if not math.isfinite(loss):
        raise TrainError(f"the train loss became {loss} in epoch {epoch + 1} of {config.epochs} (lr {config.lr:g}); "
                         "lower the learning rate (--lr), or check the data for NaN or infinite pixels")


def chance_level(labels: torch.Tensor) -> float:
    """The accuracy of always answering the most common class of ``labels`` (N,): 1/K when balanced."""
    return float(torch.bincount(labels).max()) / len(labels) if len(labels) else 0.0


def near_chance(accuracy: float, chance: float) -> bool:
    """True when ``accuracy`` covers less than :data:`NEAR_CHANCE` of the way from ``chance`` to 1."""
    return chance < 1 and (accuracy - chance) / (1 - chance) < NEAR_CHANCE


def diverged(first_loss: float, final_loss: float) -> bool:
    """True when the final mean train loss is above :data:`DIVERGED` x the first batch's loss."""
    return final_loss > DIVERGED * first_loss


def training_warnings(history: list[dict[str, float]], accuracy: float, chance: float,
                      config: TrainConfig) -> list[str]:
    """One line per reason to doubt a trained model: its loss diverged, its test accuracy is near chance."""
    found = []
    first, final = history[0]["first_batch_loss"], history[-1]["train_loss"]
    what = f"{config.model} ({config.precision}, seed {config.seed})"
    if diverged(first, final):
        found.append(f"{what}: the train loss diverged ({first:.3g} on the first batch, {final:.3g} in the last "
                     f"epoch, lr {config.lr:g}); lower the learning rate (--lr) or keep the recipe's")
    if near_chance(accuracy, chance):
        found.append(f"{what} is near chance: test accuracy {accuracy:.1%}, chance {chance:.1%}; its maps explain "
                     "next to nothing: train longer (--epochs), on more images (--train-subset), or at the "
                     "recipe's learning rate")
    return found
