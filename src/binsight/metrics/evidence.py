"""Ground truth on planted data: what a model provably relies on, and whether its maps find it.

The planted datasets (:mod:`binsight.data.planted`) put a 4 x 4 class pattern into every image. Whether a
trained model uses it is not assumed but tested by intervention (:func:`intervention_test`):

- accuracy **with** the pattern (the images as they are);
- accuracy with the pattern **removed**: its window filled with the local background, the median of
  the 1-pixel ring around it (:func:`remove_pattern`);
- the share of predictions that **follow a swapped-in** pattern of another class (:func:`swap_pattern`;
  the other class drawn uniformly among the K - 1 others, seeded), and the shares of predictions that
  removal and swapping change.

Decision (each condition a :class:`Check` on a share of images, decided by its exact binomial interval):

- ``shortcut`` (the pattern is the label's only evidence): the model relies on the pattern when it has
  learnt something (accuracy above chance + :data:`LEARNED_MARGIN`), removal drops it to near chance
  (below chance + :data:`NEAR_CHANCE_MARGIN`) and its predictions follow a swapped pattern on more than
  :data:`FOLLOW_MIN` of the images.
- ``decoy`` (the pattern is irrelevant): the model ignores the pattern when it has learnt something and
  neither removal nor swapping changes more than :data:`UNCHANGED_MAX` of its predictions.

A check is *held* when its whole interval is on the right side of its bound, *not held* when the whole
interval is on the wrong side, else *inconclusive*; the test is *passed* when every check holds,
*failed* when one does not hold, else *inconclusive*. A model that does not pass its scenario's test has
no known answer and is to be left out of a ground-truth verdict.

Evidence measures (:func:`evidence`, maps (N, 1, H, W) and ground-truth masks bool (N, 1, H, W)): the
share of a map's mass (``|map|``) on the region against the region's share of the image (a map that
ignores the model spreads its mass over the image and puts about the region's area on it, unless it
follows something of the image that coincides with the region: :func:`edge_map`, an edge detector of the
image, puts about 3 times the area on the pattern), and the pointing game. On the decoy the mask is the
irrelevant pattern, so the same mass is the mass wrongly put on it.

References: Kim et al., "Sanity simulations for saliency methods", ICML 2022 (arXiv 2021); Adebayo et al.,
"Post hoc explanations may be ineffective for detecting unknown spurious correlation", ICLR 2022; Zhou et
al., "Do feature attribution methods correctly attribute features?", AAAI 2022; Clark et al., "XAI-TRIS:
non-linear image benchmarks to quantify false positive post-hoc attribution of feature importance",
Machine Learning 2024.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import binomtest
from torch import nn

from binsight._utils import batch_slices, call_model, preserved_model
from binsight.data import planted
from binsight.metrics._checks import MetricError, check_images, check_maps, check_masks
from binsight.metrics.localisation import dilate, energy_inside, pointing_game

SCENARIOS = ("shortcut", "decoy")

CONFIDENCE = 0.95
"""Level of the exact (Clopper-Pearson) binomial interval of every share a check decides on."""
LEARNED_MARGIN = 0.10
"""Accuracy with the pattern must be above chance by this much: a model at chance relies on nothing, and
its indifference to the pattern says nothing."""
NEAR_CHANCE_MARGIN = 0.10
"""Shortcut: accuracy without the pattern must be below chance + this (0.2 for 10 classes): with the only
evidence gone the model can only guess; 0.1 above chance leaves room for a prior over classes or a weak
pull of garments that look like a pattern, and is the benchmark's bound on trained models."""
FOLLOW_MIN = 0.90
"""Shortcut: a swapped-in pattern must carry the prediction on more than this share of the images, so the
pattern alone (not the garment, not the pattern's place) sets the class almost everywhere."""
UNCHANGED_MAX = 0.02
"""Decoy: removing or swapping the pattern may change at most this share of the predictions; a few
images whose garment is ambiguous may flip on any small change of their pixels, a model reading the
pattern flips about (K - 1) / K of them."""


@dataclass(frozen=True)
class Check:
    """One condition of an intervention test: a share of images against a bound.

    name: what is checked (e.g. "follows_swap"). count, n: images counted and images in all; estimate =
    count / n. low, high: its exact binomial interval at :data:`CONFIDENCE`. bound: the share it is
    compared with; below: whether it must lie below the bound (else above). status: "held", "not held"
    or "inconclusive".
    """

    name: str
    count: int
    n: int
    estimate: float
    low: float
    high: float
    bound: float
    below: bool
    status: str


@dataclass(frozen=True)
class InterventionResult:
    """What a model relies on, by intervention on its planted images; every share in [0, 1].

    scenario: "shortcut" or "decoy". n_images: images tested. chance: 1 / number of classes.
    accuracy / accuracy_removed / accuracy_swapped: of the label, with the pattern, removed and swapped.
    follows_swap: predictions equal to the swapped-in pattern's class. changed_by_removal /
    changed_by_swap: predictions that differ from those with the pattern. checks: the scenario's
    conditions; status: "passed" (the model relies on what its scenario says), "failed" or "inconclusive".
    seed: the seed the swapped-in classes were drawn with.
    """

    scenario: str
    n_images: int
    chance: float
    accuracy: float
    accuracy_removed: float
    accuracy_swapped: float
    follows_swap: float
    changed_by_removal: float
    changed_by_swap: float
    checks: tuple[Check, ...]
    status: str
    seed: int

    @property
    def passed(self) -> bool:
        """Whether the model provably relies on what its scenario says (a known answer for its maps)."""
        return self.status == "passed"

    def to_json(self) -> dict:
        """A JSON-ready dict (checks as a list of dicts); :meth:`from_json` reads it back."""
        record = asdict(self)
        record["checks"] = [asdict(c) for c in self.checks]
        return record

    @classmethod
    def from_json(cls, record: dict) -> InterventionResult:
        """The result :meth:`to_json` wrote (e.g. read back from a run folder's models.json)."""
        return cls(**{**record, "checks": tuple(Check(**c) for c in record["checks"])})


def remove_pattern(images: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """The images with each planted window filled with its local background.

    The fill is the median of the window's 1-pixel ring (the 8-neighbourhood of the window, inside the
    image), per image and channel. images: float (N, C, H, W); masks: bool (N, 1, H, W), one 4 x 4 window
    per image (:func:`binsight.data.planted.window_corners`). Returns a new tensor.
    """
    planted.window_corners(masks.cpu())
    window = masks.to(images.device)
    ring = (F.max_pool2d(window.float(), 3, stride=1, padding=1) > 0) & ~window
    values = images.masked_fill(~ring, float("nan")).flatten(2)  # (N, C, H * W), NaN off the ring
    fill = values.nanmedian(dim=2).values  # (N, C)
    return torch.where(window, fill[:, :, None, None], images)


def swap_pattern(images: torch.Tensor, masks: torch.Tensor, classes: torch.Tensor) -> torch.Tensor:
    """The images with the pattern of ``classes[i]`` written into each planted window (all channels).

    images: float (N, C, H, W); masks: bool (N, 1, H, W), one 4 x 4 window each; classes: int (N,).
    Returns a new tensor.
    """
    rows, cols = planted.window_corners(masks.cpu())
    index_r, index_c = planted.window_index(rows, cols)
    out = images.clone()
    values = planted.patterns().to(images.device, images.dtype)[classes.long().cpu()]  # (N, 4, 4)
    batch = torch.arange(len(rows)).view(-1, 1, 1)
    for channel in range(images.shape[1]):
        out[batch, channel, index_r, index_c] = values
    return out


def swapped_classes(current: torch.Tensor, num_classes: int, seed: int) -> torch.Tensor:
    """For each image a class other than ``current[i]`` (int64 (N,)), uniform among the other K - 1."""
    offsets = np.random.default_rng([seed, 0x5A9]).integers(1, num_classes, size=len(current))
    return (current.cpu() + torch.from_numpy(offsets)) % num_classes


def predictions(model: nn.Module, images: torch.Tensor, batch_size: int = 256) -> tuple[torch.Tensor, int]:
    """(top-1 classes int64 (N,) on the CPU, number of classes K): the model runs in eval mode, without
    gradients, and is left as it was. images go to the device of the model's first parameter (the CPU
    for a model without parameters)."""
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    with torch.no_grad(), preserved_model(model) as net:
        logits = [call_model(net, images[s].to(device), error=MetricError) for s in batch_slices(len(images), batch_size)]
    return torch.cat([part.argmax(1).cpu() for part in logits]), int(logits[0].shape[1])


def intervention_test(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, masks: torch.Tensor,
                      scenario: str, *, seed: int = 0, batch_size: int = 256) -> InterventionResult:
    """Accuracy with, without and with another pattern, and the scenario's decision (module docs).

    images: float (N, C, H, W) planted images; labels: int (N,); masks: their planted windows, bool
    (N, 1, H, W); scenario: "shortcut" or "decoy" (:data:`binsight.data.planted.SCENARIOS` maps a dataset
    name to it); seed: draws the swapped-in classes. Chance is 1 / the model's number of outputs.
    The model is left as it was (eval mode inside).
    """
    if scenario not in SCENARIOS:
        raise MetricError(f"scenario must be one of {SCENARIOS}, got {scenario!r}")
    images = check_images(images)
    masks = check_masks(masks, (images.shape[0], 1, *images.shape[2:]))
    labels = torch.as_tensor(labels).long().cpu()
    if labels.shape != (len(images),):
        raise MetricError(f"labels must be (N,) = ({len(images)},), got {tuple(labels.shape)}")
    current = planted.pattern_classes(images.cpu(), masks)
    if (current < 0).any():
        bad = (current < 0).nonzero().flatten()[:10].tolist()
        raise MetricError(f"images {bad} hold no planted pattern in their window; test images of a planted dataset")
    predicted, k = predictions(model, images, batch_size)
    swap_to = swapped_classes(current, k, seed)
    removed = predictions(model, remove_pattern(images, masks), batch_size)[0]
    swapped = predictions(model, swap_pattern(images, masks, swap_to), batch_size)[0]
    counts = {"accuracy": int((predicted == labels).sum()), "accuracy_removed": int((removed == labels).sum()),
              "accuracy_swapped": int((swapped == labels).sum()), "follows_swap": int((swapped == swap_to).sum()),
              "changed_by_removal": int((removed != predicted).sum()),
              "changed_by_swap": int((swapped != predicted).sum())}
    checks = scenario_checks(scenario, counts, len(images), 1.0 / k)
    return InterventionResult(scenario=scenario, n_images=len(images), chance=1.0 / k,
                              **{name: c / len(images) for name, c in counts.items()},
                              checks=checks, status=combined_status(checks), seed=int(seed))


def scenario_checks(scenario: str, counts: dict[str, int], n: int, chance: float) -> tuple[Check, ...]:
    """The conditions of ``scenario`` on ``counts`` (images counted per share, of ``n``) (module docs)."""
    learned = decide("accuracy", counts["accuracy"], n, chance + LEARNED_MARGIN, below=False)
    if scenario == "shortcut":
        return (learned,
                decide("accuracy_removed", counts["accuracy_removed"], n, chance + NEAR_CHANCE_MARGIN, below=True),
                decide("follows_swap", counts["follows_swap"], n, FOLLOW_MIN, below=False))
    return (learned,
            decide("changed_by_removal", counts["changed_by_removal"], n, UNCHANGED_MAX, below=True),
            decide("changed_by_swap", counts["changed_by_swap"], n, UNCHANGED_MAX, below=True))


def decide(name: str, count: int, n: int, bound: float, *, below: bool) -> Check:
    """A :class:`Check` of the share ``count / n`` against ``bound`` by its exact binomial interval."""
    interval = binomtest(count, n).proportion_ci(CONFIDENCE, method="exact")
    low, high = float(interval.low), float(interval.high)
    if below:
        status = "held" if high < bound else "not held" if low >= bound else "inconclusive"
    else:
        status = "held" if low > bound else "not held" if high <= bound else "inconclusive"
    return Check(name, int(count), int(n), count / n, low, high, float(bound), below, status)


def combined_status(checks: tuple[Check, ...]) -> str:
    """"passed" when every check holds, "failed" when one does not hold, else "inconclusive"."""
    statuses = {c.status for c in checks}
    return "failed" if "not held" in statuses else "passed" if statuses == {"held"} else "inconclusive"


@dataclass(frozen=True)
class Evidence:
    """How much of each map falls on a ground-truth region; float64 arrays (N,).

    mass: share of the map's mass (|map|) on the region, NaN for an all-zero map. area: the region's share
    of the image's pixels. pointing: the pointing game on the region (1 hit, 0 miss, the share on the
    region for tied maxima). lift (mass / area, 1 = no better than spreading the mass evenly) and excess
    (mass - area) are derived.
    """

    mass: np.ndarray
    area: np.ndarray
    pointing: np.ndarray

    @property
    def lift(self) -> np.ndarray:
        return self.mass / self.area

    @property
    def excess(self) -> np.ndarray:
        return self.mass - self.area


def edge_map(images: torch.Tensor) -> torch.Tensor:
    """A map that ignores the model: the Sobel gradient magnitude of each image's channel mean.

    images: float (N, C, H, W) -> float32 maps (N, 1, H, W) (replicated border). On planted data it puts
    several times the pattern's area on the pattern (a bright square on black has strong edges) and the
    same on the shortcut and the decoy data: the floor a map must beat to show it follows the model, not
    the image.
    """
    gray = check_images(images).detach().float().mean(1, keepdim=True)
    padded = F.pad(gray, (1, 1, 1, 1), mode="replicate")
    sobel = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]], device=gray.device)
    kernels = torch.stack([sobel, sobel.T]).unsqueeze(1)  # (2, 1, 3, 3): d/dx, d/dy
    return F.conv2d(padded, kernels).square().sum(1, keepdim=True).sqrt()


def evidence(maps: torch.Tensor, masks: torch.Tensor, *, dilation: int = 0) -> Evidence:
    """Mass share, area and pointing game of ``maps`` (N, 1, H, W) on the region ``masks`` (bool (N, 1, H, W)).

    dilation: grow the region by this many pixels first (:func:`binsight.metrics.localisation.dilate`);
    0 keeps the planted window as it is. On a decoy dataset the region is the irrelevant pattern: its mass
    is the mass wrongly put there (a map that ignores the pattern puts less than its area there).
    """
    maps = check_maps(maps)
    masks = check_masks(masks, maps.shape)
    if not masks.flatten(1).any(1).all():
        raise MetricError("every image needs a non-empty ground-truth region; drop the images without one")
    grown = dilate(masks, dilation)
    area = grown.flatten(1).double().mean(1).numpy()
    return Evidence(mass=energy_inside(maps, grown), area=area, pointing=pointing_game(maps, grown))
