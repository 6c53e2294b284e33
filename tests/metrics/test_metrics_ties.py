"""Known answers for tied map values in the ranking measures (deletion / insertion, ROAD): a point whose
pixel count falls inside a group of tied values is read on the straight line between the group kept and
the group removed, so no order of the tied pixels moves a result; a map without ties is evaluated at its
nominal counts exactly (binsight.metrics.faithfulness)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from binsight.metrics import deletion_insertion, noisy_linear_imputation, road
from binsight.metrics import faithfulness
from binsight.metrics.faithfulness import pixel_ranks

PERCENTAGES = (10, 20, 30, 40, 50, 60, 70, 80, 90)


def gradcam_like(n: int = 4, size: int = 12, seed: int = 0) -> torch.Tensor:
    """Maps (n, 1, size, size) like GradCAM's after ReLU: a smooth field clipped at 0 (about 45 % zeros),
    its positive values quantised to 8 levels (more tie groups, inside the ranking too)."""
    rng = np.random.default_rng(seed)
    field = scipy.ndimage.gaussian_filter(rng.standard_normal((n, size, size)), (0, 2, 2))
    field = np.maximum(field - np.quantile(field, 0.45, axis=(1, 2), keepdims=True), 0)
    levels = np.ceil(8 * field / field.max(axis=(1, 2), keepdims=True))
    return torch.from_numpy(levels[:, None])


def conv_model(channels: int = 2, size: int = 12) -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(channels, 4, 3, padding=1), nn.Tanh(), nn.Flatten(),
                         nn.Linear(4 * size * size, 3)).eval()


def seeded_ranks(seed: int | None):
    return lambda maps, *_: pixel_ranks(maps, tie_seed=seed)


def all_measures(model, images, maps, targets, batch_size):
    di = deletion_insertion(model, images, maps, targets, steps=25, substrate="black", insertion_substrate="blur",
                            batch_size=batch_size)
    morf = road(model, images, maps, targets, percentages=PERCENTAGES, seed=3, batch_size=batch_size)
    lerf = road(model, images, maps, targets, percentages=PERCENTAGES, order="lerf", seed=3, batch_size=batch_size)
    return {"deletion": di.deletion, "insertion": di.insertion, "road_morf": morf.probability,
            "road_lerf": lerf.probability, "correct": morf.correct}


def test_no_order_of_tied_pixels_moves_deletion_insertion_or_road(monkeypatch):
    maps = gradcam_like()
    assert 0.4 < float((maps == 0).double().mean()) < 0.5
    images = torch.rand(4, 2, 12, 12, generator=torch.Generator().manual_seed(1))
    model, targets = conv_model(), [0, 1, 2, 0]
    runs = []
    for seed, batch_size in ((None, 512), (0, 512), (1, 7), (2, 64)):  # row-major, then three random orders
        monkeypatch.setattr(faithfulness, "pixel_ranks", seeded_ranks(seed))
        runs.append(all_measures(model, images, maps, targets, batch_size))
    for run in runs[1:]:
        for name, values in run.items():
            np.testing.assert_allclose(values, runs[0][name], rtol=0, atol=1e-6, err_msg=name)
    # the ties matter: ROAD at the nominal counts, the tied pixels cut in two of those orders, differs
    count = round(0.7 * 144)
    nominal = []
    for seed in (0, 1):
        removed = pixel_ranks(maps, tie_seed=seed) < count
        imputed = noisy_linear_imputation(images, removed, noise=0.0)
        nominal.append(torch.softmax(model(imputed).double(), 1)[torch.arange(4), targets].detach().numpy())
    assert np.abs(nominal[0] - nominal[1]).max() > 1e-3


class LeftColumnsModel(nn.Module):
    """Two classes; class 1's logit is 10 x the mean of the left half's pixels."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = 10 * x[..., :, : x.shape[-1] // 2].mean((1, 2, 3))
        return torch.stack([torch.zeros_like(z), z], 1)


class Counting(nn.Module):
    """Wraps a model and counts the images it sees."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model, self.seen = model, 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += x.shape[0]
        return self.model(x)


def test_a_tie_over_the_whole_map_reads_the_straight_line_between_nothing_and_everything_removed():
    images, flat = torch.ones(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    model = Counting(LeftColumnsModel())
    curves = deletion_insertion(model, images, flat, 1, steps=8, substrate="black", insertion_substrate="black")
    kept = 1 / (1 + np.exp(-10.0))  # class 1 on the whole image; 0.5 with every pixel black
    line = (1 - np.arange(9) / 8) * kept + np.arange(9) / 8 * 0.5
    np.testing.assert_allclose(curves.deletion[0], line, rtol=0, atol=1e-12)
    np.testing.assert_allclose(curves.insertion[0], line[::-1], rtol=0, atol=1e-12)
    assert model.seen == 4  # each curve evaluated at 0 and 64 pixels only, not at its 9 steps
    # ROAD: every pixel removed is each channel's mean (1 here), so the image is unchanged at both ends
    morf = road(model, images, flat, 1, percentages=(25, 50, 100), noise=0.0)
    np.testing.assert_allclose(morf.probability[0], kept, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(morf.correct, 1.0)


def test_a_map_without_ties_is_evaluated_at_its_nominal_counts_exactly():
    g = torch.Generator().manual_seed(2)
    images = torch.rand(3, 2, 12, 12, generator=g)
    maps = torch.rand(3, 1, 12, 12, generator=g, dtype=torch.float64)
    model, targets = conv_model(), torch.tensor([2, 0, 1])
    counts = np.rint(np.array(PERCENTAGES) / 100 * 144).astype(int)
    removed = torch.cat([pixel_ranks(maps[i:i + 1]) < int(c) for i in range(3) for c in counts])
    imputed = noisy_linear_imputation(images.repeat_interleave(len(counts), 0), removed, noise=0.01,
                                      rng=np.random.default_rng(5))
    with torch.no_grad():
        expected = torch.softmax(model(imputed).double(), 1)[torch.arange(3 * len(counts)),
                                                            targets.repeat_interleave(len(counts))]
    found = road(model, images, maps, targets, percentages=PERCENTAGES, seed=5)
    np.testing.assert_array_equal(found.probability, expected.numpy().reshape(3, -1))
    assert set(np.unique(found.correct)) <= {0.0, 1.0}


def test_a_point_between_two_tie_groups_is_not_interpolated():
    maps = torch.from_numpy(np.repeat([2.0, 1.0], 32).reshape(1, 1, 8, 8))  # two groups of 32 pixels
    points = faithfulness._Points.of(maps, torch.tensor([0, 16, 32, 48, 64]))
    np.testing.assert_array_equal(points.weight, [[0, 0.5, 0, 0.5, 0]])
    assert points.count.tolist() == [0, 32, 64]  # 16 reads 0 and 32, 48 reads 32 and 64: each evaluated once
    np.testing.assert_array_equal(points.lower, [[0, 0, 1, 1, 2]])
    np.testing.assert_array_equal(points.upper, [[0, 1, 1, 2, 2]])


@pytest.mark.parametrize("order", ["morf", "lerf"])
def test_road_with_ties_does_not_depend_on_the_batch_size(order):
    maps = gradcam_like(n=3, seed=4)
    images = torch.rand(3, 2, 12, 12, generator=torch.Generator().manual_seed(6))
    runs = [road(conv_model(), images, maps, [1, 2, 0], percentages=PERCENTAGES, order=order, batch_size=size)
            for size in (1, 5, 1000)]
    for run in runs[1:]:
        np.testing.assert_allclose(run.probability, runs[0].probability, rtol=0, atol=1e-7)
