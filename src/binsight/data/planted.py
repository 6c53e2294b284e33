"""Planted evidence: Fashion-MNIST with a small pattern that the label does, or does not, depend on.

Two datasets are built on the fly from Fashion-MNIST (the same files :mod:`binsight.data.fashion_mnist`
finds), deterministic by ``seed``:

- ``fashion-mnist-shortcut``: each image keeps its garment, but carries the pattern of a class drawn
  uniformly at random, independently of the garment, and that class is its label. The pattern is the only
  evidence for the label; the garment tells nothing about it.
- ``fashion-mnist-decoy``: each image keeps its garment and the garment's own class as its label, and
  carries the pattern of a class drawn uniformly at random, independently of the label. The pattern is
  present and irrelevant.

The patterns (:data:`PATTERNS`): 10 distinct 4 x 4 binary patterns, one per class, drawn bright (1.0) on
dark (0.0). Each is symmetric left to right, so the horizontal flip of the training augmentation leaves
it unchanged; each has bright pixels in its first and last row and column, and no pattern matches a
4 x 4 window of a shifted copy of itself or of another on a dark background (so a pattern is never read
as another one a pixel away). Any two differ in at least 4 pixels.

Placement (:func:`placements`): the pattern's 4 x 4 window is put at a random place among the cleanest
places of the image, each place scored as

- 0: the window and the 1-pixel ring around it are background, the ring inside the image (the pattern
  sits apart from the garment and from the image's edge, so the 1-pixel shifts of the training
  augmentation never cut it);
- 1: the window is background (it touches the garment or the image's edge);
- 2 + the garment's brightness in the window (uint8 sum): the window overlaps the garment.

A pixel is background when its uint8 value is at most :data:`BACKGROUND_MAX` (Fashion-MNIST's mask
threshold, 10 of 255) and it is outside the garment's filled foreground mask. Every image has a place of
some score, so the rule always finds room. On the train split 84.6 % of the images have a place of score
0, 15.0 % one of score 1 at best, and 0.3 % (181 images, 109 of them bags, whose garment fills the image)
none off the garment: there the pattern covers the garment's faintest 4 x 4 window (test split: 84.3 %,
15.4 %, 0.4 %).

Ground truth: ``ImageDataset.masks`` holds, per image, the pattern's 4 x 4 window (bool (N, 1, 28, 28), 16
pixels): exactly the pixels the planting set, its bright and its dark ones (the dark pixels tell one
pattern from another too). Every other pixel is the Fashion-MNIST image's own. In the decoy dataset the
mask is the irrelevant pattern, not the evidence; the garment's own mask is :func:`garment_masks`.

One image, two label rules: for one seed and split the two datasets hold the *same* images (the same
garment, pattern and place at every index); only the labels differ (the pattern's class in the shortcut,
the garment's in the decoy). So a map that ignores the model (an edge detector, a blob) is the same on
both, and the maps of a shortcut and a decoy model can be compared image by image.

Random streams: the pattern classes and the places are drawn from a generator seeded by
``(seed, split)``, so the two splits draw unrelated values, and the same seed always gives the same
images.
"""

from __future__ import annotations

import os

import numpy as np
import torch

from binsight.data import fashion_mnist
from binsight.data.dataset import DatasetError, ImageDataset

SHORTCUT = "fashion-mnist-shortcut"
DECOY = "fashion-mnist-decoy"
SCENARIOS = {SHORTCUT: "shortcut", DECOY: "decoy"}
"""Dataset name -> scenario: "shortcut" (the pattern is the label's only evidence) or "decoy" (irrelevant)."""

PATTERN_SIZE = 4
PATTERNS = (
    "#..# #..# .##. .##.",
    ".##. .... .##. #..#",
    "#### .##. .... .##.",
    "#..# .... #..# #..#",
    "#### .... .##. .##.",
    ".##. #### .##. #..#",
    "#..# #..# .... ####",
    "#..# .... .##. #..#",
    "#### .... .... #..#",
    ".##. #..# .... #..#",
)
"""The pattern of each class, row by row (``#`` bright, ``.`` dark), rows separated by spaces."""

BACKGROUND_MAX = fashion_mnist.MASK_THRESHOLD
"""A pixel whose uint8 value is at most this (and outside the garment's filled mask) is background."""

_SPLIT_CODES = {"train": 0, "test": 1}


def patterns() -> torch.Tensor:
    """The class patterns as float32 (K, 4, 4), 1.0 bright and 0.0 dark; index = class."""
    grids = [[[c == "#" for c in row] for row in text.split()] for text in PATTERNS]
    return torch.tensor(grids, dtype=torch.float32)


def load_shortcut(split: str = "test", root: str | os.PathLike | None = None, download: bool = True,
                  seed: int = 0) -> ImageDataset:
    """``fashion-mnist-shortcut``: labels drawn independently of the garment, carried by the pattern only.

    Args: as :func:`binsight.data.fashion_mnist.load` (``root``, ``download``: where Fashion-MNIST is
    found), and ``seed``, the seed the pattern classes and places are drawn with (the decoy of the same
    seed and split holds the same images).
    Returns (N, 1, 28, 28) images in [0, 1], labels (N,), masks bool (N, 1, 28, 28) on the pattern.
    """
    return _planted(SHORTCUT, split, root, download, seed)


def load_decoy(split: str = "test", root: str | os.PathLike | None = None, download: bool = True,
               seed: int = 0) -> ImageDataset:
    """``fashion-mnist-decoy``: the garment's own labels, and a pattern of a random class on every image.

    Arguments and result as :func:`load_shortcut`; the masks are the (irrelevant) pattern's window.
    """
    return _planted(DECOY, split, root, download, seed)


def _planted(name: str, split: str, root, download: bool, seed: int) -> ImageDataset:
    if split not in _SPLIT_CODES:
        raise DatasetError(f"{name} has no split {split!r}; use 'train' or 'test'")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise DatasetError(f"{name}: seed must be a whole number >= 0, got {seed!r}")
    base = fashion_mnist.load(split=split, root=root, download=download)
    images, labels, masks = _plant_arrays(SCENARIOS[name], base.images, base.labels, base.masks, int(seed),
                                          split)
    return ImageDataset(images=images, labels=labels, classes=list(base.classes), name=name, split=split,
                        source=f"{base.source} (pattern planted: {SCENARIOS[name]}, seed {int(seed)})",
                        masks=masks)


def _plant_arrays(scenario: str, images: torch.Tensor, labels: torch.Tensor, garments: torch.Tensor,
                  seed: int, split: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(images, labels, masks) of the planted split: new tensors, the inputs are left as they are."""
    rng = np.random.default_rng([seed, _SPLIT_CODES[split]])
    n, k = len(labels), len(PATTERNS)
    drawn = torch.from_numpy(rng.integers(0, k, size=n)).to(torch.int64)
    pixels = (images[:, 0] * 255).round().to(torch.uint8).numpy()
    rows, cols = placements(pixels, garments[:, 0].numpy(), rng)
    new_labels = drawn if scenario == "shortcut" else labels.clone()
    planted, masks = stamp(images, torch.from_numpy(rows), torch.from_numpy(cols), drawn)
    return planted, new_labels, masks


def placements(pixels: np.ndarray, garments: np.ndarray, rng: np.random.Generator,
               chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Top-left (row, column) of each image's pattern window, drawn by the placement rule (module docs).

    pixels: uint8 (N, H, W) images; garments: bool (N, H, W) filled foreground masks; rng: the draws.
    Returns two int64 arrays (N,). Chunked by ``chunk`` images to bound memory.
    """
    n, h, w = pixels.shape
    rows, cols = np.empty(n, dtype=np.int64), np.empty(n, dtype=np.int64)
    for start in range(0, n, chunk):
        cost = _placement_cost(pixels[start:start + chunk], garments[start:start + chunk])
        flat = cost.reshape(len(cost), -1)
        best = flat == flat.min(axis=1, keepdims=True)
        draw = np.where(best, rng.random(flat.shape), -1.0)
        index = draw.argmax(axis=1)
        rows[start:start + chunk], cols[start:start + chunk] = np.divmod(index, cost.shape[2])
    return rows, cols


def _placement_cost(pixels: np.ndarray, garments: np.ndarray) -> np.ndarray:
    """int64 (N, H - P + 1, W - P + 1): the score of each window's top-left place (module docs)."""
    size = PATTERN_SIZE
    occupied = (pixels > BACKGROUND_MAX) | garments
    window_busy = _box_sums(occupied, size)
    ring_busy = np.ones_like(window_busy, dtype=bool)  # places whose ring would leave the image stay busy
    ring_busy[:, 1:-1, 1:-1] = _box_sums(occupied, size + 2) > 0
    brightness = _box_sums(pixels.astype(np.int64), size)
    return np.where(window_busy == 0, np.where(ring_busy, 1, 0), 2 + brightness)


def _box_sums(values: np.ndarray, size: int) -> np.ndarray:
    """Sums of ``values`` (N, H, W) over every size x size window: (N, H - size + 1, W - size + 1) int64."""
    padded = np.pad(values.astype(np.int64), ((0, 0), (1, 0), (1, 0)))
    c = padded.cumsum(1).cumsum(2)
    return c[:, size:, size:] - c[:, :-size, size:] - c[:, size:, :-size] + c[:, :-size, :-size]


def stamp(images: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor,
          pattern_ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images with pattern ``pattern_ids[i]`` written at (``rows[i]``, ``cols[i]``), and the windows' masks.

    images: float (N, 1, H, W) in [0, 1] (left as they are); rows, cols, pattern_ids: int (N,).
    Returns (images (N, 1, H, W), masks bool (N, 1, H, W) True on each 4 x 4 window).
    """
    n, _, h, w = images.shape
    size = PATTERN_SIZE
    if len(rows) and (int(rows.max()) > h - size or int(cols.max()) > w - size or int(min(rows.min(), cols.min())) < 0):
        raise DatasetError(f"a pattern window must lie inside the {h} x {w} image")
    index_r, index_c = window_index(rows, cols)
    batch = torch.arange(n).view(n, 1, 1)
    out = images.clone()
    out[batch, 0, index_r, index_c] = patterns().to(images.dtype)[pattern_ids.long()]
    masks = torch.zeros(n, 1, h, w, dtype=torch.bool)
    masks[batch, 0, index_r, index_c] = True
    return out, masks


def window_index(rows: torch.Tensor, cols: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Row and column indices (N, 4, 4) of each image's window, from its top-left (``rows``, ``cols``) (N,)."""
    offsets = torch.arange(PATTERN_SIZE)
    index_r = rows.long().view(-1, 1, 1) + offsets.view(1, -1, 1)
    index_c = cols.long().view(-1, 1, 1) + offsets.view(1, 1, -1)
    return index_r.expand(-1, PATTERN_SIZE, PATTERN_SIZE), index_c.expand(-1, PATTERN_SIZE, PATTERN_SIZE)


def window_corners(masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Top-left (rows, cols) int64 (N,) of each mask's window; DatasetError unless each mask is one 4 x 4 square.

    masks: bool (N, 1, H, W), as the planted datasets hold.
    """
    if masks.dim() != 4 or masks.shape[1] != 1 or masks.dtype != torch.bool:
        raise DatasetError(f"planted masks are bool (N, 1, H, W), got {masks.dtype} {tuple(masks.shape)}")
    rows = masks[:, 0].any(2).float().argmax(1)
    cols = masks[:, 0].any(1).float().argmax(1)
    if len(rows) and (int(rows.max()) > masks.shape[2] - PATTERN_SIZE or int(cols.max()) > masks.shape[3] - PATTERN_SIZE):
        raise DatasetError("a planted mask reaches past the image; use the masks of a planted dataset")
    square = torch.zeros_like(masks)
    index_r, index_c = window_index(rows, cols)
    square[torch.arange(len(rows)).view(-1, 1, 1), 0, index_r, index_c] = True
    if not torch.equal(square, masks):
        bad = (square != masks).flatten(1).any(1).nonzero().flatten()[:10].tolist()
        raise DatasetError(f"the masks of images {bad} are not one {PATTERN_SIZE} x {PATTERN_SIZE} square each; "
                           "use the masks of a planted dataset (fashion-mnist-shortcut or fashion-mnist-decoy)")
    return rows, cols


def pattern_classes(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The class whose pattern each image's window holds, int64 (N,); -1 where it holds none exactly.

    images: float (N, 1, H, W); masks: the planted windows (see :func:`window_corners`).
    """
    rows, cols = window_corners(masks)
    index_r, index_c = window_index(rows, cols)
    windows = images.detach().cpu()[torch.arange(len(rows)).view(-1, 1, 1), 0, index_r, index_c]
    matches = (windows.unsqueeze(1) == patterns().to(windows.dtype).unsqueeze(0)).flatten(2).all(2)  # (N, K)
    return torch.where(matches.any(1), matches.float().argmax(1), torch.full_like(rows, -1))



def garment_masks(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The garments' filled foreground masks (Fashion-MNIST's rule) with the planted windows left out.

    images: float (N, 1, H, W) planted images in [0, 1]; masks: their planted windows, bool (N, 1, H, W).
    Returns bool (N, 1, H, W): the decoy's evidence region (where a model of the garment looks).
    """
    pixels = (images.detach().cpu()[:, 0] * 255).round().to(torch.uint8)
    pixels[masks[:, 0].cpu()] = 0
    garments = torch.from_numpy(fashion_mnist.foreground_masks(pixels.numpy())).unsqueeze(1)
    return garments & ~masks.cpu()
