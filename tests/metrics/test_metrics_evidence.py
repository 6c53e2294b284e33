"""Ground truth: the intervention test and the evidence measures, on analytic models built by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

from binsight.data import fashion_mnist, load_dataset, planted
from binsight.explain import get_explainer
from binsight.metrics import MetricError
from binsight.metrics.baselines import gaussian_map
from binsight.metrics import evidence as ev
from planted_models import DEBIAN, garment_model, needs_data, pattern_model

N = 1000


@pytest.fixture(scope="module")
def shortcut():
    return load_dataset("fashion-mnist-shortcut", split="test", root=DEBIAN).subset(N, seed=0)


@pytest.fixture(scope="module")
def decoy():
    return load_dataset("fashion-mnist-decoy", split="test", root=DEBIAN).subset(N, seed=0)


@pytest.fixture(scope="module")
def garments():
    return garment_model(fashion_mnist.load("test", root=DEBIAN, masks=False))


def run(model, data, scenario=None, n=None):
    n = n or len(data)
    return ev.intervention_test(model, data.images[:n], data.labels[:n], data.masks[:n],
                                scenario or planted.SCENARIOS[data.name])


# -- the decision ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("count, n, bound, below, status", [
    (990, 1000, 0.9, False, "held"), (500, 1000, 0.9, False, "not held"), (95, 100, 0.9, False, "inconclusive"),
    (0, 1000, 0.02, True, "held"), (100, 1000, 0.02, True, "not held"), (2, 100, 0.02, True, "inconclusive"),
])
def test_a_check_decides_by_its_exact_interval(count, n, bound, below, status):
    check = ev.decide("share", count, n, bound, below=below)
    assert check.status == status and check.low <= count / n <= check.high


@pytest.mark.parametrize("statuses, combined", [
    (("held", "held"), "passed"), (("held", "not held"), "failed"), (("inconclusive", "not held"), "failed"),
    (("held", "inconclusive"), "inconclusive"),
])
def test_the_test_passes_only_when_every_check_holds(statuses, combined):
    checks = tuple(ev.Check("c", 1, 2, 0.5, 0.0, 1.0, 0.5, True, s) for s in statuses)
    assert ev.combined_status(checks) == combined


@needs_data
def test_a_pattern_reading_model_passes_the_shortcut_test_and_fails_the_decoy_test(shortcut, decoy):
    result = run(pattern_model(), shortcut)
    assert result.passed and [c.status for c in result.checks] == ["held"] * 3
    assert result.accuracy == 1.0 and result.follows_swap == 1.0 and result.accuracy_removed < 0.2
    on_decoy = run(pattern_model(), decoy)
    assert on_decoy.status == "failed" and on_decoy.changed_by_swap == 1.0


@needs_data
def test_a_garment_reading_model_passes_the_decoy_test_and_fails_the_shortcut_test(garments, shortcut, decoy):
    result = run(garments, decoy)
    assert result.passed and result.accuracy > 0.5
    assert result.changed_by_removal <= 0.01 and result.changed_by_swap <= 0.01
    on_shortcut = run(garments, shortcut)
    assert on_shortcut.status == "failed" and on_shortcut.follows_swap < 0.2
    assert {c.name: c.status for c in on_shortcut.checks}["follows_swap"] == "not held"


@needs_data
def test_too_few_images_are_inconclusive(shortcut):
    result = run(pattern_model(), shortcut, n=20)
    assert result.follows_swap == 1.0 and result.status == "inconclusive"


@needs_data
def test_the_model_is_left_as_it_was(shortcut):
    model = nn.Sequential(nn.BatchNorm2d(1), pattern_model())
    model.train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    run(model, shortcut, n=64)
    assert model.training and all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_record_is_json_ready():
    checks = (ev.decide("accuracy", 9, 10, 0.2, below=False),)
    result = ev.InterventionResult("decoy", 10, 0.1, 0.9, 0.9, 0.9, 0.1, 0.0, 0.0, checks, "passed", 0)
    record = json.loads(json.dumps(result.to_json()))
    assert record["checks"][0]["name"] == "accuracy" and record["status"] == "passed"
    assert ev.InterventionResult.from_json(record) == result


# -- the interventions ----------------------------------------------------------------------------------
def planted_images(rows, cols, classes, background=0.3, channels=1):
    images = torch.full((len(rows), channels, 10, 10), background)
    out, masks = planted.stamp(images[:, :1], torch.tensor(rows), torch.tensor(cols), torch.tensor(classes))
    return out.expand(-1, channels, -1, -1).clone(), masks


def test_removal_fills_the_window_with_the_median_of_its_ring():
    images, masks = planted_images([3, 0], [3, 6], [2, 5], channels=3)
    images[0, :, 2, 2] = 0.9  # one odd ring pixel does not move the median
    out = ev.remove_pattern(images, masks)
    assert torch.allclose(out[masks.expand_as(out)], torch.tensor(0.3))
    assert torch.equal(out[~masks.expand_as(out)], images[~masks.expand_as(images)])


def test_swap_writes_the_other_pattern_and_nothing_else():
    images, masks = planted_images([3, 0], [3, 6], [2, 5])
    out = ev.swap_pattern(images, masks, torch.tensor([7, 1]))
    assert planted.pattern_classes(out, masks).tolist() == [7, 1]
    assert torch.equal(out[~masks], images[~masks])


def test_swapped_classes_are_always_another_class_uniformly():
    current = torch.arange(10).repeat(300)
    swapped = ev.swapped_classes(current, 10, seed=0)
    assert not (swapped == current).any() and torch.equal(swapped, ev.swapped_classes(current, 10, seed=0))
    counts = torch.bincount(swapped, minlength=10)
    assert counts.min() > 240 and counts.max() < 360  # 300 each expected


def test_bad_input_is_a_clear_error():
    images, masks = planted_images([3], [3], [2])
    with pytest.raises(MetricError, match="scenario must be one of"):
        ev.intervention_test(pattern_model(), images, torch.tensor([2]), masks, "spurious")
    with pytest.raises(MetricError, match="hold no planted pattern"):
        ev.intervention_test(pattern_model(), ev.remove_pattern(images, masks), torch.tensor([2]), masks, "shortcut")
    with pytest.raises(MetricError, match="labels must be"):
        ev.intervention_test(pattern_model(), images, torch.tensor([2, 3]), masks, "shortcut")


# -- the evidence measures ------------------------------------------------------------------------------
@needs_data
def test_the_pattern_models_gradient_puts_its_mass_on_the_pattern(shortcut):
    images, labels, masks = shortcut.images[:200], shortcut.labels[:200], shortcut.masks[:200]
    maps = get_explainer("gradient", pattern_model()).attribute(images, labels)
    found = ev.evidence(maps, masks)
    assert np.allclose(found.mass, 1.0) and np.allclose(found.pointing, 1.0)
    assert np.allclose(found.area, 16 / 784) and np.all(found.lift > 40)


@needs_data
def test_the_garment_models_gradient_puts_less_than_the_area_on_the_decoy(garments, decoy):
    maps = get_explainer("gradient", garments).attribute(decoy.images[:200], decoy.labels[:200])
    wrongly = ev.evidence(maps, decoy.masks[:200])
    assert np.nanmean(wrongly.mass) < 0.5 * np.mean(wrongly.area)


@needs_data
def test_maps_that_ignore_the_model(shortcut, decoy):
    n = 500
    noise = torch.rand(n, 1, 28, 28, generator=torch.Generator().manual_seed(0))
    assert abs(np.mean(ev.evidence(noise, shortcut.masks[:n]).lift) - 1.0) < 0.05  # the area, no more
    blob = gaussian_map((n, 1, 28, 28))
    assert np.mean(ev.evidence(blob, shortcut.masks[:n]).lift) < 1.0  # the pattern sits off the centred garment
    # an edge detector finds the bright pattern whether or not the label depends on it: the same on both
    # datasets (they hold the same images), well above the area
    lifts = [ev.evidence(ev.edge_map(d.images[:n]), d.masks[:n]).lift for d in (shortcut, decoy)]
    assert np.mean(lifts[0]) > 1.5 and np.array_equal(lifts[0], lifts[1])


def test_edge_map_of_a_step_is_its_edge():
    images = torch.zeros(1, 3, 6, 6)
    images[..., 3:] = 1.0
    edges = ev.edge_map(images)
    assert edges.shape == (1, 1, 6, 6) and edges[0, 0, :, 2:4].min() > 0 and edges[0, 0, :, [0, 5]].max() == 0


def test_evidence_on_a_grown_region_and_bad_masks():
    maps = torch.zeros(1, 1, 10, 10)
    maps[0, 0, 5, 5] = 1.0
    masks = torch.zeros(1, 1, 10, 10, dtype=torch.bool)
    masks[0, 0, 4, 4] = True
    assert ev.evidence(maps, masks).mass[0] == 0.0 and ev.evidence(maps, masks, dilation=2).mass[0] == 1.0
    assert ev.evidence(maps, masks, dilation=1).area[0] == 5 / 100
    with pytest.raises(MetricError, match="non-empty ground-truth region"):
        ev.evidence(maps, torch.zeros_like(masks))
