"""NeuroMask's starting draw: per model, a second independent draw (``start``) for the seed check, the
default stream unchanged, and the masks of two models no more alike than one model's from two starts."""

from __future__ import annotations

import copy
import warnings

import pytest
import torch
from torch import nn

from binsight._utils import BinsightWarning, derived_seed, model_digest
from binsight.explain.base import pixel_correlation
from binsight.explain.neuromask import PRESETS, NeuroMask, NeuroMaskError, initial_w, start_seed
from binsight.metrics.similarity import spearman

SIZE = 12
pytestmark = pytest.mark.usefixtures("one_thread")  # tests/explain/conftest.py


class Region(nn.Module):
    """A hand-built classifier that reads one square of the image: class 0's logit is 8 x (the mean of the
    pixels kept in the square) - 4, class 1's is 0. NeuroMask's mask of class 0 keeps the square and hides the
    rest, whatever its start (given enough iterations): the model fixes the mask."""

    def __init__(self, rows: slice, cols: slice):
        super().__init__()
        weight = torch.zeros(1, 1, SIZE, SIZE)
        weight[:, :, rows, cols] = 1.0
        self.register_buffer("weight", weight / weight.sum())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kept = (x * self.weight).sum((1, 2, 3))
        return torch.stack([8 * kept - 4, torch.zeros_like(kept)], 1)


def images(n: int = 4) -> torch.Tensor:
    return 0.5 + 0.5 * torch.rand(n, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(0))


def masks(model: nn.Module, iterations: int, **options) -> torch.Tensor:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", BinsightWarning)  # few iterations leave masks near the start on purpose
        return NeuroMask(model, iterations=iterations, return_history=False, **options).attribute(images(), 0)


def test_two_models_masks_are_no_more_alike_than_one_models_from_two_starts_unless_identical():
    top_left, overlapping = Region(slice(0, 6), slice(0, 6)), Region(slice(0, 6), slice(3, 9))
    bottom_right = Region(slice(6, 12), slice(6, 12))
    first, second = masks(top_left, 1000), masks(top_left, 1000, start=1)
    start_to_start = spearman(first, second).mean()
    assert start_to_start > 0.6  # the model fixes its mask: two starts agree
    for other in (overlapping, bottom_right):
        assert spearman(first, masks(other, 1000)).mean() < start_to_start
    # identical weights: one start, identical masks (and the same second start)
    twin = copy.deepcopy(top_left)
    assert torch.equal(masks(twin, 1000), first) and torch.equal(masks(twin, 1000, start=1), second)


def test_a_start_shared_by_two_models_makes_them_look_alike_which_per_model_starts_do_not():
    """The failure the per-model start removes: after 300 iterations the masks still show their start, so
    two different models from one shared draw look far more alike than one model from two starts."""
    a, b = Region(slice(0, 6), slice(0, 6)), Region(slice(6, 12), slice(6, 12))
    start_to_start = spearman(masks(a, 300), masks(a, 300, start=1)).mean()
    shared = spearman(masks(a, 300, shared_start=True), masks(b, 300, shared_start=True)).mean()
    own = spearman(masks(a, 300), masks(b, 300)).mean()
    assert shared > start_to_start + 0.5
    assert own < start_to_start + 0.2


def test_the_second_start_differs_from_the_first_and_is_deterministic_by_seed():
    model = Region(slice(0, 6), slice(0, 6))
    first, second = masks(model, 20), masks(model, 20, start=1)
    assert (pixel_correlation(first, second).abs() < 0.3).all()  # near two unrelated starts
    assert torch.equal(masks(model, 20, start=1), second)
    assert (pixel_correlation(masks(model, 20, start=1, seed=1), second).abs() < 0.3).all()
    assert (pixel_correlation(masks(model, 20, start=2), second).abs() < 0.3).all()
    shared = [masks(m, 20, start=1, shared_start=True) for m in (model, Region(slice(6, 12), slice(6, 12)))]
    assert (pixel_correlation(*shared) > 0.9).all()  # shared_start: one second draw for every model
    assert start_seed(0, model, 1) != start_seed(0, model, 0) and start_seed(0, None, 1) != start_seed(0, None, 0)


def test_the_default_stream_is_the_one_before_the_start_option():
    """start = 0 is the draw of the code before the option, derived_seed(seed, model_digest(model)) (and
    the seed itself for a shared start): the mask's measured start is that draw's mask."""
    model, x = Region(slice(0, 6), slice(0, 6)), images()
    for seed in (0, 3):
        assert start_seed(seed, model) == start_seed(seed, model, 0) == derived_seed(seed, model_digest(model))
        assert start_seed(seed, None, 0) == seed
        explainer = NeuroMask(model, iterations=20, seed=seed, return_history=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", BinsightWarning)
            ex = explainer.explain(x, 0)
        w0 = initial_w((SIZE, SIZE), range(len(x)), derived_seed(seed, model_digest(model)))
        before = torch.sigmoid(w0 / PRESETS["cifar"].temperature)
        assert torch.equal(ex.extras["start_correlation"], pixel_correlation(ex.maps, before))
        assert torch.equal(ex.maps, masks(model, 20, seed=seed, start=0))
    assert explainer.params()["start"] == 0


@pytest.mark.parametrize("start", [-1, True, 1.0, "1"])
def test_a_bad_start_is_refused(start):
    with pytest.raises(NeuroMaskError, match="start must be a non-negative integer"):
        NeuroMask(Region(slice(0, 6), slice(0, 6)), start=start)
