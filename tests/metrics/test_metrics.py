"""Hand-computed cases for every measure in binsight.metrics (the Quantus cross-checks are in
test_metrics_quantus.py)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from binsight.metrics import (
    MetricError,
    boxes_to_masks,
    cosine,
    deletion_area,
    deletion_insertion,
    energy_inside,
    entropy,
    gaussian_map,
    gini,
    high_frequency_energy,
    is_degenerate,
    noisy_linear_imputation,
    pointing_game,
    random_map,
    randomisation_test,
    road,
    spearman,
    ssim,
    top_k_iou,
    total_variation,
)
from binsight.metrics.faithfulness import pixel_ranks
from binsight.metrics.sanity import model_layers, randomise_layer
from binsight.nn import BinaryConv2d, BinaryLinear


def as_maps(array) -> torch.Tensor:
    """(N, H, W) or (H, W) array -> float tensor (N, 1, H, W)."""
    t = torch.as_tensor(np.asarray(array, dtype=np.float32))
    return t.view(-1, 1, *t.shape[-2:])


def checkerboard(n: int = 8) -> torch.Tensor:
    return as_maps(np.indices((n, n)).sum(0) % 2)


def sigmoid(z: float) -> float:
    return 1 / (1 + math.exp(-z))


class LinearLogit(nn.Module):
    """Two classes: logit 0 is 0, logit 1 is sum of weight * pixel over all channels and pixels."""

    def __init__(self, weight: torch.Tensor):
        super().__init__()
        self.weight = nn.Parameter(weight.clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = (x * self.weight).flatten(1).sum(1)
        return torch.stack([torch.zeros_like(z), z], dim=1)


def small_cnn(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(4 * 64, 16), nn.Tanh(), nn.Linear(16, 3)
    )


def gradient_map(model: nn.Module, images: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    x = images.clone().requires_grad_(True)
    with torch.enable_grad():
        (grad,) = torch.autograd.grad(model(x).gather(1, targets.view(-1, 1)).sum(), x)
    return grad.abs().amax(1, keepdim=True)


# -- similarity ----------------------------------------------------------------------------------------


def test_similarity_of_identical_and_inverted_maps():
    maps = torch.rand(3, 1, 10, 10, generator=torch.Generator().manual_seed(0))
    np.testing.assert_allclose(spearman(maps, maps), 1.0)
    np.testing.assert_allclose(spearman(maps, -maps), -1.0)
    np.testing.assert_allclose(ssim(maps, maps), 1.0)
    np.testing.assert_allclose(ssim(maps, 3 * maps + 2), 1.0)  # each map is scaled to [0, 1] first
    np.testing.assert_allclose(top_k_iou(maps, maps), 1.0)
    np.testing.assert_allclose(top_k_iou(maps, -maps), 0.0)
    np.testing.assert_allclose(cosine(maps, 2 * maps), 1.0)


def test_spearman_uses_average_ranks_for_ties():
    a = as_maps([[1, 2], [3, 4]])
    b = as_maps([[1, 1], [2, 2]])  # ranks 1.5, 1.5, 3.5, 3.5
    expected = np.corrcoef([1, 2, 3, 4], [1.5, 1.5, 3.5, 3.5])[0, 1]
    np.testing.assert_allclose(spearman(a, b), expected)


def test_top_k_iou_counts_and_breaks_ties_by_position():
    a = as_maps(np.arange(100).reshape(10, 10))
    b = a.clone().flatten()
    b[[90, 91]] = -1.0  # two of a's top 10 drop out of b's top 10, replaced by pixels 88 and 89
    iou = top_k_iou(a, b.view(1, 1, 10, 10), k=0.1)
    np.testing.assert_allclose(iou, 8 / 12)
    ties = torch.zeros(1, 1, 10, 10)
    first = torch.zeros(100)
    first[:10] = 1.0  # the tie rule takes the first 10 pixels of the all-zero map
    np.testing.assert_allclose(top_k_iou(ties, first.view(1, 1, 10, 10)), 1.0)


def test_cosine_of_orthogonal_maps_is_zero():
    np.testing.assert_allclose(cosine(as_maps([[1, 0], [0, 0]]), as_maps([[0, 1], [0, 0]])), 0.0)


def test_similarity_is_nan_for_a_constant_map_and_rejects_bad_shapes():
    const = torch.ones(1, 1, 8, 8)
    other = torch.rand(1, 1, 8, 8)
    assert np.isnan(spearman(const, other)).all()
    assert np.isnan(ssim(const, other)).all()
    with pytest.raises(MetricError, match="differ in shape"):
        spearman(torch.rand(2, 1, 8, 8), torch.rand(2, 1, 8, 9))
    with pytest.raises(MetricError, match="reduce the channels"):
        spearman(torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8))
    with pytest.raises(MetricError, match="at least 7 x 7"):
        ssim(torch.rand(1, 1, 5, 5), torch.rand(1, 1, 5, 5))


# -- noise -------------------------------------------------------------------------------------------


def test_total_variation_constant_checkerboard_and_ramp():
    assert np.isnan(total_variation(torch.full((1, 1, 8, 8), 0.3))).all()
    np.testing.assert_allclose(total_variation(checkerboard(8)), (8 * 7 + 8 * 7) / 64)
    ramp = as_maps(np.tile(np.arange(8), (8, 1)))  # scaled to steps of 1/7 along each row, flat down
    np.testing.assert_allclose(total_variation(5 * ramp + 1), 8 * 1.0 / 64)


def test_high_frequency_energy_constant_checkerboard_and_smooth():
    assert np.isnan(high_frequency_energy(torch.full((1, 1, 8, 8), 2.0))).all()
    np.testing.assert_allclose(high_frequency_energy(checkerboard(8)), 1.0)
    cols = np.arange(28)
    smooth = as_maps(np.tile(np.cos(2 * np.pi * cols / 28), (28, 1)))  # 1/28 cycle per pixel
    np.testing.assert_allclose(high_frequency_energy(smooth), 0.0, atol=1e-12)
    stripes = as_maps(np.tile(np.cos(2 * np.pi * 0.375 * np.arange(16)), (16, 1)))  # 0.375 > 0.25
    np.testing.assert_allclose(high_frequency_energy(stripes), 1.0)


def test_gini_and_entropy_of_one_hot_and_uniform_maps():
    n = 16
    one_hot = torch.zeros(1, 1, 4, 4)
    one_hot[0, 0, 1, 2] = 5.0
    uniform = torch.full((1, 1, 4, 4), 0.7)
    np.testing.assert_allclose(gini(one_hot), (n - 1) / n)
    np.testing.assert_allclose(gini(uniform), 0.0, atol=1e-12)
    np.testing.assert_allclose(gini(-one_hot), (n - 1) / n)  # on absolute values
    np.testing.assert_allclose(entropy(one_hot), 0.0, atol=1e-12)
    np.testing.assert_allclose(entropy(uniform), math.log(n))
    assert np.isnan(gini(torch.zeros(1, 1, 4, 4))).all() and np.isnan(entropy(torch.zeros(1, 1, 4, 4))).all()


# -- deletion and insertion --------------------------------------------------------------------------


def toy_case():
    """A 2 x 2 two-channel image whose class-1 logit is a known sum of pixel contributions."""
    weight = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[1.0, 0.0], [0.0, 0.0]]])
    image = torch.tensor([[[0.4, 0.3], [0.2, 0.1]], [[0.1, 0.0], [0.0, 0.0]]]).unsqueeze(0)
    # per-pixel contributions, channels summed: 0.4 + 0.1, 0.6, 0.6, 0.4 -> order {1, 2} (tied), 0, 3
    saliency = torch.tensor([[0.5, 0.6], [0.6, 0.4]]).view(1, 1, 2, 2)
    return LinearLogit(weight), image, saliency


def test_deletion_and_insertion_curves_match_the_closed_form():
    model, image, saliency = toy_case()
    result = deletion_insertion(
        model, image, saliency, targets=[1], steps=4, substrate="black", insertion_substrate="black"
    )
    logits_deleted = [2.1, None, 0.9, 0.4, 0.0]  # remove pixels {1, 2}, 0 (both channels: 0.5), 3
    logits_inserted = [0.0, None, 1.2, 1.7, 2.1]
    # step 1 falls inside the tie {1, 2}: the line between the group kept (step 0) and removed (step 2)
    expected_deletion = [sigmoid(z) if z is not None else (sigmoid(2.1) + sigmoid(0.9)) / 2 for z in logits_deleted]
    expected_insertion = [sigmoid(z) if z is not None else (sigmoid(0.0) + sigmoid(1.2)) / 2 for z in logits_inserted]
    np.testing.assert_allclose(result.fractions, [0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(result.deletion[0], expected_deletion, rtol=1e-6)
    np.testing.assert_allclose(result.insertion[0], expected_insertion, rtol=1e-6)
    area = lambda c: 0.25 * (c[0] / 2 + c[1] + c[2] + c[3] + c[4] / 2)  # noqa: E731
    np.testing.assert_allclose(result.deletion_area, [area(expected_deletion)], rtol=1e-6)
    np.testing.assert_allclose(result.insertion_area, [area(expected_insertion)], rtol=1e-6)


def test_deletion_area_alone_equals_the_deletion_of_both_curves():
    model, image, saliency = toy_case()
    for substrate in ("black", "mean", "blur"):
        both = deletion_insertion(model, image, saliency, [1], steps=4, substrate=substrate)
        alone = deletion_area(model, image, saliency, [1], steps=4, substrate=substrate)
        np.testing.assert_allclose(alone, both.deletion_area, rtol=1e-12)
    with pytest.raises(MetricError, match="steps"):
        deletion_area(model, image, saliency, [1], steps=0)


def test_mean_substrate_and_default_blur_insertion():
    model, image, saliency = toy_case()
    result = deletion_insertion(model, image, saliency, [1], steps=4, substrate="mean", mean=[0.5, 0.0])
    # each removed pixel takes 0.5 in channel 0: contribution 0.5 * weight; step 1 inside the tie {1, 2}
    expected = [sigmoid(z) for z in (2.1, 2.1, 2.1 - 1.2 + 2.5, 2.1 - 1.7 + 3.0, 5.0)]
    expected[1] = (expected[0] + expected[2]) / 2
    np.testing.assert_allclose(result.deletion[0], expected, rtol=1e-6)
    flat = torch.full((1, 1, 6, 6), 0.3)  # blurring a constant image leaves it as it is
    lin = LinearLogit(torch.ones(1, 6, 6))
    curves = deletion_insertion(lin, flat, torch.rand(1, 1, 6, 6), [1], steps=3)
    np.testing.assert_allclose(curves.insertion[0], sigmoid(0.3 * 36), rtol=1e-6)


def test_own_mean_substrate_per_image_and_every_target_form():
    """mean=None: each image's own channel mean (an image's curve does not depend on the other images)."""
    model, image, saliency = toy_case()
    alone = deletion_insertion(model, image, saliency, 1, steps=4, substrate="mean")
    other = torch.rand_like(image)
    both = deletion_insertion(model, torch.cat([image, other]), saliency.repeat(2, 1, 1, 1), np.array([1, 1]),
                              steps=4, substrate="mean")
    np.testing.assert_allclose(both.deletion[0], alone.deletion[0], rtol=1e-12)
    own = image.mean(dim=(2, 3)).flatten().tolist()  # channel means 0.25 and 0.025
    expected = deletion_insertion(model, image, saliency, [1], steps=4, substrate="mean", mean=own)
    np.testing.assert_allclose(alone.deletion, expected.deletion, rtol=1e-12)
    for target in (1, np.int64(1), torch.tensor(1), torch.tensor([1]), np.array([1])):
        again = deletion_insertion(model, image, saliency, target, steps=4, substrate="mean")
        np.testing.assert_allclose(again.deletion, alone.deletion, rtol=1e-12)
    for bad in (None, 1.0, [True], [-1]):
        with pytest.raises(MetricError):
            deletion_insertion(model, image, saliency, bad, steps=4)
    for batch_size in (0, 1.5, None):
        with pytest.raises(MetricError, match="batch_size"):
            deletion_insertion(model, image, saliency, 1, steps=4, batch_size=batch_size)
        with pytest.raises(MetricError, match="batch_size"):
            road(model, image, saliency, 1, batch_size=batch_size)


def test_deletion_is_batched_without_changing_results_and_leaves_the_model_as_found():
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.Dropout(0.5), nn.Linear(8, 3)).train()
    params = [p.detach().clone() for p in model.parameters()]
    g = torch.Generator().manual_seed(1)
    images, maps = torch.rand(5, 1, 8, 8, generator=g), torch.rand(5, 1, 8, 8, generator=g)
    big = deletion_insertion(model, images, maps, [0, 1, 2, 0, 1], steps=8, batch_size=1000)
    small = deletion_insertion(model, images, maps, [0, 1, 2, 0, 1], steps=8, batch_size=3)
    np.testing.assert_allclose(big.deletion, small.deletion)  # eval mode: dropout off, so repeatable
    np.testing.assert_allclose(big.insertion_area, small.insertion_area)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(p, q) for p, q in zip(params, model.parameters()))


def test_pixel_ranks_break_ties_in_row_major_order():
    ranks = pixel_ranks(torch.tensor([[[[0.0, 1.0], [1.0, 0.0]]]]))
    assert ranks.flatten().tolist() == [2, 0, 1, 3]


def test_faithfulness_rejects_bad_input():
    model, image, saliency = toy_case()
    with pytest.raises(MetricError, match="out of range"):
        deletion_insertion(model, image, saliency, [5], steps=2)
    with pytest.raises(MetricError, match="unknown substrate"):
        deletion_insertion(model, image, saliency, [1], substrate="grey")
    with pytest.raises(MetricError, match="upsample"):
        deletion_insertion(model, image, torch.rand(1, 1, 4, 4), [1])
    with pytest.raises(MetricError, match="NaN"):
        deletion_insertion(model, image, torch.full((1, 1, 2, 2), float("nan")), [1])


# -- ROAD ----------------------------------------------------------------------------------------------


def test_linear_imputation_reproduces_a_ramp_inside_the_image():
    ramp = torch.linspace(0, 1, 8).expand(2, 8, 8).unsqueeze(0).clone()  # (1, 2, 8, 8), linear along x
    removed = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    removed[0, 0, 2:5, 3:6] = True  # an interior hole: the symmetric neighbour weights are exact on a ramp
    imputed = noisy_linear_imputation(ramp, removed, noise=0.0)
    torch.testing.assert_close(imputed, ramp, rtol=0, atol=1e-6)
    noisy = noisy_linear_imputation(ramp, removed, noise=0.01, rng=np.random.default_rng(3))
    changed = (noisy - ramp).abs() > 0
    assert changed[:, :, 2:5, 3:6].all() and changed.sum() == 2 * 9  # only the removed pixels move


def test_road_morf_hurts_more_than_lerf_and_repeats_with_a_seed():
    g = torch.Generator().manual_seed(0)
    weight = torch.rand(1, 8, 8, generator=g) * 4 - 1
    model = LinearLogit(weight)
    images = torch.rand(4, 1, 8, 8, generator=g)
    contribution = weight * images  # (4, 1, 8, 8): each pixel's share of the class-1 logit
    morf = road(model, images, contribution, 1, percentages=(20, 50, 80))
    lerf = road(model, images, contribution, 1, percentages=(20, 50, 80), order="lerf")
    assert (morf.area < lerf.area).all()
    again = road(model, images, contribution, 1, percentages=(20, 50, 80), batch_size=2)
    np.testing.assert_allclose(again.probability, morf.probability)
    assert morf.correct.shape == (4, 3) and set(np.unique(morf.correct)) <= {0.0, 1.0}  # no ties: 0 or 1
    with pytest.raises(MetricError, match="percentages"):
        road(model, images, contribution, 1, percentages=(101,))


# -- localisation --------------------------------------------------------------------------------------


def test_pointing_game_hits_misses_tolerance_and_ties():
    mask = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    mask[0, 0, 2:4, 2:4] = True
    on, off = torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8)
    on[0, 0, 3, 3] = 1.0
    off[0, 0, 3, 6] = 1.0  # 3 pixels right of the object
    np.testing.assert_array_equal(pointing_game(torch.cat([on, off]), mask.repeat(2, 1, 1, 1)), [1.0, 0.0])
    np.testing.assert_array_equal(pointing_game(off, mask, tolerance=2), [0.0])
    np.testing.assert_array_equal(pointing_game(off, mask, tolerance=3), [1.0])
    np.testing.assert_allclose(pointing_game(torch.ones(1, 1, 8, 8), mask), [4 / 64])  # chance, not a hit
    assert np.isnan(pointing_game(on, torch.zeros_like(mask))).all()


def test_energy_inside_and_boxes():
    maps = as_maps([[1, 1, 0], [0, 2, 0], [0, 0, -4]])
    box = boxes_to_masks([[0, 0, 2, 2]], (3, 3))  # x 0..1, y 0..1
    assert box[0, 0].int().tolist() == [[1, 1, 0], [1, 1, 0], [0, 0, 0]]
    np.testing.assert_allclose(energy_inside(maps, box), [4 / 8])
    two = boxes_to_masks([np.array([[0, 0, 1, 1], [2, 2, 9, 9]])], (1, 1, 3, 3))
    assert two[0, 0].int().tolist() == [[1, 0, 0], [0, 0, 0], [0, 0, 1]]
    with pytest.raises(MetricError, match="empty"):
        boxes_to_masks([[2, 0, 2, 3]], (3, 3))
    with pytest.raises(MetricError, match="dtype torch.bool"):
        energy_inside(maps, box.float())


# -- baselines -----------------------------------------------------------------------------------------


def test_baseline_maps_and_degenerate_check():
    a, b = random_map((2, 1, 5, 6), seed=4), random_map((2, 1, 5, 6), seed=4)
    assert torch.equal(a, b) and a.shape == (2, 1, 5, 6) and 0 <= a.min() and a.max() < 1
    g = gaussian_map((1, 1, 7, 7), sigma=1.0)
    assert g[0, 0, 3, 3] == 1.0 and torch.allclose(g[0, 0], g[0, 0].T) and torch.allclose(g, g.flip(-1))
    np.testing.assert_allclose(float(g[0, 0, 3, 4]), math.exp(-0.5), rtol=1e-6)
    nan_map = torch.rand(1, 1, 5, 6)
    nan_map[0, 0, 1, 1] = float("nan")
    maps = torch.cat([a[:1], torch.zeros(1, 1, 5, 6), torch.full((1, 1, 5, 6), 3.0), nan_map])
    np.testing.assert_array_equal(is_degenerate(maps), [False, True, True, True])


# -- sanity --------------------------------------------------------------------------------------------


def test_randomisation_works_on_a_copy_and_destroys_similarity():
    model = small_cnn().train()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(6, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    rng_state = torch.get_rng_state()
    result = randomisation_test(model, images, gradient_map, targets=[0, 1, 2, 0, 1, 2], measures=("spearman", "ssim"))
    assert result.layers == ["5", "3", "0"]  # top to bottom
    assert result.similarity["spearman"].shape == (3, 6)
    assert np.nanmean(np.abs(result.similarity["spearman"][-1])) < 0.5  # an unchanged map would give 1
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert model.training and torch.equal(torch.get_rng_state(), rng_state)


def test_independent_randomisation_changes_one_layer_at_a_time_with_fixed_targets():
    model = small_cnn(seed=0)  # built after manual_seed(0), randomised with seed 0: each layer must still change
    original = {k: v.clone() for k, v in model.state_dict().items()}
    images = torch.rand(3, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    seen = []

    def explain(m, x, t):
        changed = sorted({k.split(".")[0] for k, v in m.state_dict().items() if not torch.equal(v, original[k])})
        seen.append((changed, t.tolist()))
        return gradient_map(m, x, t)

    result = randomisation_test(model, images, explain, mode="independent")
    targets = model(images).argmax(1).tolist()
    assert result.layers == ["0", "3", "5"]
    assert seen == [([], targets), (["0"], targets), (["3"], targets), (["5"], targets)]


def test_randomise_binary_and_parameter_only_layers():
    conv, linear = BinaryConv2d(4, 8, 3), BinaryLinear(64, 8)
    conv.weight.data.fill_(0.01)
    randomise_layer(conv, seed=0)
    randomise_layer(linear, seed=1)
    for layer in (conv, linear):
        w = layer.weight
        assert w.abs().max() <= 1 and w.abs().max() > 0.5 and w.std() > 0.3  # uniform on [-1, 1]

    class Scale(nn.Module):  # no reset_parameters
        def __init__(self):
            super().__init__()
            self.gain = nn.Parameter(torch.linspace(-2, 2, 1000))

        def forward(self, x):
            return x * self.gain.mean()

    layer = Scale()
    before = layer.gain.detach().clone()
    randomise_layer(layer, seed=0)
    assert not torch.equal(before, layer.gain) and abs(float(layer.gain.detach().std() / before.std()) - 1) < 0.1


def test_layers_follow_the_forward_pass_not_registration_order():
    class Backwards(nn.Module):
        def __init__(self):
            super().__init__()
            self.head = nn.Linear(4, 2)
            self.body = nn.Linear(16, 4)
            self.unused = nn.Linear(3, 3)

        def forward(self, x):
            return self.head(torch.relu(self.body(x.flatten(1))))

    assert [name for name, _ in model_layers(Backwards(), torch.rand(2, 1, 4, 4))] == ["body", "head"]


def test_sanity_with_a_registered_explainer_name():
    model = small_cnn()
    images = torch.rand(2, 1, 8, 8, generator=torch.Generator().manual_seed(0))
    result = randomisation_test(model, images, "gradient", measures=("top_k_iou",), layers=["5"])
    assert result.layers == ["5"] and result.similarity["top_k_iou"].shape == (1, 2)
    with pytest.raises(MetricError, match="unknown similarity"):
        randomisation_test(model, images, "gradient", measures=("pearson",))
