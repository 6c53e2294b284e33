"""The planted-evidence datasets: determinism, masks on exactly the planted pixels, labels by scenario."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.stats import chi2_contingency

from binsight.data import DatasetError, available, load_dataset, planted
from binsight.data import fashion_mnist

DEBIAN = Path("/usr/share/datasets/fashion-mnist")
needs_data = pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed "
                                "(scripts/setup.sh installs it)")
P_FLOOR = 1e-3
"""A chi-square p-value above this reads "independent"; the dependent controls give p far below it."""


@pytest.fixture(scope="module")
def base():
    return fashion_mnist.load("test", root=DEBIAN)


@pytest.fixture(scope="module")
def shortcut():
    return load_dataset("fashion-mnist-shortcut", split="test", root=DEBIAN)


@pytest.fixture(scope="module")
def decoy():
    return load_dataset("fashion-mnist-decoy", split="test", root=DEBIAN)


def chi_square_p(a: torch.Tensor, b: torch.Tensor, k: int = 10) -> float:
    """p-value of the chi-square test of independence of two class arrays (N,) with k classes each."""
    table = np.zeros((k, k), dtype=np.int64)
    np.add.at(table, (a.numpy(), b.numpy()), 1)
    return float(chi2_contingency(table).pvalue)


def test_patterns_are_distinct_symmetric_and_never_read_one_pixel_away():
    pats = planted.patterns()
    assert pats.shape == (10, 4, 4) and set(pats.unique().tolist()) == {0.0, 1.0}
    assert torch.equal(pats, pats.flip(2))  # the training flip leaves every pattern as it is
    for a, b in itertools.combinations(range(10), 2):
        assert int((pats[a] != pats[b]).sum()) >= 4
    for a, b in itertools.product(range(10), repeat=2):
        canvas = torch.zeros(12, 12)
        canvas[4:8, 4:8] = pats[a]
        for r, c in itertools.product(range(9), repeat=2):
            if (r, c) != (4, 4):
                assert not torch.equal(canvas[r:r + 4, c:c + 4], pats[b]), (a, b, r, c)


def test_registered_like_any_dataset():
    assert {"fashion-mnist-shortcut", "fashion-mnist-decoy"} <= set(available())


def test_placement_prefers_background_away_from_the_edge_then_background_then_the_faintest_garment():
    rng = np.random.default_rng(0)
    pixels = np.zeros((3, 10, 10), np.uint8)
    garments = np.zeros((3, 10, 10), bool)
    garments[0, :, 6:] = True  # room with a ring only at rows 1-5, column 1 (window cols 1-4, ring 0-5)
    pixels[1, 1:, :] = 200  # background only in row 0: windows there touch the edge and the garment
    pixels[1, 0, :] = 0
    pixels[1, :4, 6:] = 0  # ... except a background block at the top right, touching the edge
    pixels[2] = 200
    pixels[2, 6:, 6:] = 50  # every window overlaps the garment; the faintest is the bottom right block
    garments[1:] = pixels[1:] > planted.BACKGROUND_MAX
    rows, cols = planted.placements(pixels, garments, rng)
    assert 1 <= rows[0] <= 5 and cols[0] == 1
    assert (rows[1], cols[1]) == (0, 6)
    assert (rows[2], cols[2]) == (6, 6)


def test_stamp_writes_the_pattern_and_its_mask_only_there():
    images = torch.full((2, 1, 8, 8), 0.5)
    out, masks = planted.stamp(images, torch.tensor([0, 4]), torch.tensor([1, 4]), torch.tensor([3, 7]))
    assert torch.equal(images, torch.full((2, 1, 8, 8), 0.5))  # input left as it was
    assert torch.equal(out[0, 0, 0:4, 1:5], planted.patterns()[3]) and torch.equal(out[1, 0, 4:, 4:], planted.patterns()[7])
    assert torch.equal(out[~masks], images[~masks]) and masks.flatten(1).sum(1).tolist() == [16, 16]
    assert planted.pattern_classes(out, masks).tolist() == [3, 7]
    assert planted.pattern_classes(images, masks).tolist() == [-1, -1]


def test_masks_that_are_not_one_window_each_are_refused():
    masks = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    masks[0, 0, :3, :4] = True
    with pytest.raises(DatasetError, match="not one 4 x 4 square"):
        planted.window_corners(masks)


@needs_data
def test_deterministic_by_seed(shortcut):
    again = load_dataset("fashion-mnist-shortcut", split="test", root=DEBIAN)
    other = load_dataset("fashion-mnist-shortcut", split="test", root=DEBIAN, seed=1)
    assert again.checksum() == shortcut.checksum() and torch.equal(again.masks, shortcut.masks)
    assert other.checksum() != shortcut.checksum() and not torch.equal(other.masks, shortcut.masks)


@needs_data
@pytest.mark.parametrize("name", ["shortcut", "decoy"])
def test_masks_cover_exactly_the_planted_pixels(request, base, name):
    data = request.getfixturevalue(name)
    assert data.masks.dtype == torch.bool and data.masks.shape == (len(base), 1, 28, 28)
    assert data.masks.flatten(1).sum(1).eq(16).all()
    changed = data.images != base.images
    assert not (changed & ~data.masks).any()  # outside the window every pixel is the garment image's own
    rows, cols = planted.window_corners(data.masks)
    assert (planted.pattern_classes(data.images, data.masks) >= 0).all()  # the window holds a whole pattern
    off_garment = ~(base.masks & data.masks).flatten(1).any(1)
    assert off_garment.float().mean() > 0.99  # off the garment for all but the few images without room
    assert len(rows) == len(base)


@needs_data
def test_shortcut_label_is_the_pattern_and_independent_of_the_garment(base, shortcut):
    assert torch.equal(planted.pattern_classes(shortcut.images, shortcut.masks), shortcut.labels)
    assert chi_square_p(base.labels, shortcut.labels) > P_FLOOR
    assert chi_square_p(base.labels, base.labels) < 1e-12  # the test tells a dependent pair


@needs_data
def test_decoy_label_is_the_garment_and_independent_of_the_pattern(base, decoy):
    assert torch.equal(decoy.labels, base.labels)
    pattern = planted.pattern_classes(decoy.images, decoy.masks)
    assert chi_square_p(pattern, decoy.labels) > P_FLOOR
    assert chi_square_p(pattern, pattern) < 1e-12


@needs_data
def test_one_image_two_label_rules(base, shortcut, decoy):
    assert torch.equal(shortcut.images, decoy.images) and torch.equal(shortcut.masks, decoy.masks)
    assert torch.equal(decoy.labels, base.labels) and not torch.equal(shortcut.labels, decoy.labels)


@needs_data
def test_bad_split_and_seed_are_clear_errors():
    with pytest.raises(DatasetError, match="no split 'val'"):
        load_dataset("fashion-mnist-decoy", split="val", root=DEBIAN)
    with pytest.raises(DatasetError, match="seed must be a whole number"):
        load_dataset("fashion-mnist-decoy", split="test", root=DEBIAN, seed=-1)


@needs_data
def test_garment_masks_are_the_garments_own_without_the_pattern(base, decoy):
    garments = planted.garment_masks(decoy.images, decoy.masks)
    assert not (garments & decoy.masks).any()
    off = ~(base.masks & decoy.masks).flatten(1).any(1)  # where the pattern overlaps a garment, holes may differ
    assert off.float().mean() > 0.99 and torch.equal(garments[off], base.masks[off])
