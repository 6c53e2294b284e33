"""How well a saliency map falls on the object: against a foreground mask or a bounding box.

Maps are float tensors (N, 1, H, W); masks bool tensors (N, 1, H, W), True on the object. Boxes become
masks with :func:`boxes_to_masks`. Results are float64 arrays (N,), NaN for an image whose mask is empty or
whose map is degenerate in a way that leaves the measure undefined.

Dilation: a saliency map of a good model often lights up the object's edge and the pixels just outside it
(where a filter sees the contour), so the study measures on the mask grown by :data:`DEFAULT_DILATION`
pixels (:func:`dilate`). The functions' own defaults keep the mask as given (``tolerance=0``,
``dilation=0``).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from binsight.metrics._checks import MetricError, check_maps, check_masks

DEFAULT_DILATION = 2
"""Pixels by which the study grows an object mask (a disc of radius 2: about 7 % of a 28 x 28 image's
side), so that a map on the object's contour counts as on the object."""

BoxesLike = torch.Tensor | np.ndarray | Sequence[Sequence[float]] | Sequence[Sequence[Sequence[float]]]


def pointing_game(maps: torch.Tensor, masks: torch.Tensor, tolerance: int = 0) -> np.ndarray:
    """Whether each map's maximum falls on the object: 1 (hit), 0 (miss), in between for tied maxima.

    A pixel counts as on the object when it lies within ``tolerance`` pixels (Euclidean distance) of a
    mask pixel: the mask is dilated by a disc of that radius (``skimage.morphology.disk``); 0 keeps the mask.
    Ties: when several pixels share the maximum, the score is the fraction of them on the object - the
    chance that one of them drawn at random hits. So a unique maximum scores 0 or 1, and a constant map
    scores the object's share of the image (chance level) rather than a free hit. (Quantus' ``PointingGame``
    counts a hit when any maximal pixel is on the object; the two agree whenever the maximum is unique.)
    NaN where the mask is empty or the map has NaN values.
    Reference: Zhang et al., "Top-down neural attention by excitation backprop", IJCV 2018.
    """
    maps = check_maps(maps, on_device=True)
    masks = check_masks(masks, maps.shape)
    if int(tolerance) != tolerance or tolerance < 0:
        raise MetricError(f"tolerance is a distance in whole pixels, >= 0; got {tolerance}")
    values = maps.flatten(1)
    objects = dilate(masks, int(tolerance)).to(maps.device).flatten(1)
    is_max = values == values.amax(1, keepdim=True)  # none for a map with a NaN: the result is NaN
    hits, ties = (is_max & objects).sum(1).double(), is_max.sum(1).double()
    result = torch.where(ties > 0, hits / ties.clamp_min(1), torch.nan)
    return torch.where(objects.any(1), result, torch.nan).cpu().numpy()


def dilate(masks: torch.Tensor, radius: int) -> torch.Tensor:
    """Masks (N, 1, H, W) grown by ``radius`` whole pixels: bool tensor of the same shape, on the CPU.

    A pixel is in the grown mask when it lies within Euclidean distance ``radius`` of a mask pixel
    (binary dilation by the disc x^2 + y^2 <= radius^2, as ``skimage.morphology.disk(radius)``, outside the
    image counting as empty; each image apart, all at once as one convolution in torch). 0 returns the
    masks as given.
    """
    if not isinstance(radius, (int, np.integer)) or isinstance(radius, bool) or radius < 0:
        raise MetricError(f"the dilation radius is a distance in whole pixels, >= 0; got {radius!r}")
    masks = check_masks(masks, masks.shape if isinstance(masks, torch.Tensor) else ())
    if masks.dim() != 4 or masks.shape[1] != 1:
        raise MetricError(f"masks must have shape (N, 1, H, W), got {tuple(masks.shape)}")
    if radius == 0:
        return masks.clone()
    offsets = torch.arange(-radius, radius + 1, dtype=torch.float32)
    disc = ((offsets[:, None] ** 2 + offsets[None, :] ** 2) <= radius**2).float()
    hits = torch.nn.functional.conv2d(masks.float(), disc[None, None], padding=int(radius))
    return hits > 0.5  # sums of 0/1 values: exact


def energy_inside(maps: torch.Tensor, masks: torch.Tensor, *, dilation: int = 0) -> np.ndarray:
    """Fraction of each map's energy on the object, in [0, 1]: sum of |m| on the mask / sum of |m|.

    Energy is the absolute value of the map (a non-negative map is used as is). The mask is first grown by
    ``dilation`` pixels (:func:`dilate`; the study uses :data:`DEFAULT_DILATION`). NaN for an all-zero map
    or an empty mask.
    Reference: the energy-based pointing game of Wang et al., "Score-CAM", CVPR workshops 2020; Quantus'
    ``RelevanceMassAccuracy`` (Arras et al. 2022) is the same ratio on the map's values.
    """
    maps = check_maps(maps, on_device=True)
    inside = dilate(check_masks(masks, maps.shape), dilation).to(maps.device).flatten(1)
    energy = maps.flatten(1).abs()
    total = energy.sum(1)
    ok = torch.isfinite(total) & (total != 0) & inside.any(1)
    on_object = (energy * inside).sum(1)
    return torch.where(ok, on_object / torch.where(ok, total, 1.0), torch.nan).cpu().numpy()


def boxes_to_masks(boxes: BoxesLike, shape: Sequence[int]) -> torch.Tensor:
    """Bounding boxes to bool masks (N, 1, H, W), True inside any of an image's boxes.

    boxes: either (N, 4) - one box per image - or a sequence of N arrays (K_i, 4) - several boxes per image,
        merged. A box is (x_min, y_min, x_max, y_max) in pixels, x along the width and y along the height,
        half-open: it covers columns x_min <= x < x_max and rows y_min <= y < y_max. Fractions are rounded
        to the nearest pixel edge; parts outside the image are cut off.
    shape: (H, W), or a full (N, 1, H, W) whose last two sizes are used.
    """
    height, width = _image_size(shape)
    per_image = _boxes_per_image(boxes)
    masks = torch.zeros(len(per_image), 1, height, width, dtype=torch.bool)
    for i, image_boxes in enumerate(per_image):
        for x_min, y_min, x_max, y_max in np.rint(image_boxes).astype(int):
            if x_max <= x_min or y_max <= y_min:
                raise MetricError(
                    f"box {(x_min, y_min, x_max, y_max)} of image {i} is empty; boxes are (x_min, y_min, x_max, y_max)"
                )
            masks[i, 0, max(y_min, 0) : max(y_max, 0), max(x_min, 0) : max(x_max, 0)] = True
    return masks


def _image_size(shape: Sequence[int]) -> tuple[int, int]:
    shape = tuple(int(s) for s in shape)
    if len(shape) not in (2, 4) or min(shape[-2:]) < 1:
        raise MetricError(f"shape must be (H, W) or (N, 1, H, W), got {shape}")
    return shape[-2], shape[-1]


def _boxes_per_image(boxes: BoxesLike) -> list[np.ndarray]:
    """A list of float arrays (K_i, 4), one per image."""
    if isinstance(boxes, torch.Tensor):
        boxes = boxes.detach().cpu().numpy()
    if isinstance(boxes, np.ndarray) and boxes.ndim == 2:
        per_image = [row[None, :] for row in boxes]
    else:
        per_image = [np.asarray(b, dtype=np.float64).reshape(-1, 4) if np.size(b) % 4 == 0 else None for b in boxes]
    if not per_image or any(b is None or not np.isfinite(b).all() for b in per_image):
        raise MetricError(
            "boxes must be (N, 4) or a list of N arrays (K, 4) of finite (x_min, y_min, x_max, y_max) in pixels"
        )
    return [np.asarray(b, dtype=np.float64) for b in per_image]
