"""Known answers for the chance test (binsight.metrics.chance): chance maps, the rule, a tiny model
whose answer is known, and a small CNN trained on Fashion-MNIST."""

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from binsight._utils import make_substrate
from binsight.metrics._checks import MetricError
from binsight.metrics import faithfulness
from binsight.metrics.chance import (CONTROLS, MEASURES, ChanceTest, _decide, _empty_result, chance_test, chance_maps,
                                    control_maps, control_test, controls_behaved, unstructured_ranks)

# -- chance maps ---------------------------------------------------------------------------------------------


def smooth_field(sigma: float, seed: int, size: int = 28) -> np.ndarray:
    noise = np.random.default_rng(seed).standard_normal((size, size))
    return scipy.ndimage.gaussian_filter(noise, sigma) if sigma > 0 else noise


def test_chance_maps_keep_the_values_and_are_seeded_per_image():
    maps = torch.from_numpy(np.stack([smooth_field(0, 0), np.abs(smooth_field(2, 1))])[:, None])
    made = chance_maps(maps, n_chance=5, seed=3)
    assert made.unstructured.shape == made.smooth.shape == (2, 5, 1, 28, 28)
    for i in range(2):
        own = np.sort(maps[i].flatten().numpy())
        for kind in (made.unstructured, made.smooth):
            for k in range(5):
                np.testing.assert_array_equal(np.sort(kind[i, k].flatten().numpy()), own)  # same histogram
    again = chance_maps(maps[1:], n_chance=5, seed=3)  # image 1 alone: index 0 now, other noise
    assert not torch.equal(again.unstructured[0], made.unstructured[1])
    same = chance_maps(maps, n_chance=5, seed=3)
    assert torch.equal(same.smooth, made.smooth) and not torch.equal(made.unstructured[0, 0], made.unstructured[0, 1])


def test_smooth_chance_maps_follow_the_map_scale():
    maps = torch.from_numpy(np.stack([smooth_field(0, 0), smooth_field(1.0, 1), smooth_field(3.0, 2)])[:, None])
    sigma = chance_maps(maps, n_chance=20, seed=0).sigma
    assert sigma[0] == 0.5  # white noise: the finest candidate
    assert 0.5 <= sigma[1] <= 1.5 and 2.0 <= sigma[2] <= 4.0
    assert sigma[0] < sigma[1] < sigma[2]


# -- the rule --------------------------------------------------------------------------------------------------


def rule_on(values: dict, chance: dict, degenerate=(False,)):
    """The decision of :func:`_decide` for one image with the given own and chance values per measure."""
    measures = tuple(m for m in MEASURES if m in values)
    k = len(next(iter(chance.values())))
    result = _empty_result(1, k // 2, measures, np.where(np.asarray(degenerate), "constant", ""))
    for m in measures:
        result.value[m][0], result.chance[m][0] = values[m], chance[m]
    return _decide(result)


# -- a tiny model whose answer is known --------------------------------------------------------------------------

SIZE = 16
REGION = (slice(5, 11), slice(4, 10))  # 6 x 6 pixels


class RegionModel(nn.Module):
    """Two classes; class 1's logit is 30 (mean of the pixels in REGION - 0.75), class 0's is 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 30 * (x[:, :, REGION[0], REGION[1]].mean(dim=(1, 2, 3)) - 0.75)
        return torch.stack([torch.zeros_like(score), score], dim=1)


def region_case(n: int = 4):
    """Images with a bright REGION on a dim textured background, its masks, the perfect and inverted maps."""
    rng = np.random.default_rng(0)
    images = 0.3 * rng.random((n, 1, SIZE, SIZE))
    mask = np.zeros((n, 1, SIZE, SIZE), dtype=bool)
    mask[:, :, REGION[0], REGION[1]] = True
    images[mask] = 1.0
    perfect = torch.from_numpy(mask.astype(np.float64))
    return torch.from_numpy(images).float(), torch.from_numpy(mask), perfect, 1.0 - perfect


@pytest.mark.parametrize("with_masks", [True, False])
def test_true_cause_is_never_below_chance_and_its_inverse_always_is(with_masks):
    images, masks, perfect, inverted = region_case()
    maps = torch.cat([perfect, inverted])
    result = chance_test(RegionModel(), images.repeat(2, 1, 1, 1), maps, 1,
                          masks.repeat(2, 1, 1, 1) if with_masks else None, n_chance=20, steps=8)
    n = len(images)
    assert result.measures == (MEASURES if with_masks else MEASURES[:3])
    assert not result.nonsensical[:n].any() and result.nonsensical[n:].all()
    for m in result.measures:
        assert (result.fraction[m][:n] == 0).all()  # the true cause beats every chance map on every measure
    assert not result.degenerate.any()


def test_degenerate_maps_are_counted_nonsensical_apart_from_not_better():
    images, masks, perfect, inverted = region_case(3)
    off = torch.full_like(perfect, 4.5e-5) + 1e-9 * torch.rand(perfect.shape, dtype=torch.float64)
    maps = torch.cat([inverted[:1], torch.zeros_like(perfect[:1]), off[:1]])
    result = chance_test(RegionModel(), images, maps, 1, masks, n_chance=20, steps=8)
    assert list(result.degenerate) == [False, True, True] and list(result.reasons) == ["", "all zero", "flat"]
    assert list(result.not_better) == [True, False, False] and list(result.nonsensical) == [True, True, True]
    table = result.table_values()
    assert np.isnan(result.fraction["road_morf"][1:]).all() and np.isnan(table["not_better_chance"][1:]).all()
    assert table["not_better_chance"][0] == 1.0 and "below_chance" not in table


def test_bad_options_are_refused():
    images, masks, perfect, _ = region_case(1)
    with pytest.raises(MetricError, match="n_chance"):
        chance_test(RegionModel(), images, perfect, 1, n_chance=0)
    with pytest.raises(MetricError, match="targets"):
        chance_test(RegionModel(), images, perfect, [1, 1])


# -- a small CNN trained on Fashion-MNIST --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fashion():
    """(model, images, labels, masks): small-cnn trained for 150 steps on 3000 training images; 6 test images
    it classifies correctly with probability > 0.9. Asserts > 80 % accuracy on 300 test images."""
    from binsight.data import load_dataset
    from binsight.models import build_model

    torch.manual_seed(0)
    train = load_dataset("fashion-mnist", split="train", masks=False)
    pick = torch.randperm(len(train), generator=torch.Generator().manual_seed(0))[:3000]
    x, y = train.images[pick], train.labels[pick]
    model = build_model("small-cnn", "fp")
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    batches = torch.Generator().manual_seed(1)
    model.train()
    for _ in range(150):
        i = torch.randint(0, len(x), (64,), generator=batches)
        loss = nn.functional.cross_entropy(model(x[i]), y[i])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    test = load_dataset("fashion-mnist", split="test").subset(300, seed=0)
    with torch.no_grad():
        probs = torch.softmax(model(test.images), dim=1)
    assert (probs.argmax(1) == test.labels).float().mean() > 0.8
    sure = torch.nonzero((probs.argmax(1) == test.labels) & (probs.amax(1) > 0.9)).flatten()[:6]
    return model, test.images[sure], test.labels[sure], test.masks[sure]


def test_object_mask_as_a_map_is_never_below_chance_and_its_complement_is_on_localisation(fashion):
    model, images, labels, masks = fashion
    maps = torch.cat([masks.double(), (~masks).double()])
    result = chance_test(model, images.repeat(2, 1, 1, 1), maps, labels.repeat(2), masks.repeat(2, 1, 1, 1),
                          n_chance=20, steps=5, percentages=(20, 50, 80))
    n = len(images)
    # the rank rule (better than chance at p <= 0.05 on 3 of 4 measures) is harder to pass than the former
    # "not worse than every chance map": one of the 6 masks is better on only 2 measures
    assert result.nonsensical[:n].sum() <= 1 and result.nonsensical[n:].all() and not result.degenerate.any()
    assert (result.fraction["energy_inside"][:n] == 0).all()  # all of its energy is on the object
    assert (result.fraction["energy_inside"][n:] == 1).all()  # the complement: worse than every chance map


def old_black_only_flag(model, images, maps, labels, masks) -> np.ndarray:
    """The rule the below-chance test replaces: "nonsensical" when the map's deletion onto black is worse
    (higher) than one uniform random map's AND its energy on the undilated mask is lower."""
    from binsight.metrics.baselines import random_map
    from binsight.metrics.faithfulness import deletion_insertion
    from binsight.metrics.localisation import energy_inside

    random = random_map(maps.shape, seed=0).double()
    deletion = [deletion_insertion(model, images, m, labels, steps=5, substrate="black").deletion_area
                for m in (maps, random)]
    return (deletion[0] > deletion[1]) & (energy_inside(maps, masks) < energy_inside(random, masks))


def test_a_ring_just_outside_the_object_is_judged_by_the_model_not_by_the_background_colour(fashion):
    from binsight.metrics.localisation import dilate

    model, images, labels, masks = fashion
    ring = (dilate(masks, 2) & ~masks).double()  # 2 pixels wide, all on the (black) background
    assert old_black_only_flag(model, images, ring, labels, masks).sum() >= 4  # removing black pixels "does nothing"
    assert "deletion_black" not in MEASURES
    for given in (masks, None):  # with the localisation measure, and on the model's responses alone
        result = chance_test(model, images, ring, labels, given, n_chance=20, steps=5, percentages=(20, 50, 80))
        assert result.nonsensical.sum() <= 2  # the former black-only rule flagged at least 4 of the 6
    worse = [result.fraction[m] == 1.0 for m in result.measures]
    assert not np.any(np.sum(worse, axis=0) >= 2)  # blur, mean and ROAD: the model reacts to the contour


# -- the nonsensical test: rank p-values, degenerate maps counted, planted controls ------------------------------

GRID = 16  # 16 x 16 images: a 4 x 4 grid of 4 x 4 cells, each image's 3 x 3 bright square in a cell of its own


class BrightModel(nn.Module):
    """Two classes; class 1's logit is 30 (the sum over pixels of relu(x - 0.5), over that of a 9-pixel
    square at 1.0, minus 0.75): it counts bright pixels wherever they are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = 30 * (torch.relu(x - 0.5).sum(dim=(1, 2, 3)) / (0.5 * 9) - 0.75)
        return torch.stack([torch.zeros_like(score), score], dim=1)


def placed_squares(n: int = 12):
    """Images (n, 1, 16, 16) with a bright 3 x 3 square in cell i of the grid on a dim textured background,
    and the squares' masks."""
    rng = np.random.default_rng(0)
    images = 0.3 * rng.random((n, 1, GRID, GRID))
    masks = np.zeros(images.shape, dtype=bool)
    for i in range(n):
        row, col = divmod(i, 4)
        masks[i, 0, 4 * row:4 * row + 3, 4 * col + 1:4 * col + 4] = True
    images[masks] = 1.0
    return torch.from_numpy(images).float(), torch.from_numpy(masks)


OPTIONS = dict(n_chance=10, steps=5, percentages=(50,))


def test_uninformative_maps_are_flagged_on_90_percent_and_the_object_mask_on_at_most_5():
    images, masks = placed_squares()
    n = len(images)
    mask_maps = masks.double()
    white = torch.from_numpy(np.random.default_rng(1).random(mask_maps.shape))
    controls = control_maps(mask_maps, images, seed=0)
    kinds = {"object mask": mask_maps, "white noise": white, "inverted": controls["inverted"],
             "other image": controls["other image"]}
    model = BrightModel()
    rates = {}
    for name, maps in kinds.items():  # on the model's responses alone (no localisation measure)
        result = chance_test(model, images, maps, 1, None, **OPTIONS)
        rates[name] = result.rates()["nonsensical"]
        assert not result.degenerate.any()
    assert rates["object mask"] <= 0.05 and min(rates["white noise"], rates["inverted"], rates["other image"]) >= 0.9
    with_masks = chance_test(model, images, mask_maps, 1, masks, **OPTIONS)
    assert with_masks.rates()["nonsensical"] <= 0.05 and with_masks.measures == MEASURES
    assert n == 12


def test_empty_maps_are_all_nonsensical_and_counted():
    images, masks = placed_squares(4)
    maps = torch.cat([torch.zeros(3, 1, GRID, GRID, dtype=torch.float64), masks[3:].double()])
    result = chance_test(BrightModel(), images, maps, 1, masks, **OPTIONS)
    assert list(result.nonsensical) == [True, True, True, False] and list(result.not_better) == [False] * 4
    assert result.rates() == {"not_better": 0.0, "degenerate": 0.75, "nonsensical": 0.75}
    table = result.table_values()
    assert list(table["nonsensical"]) == [1, 1, 1, 0] and np.isnan(table["not_better_chance"][:3]).all()
    empty = chance_test(BrightModel(), images[:3], maps[:3], 1, masks[:3], **OPTIONS)
    assert empty.rates()["nonsensical"] == 1.0


def test_rank_p_values_count_ties_against_the_map_and_the_majority_rule_on_both_sides():
    chance = {m: np.array([0.4, 0.5, 0.6, 0.7]) for m in MEASURES}  # 4 chance maps: p from 1/5 to 5/5
    good = {"deletion_blur": 0.1, "deletion_mean": 0.1, "road_morf": 0.65}
    r = rule_on(good, chance)
    assert r.p_value["deletion_blur"][0] == pytest.approx(0.2) and r.p_value["road_morf"][0] == pytest.approx(0.8)
    r.level = 0.25
    assert not _decide(r).nonsensical[0]  # better on 2 of 3 at level 0.25
    r = rule_on({**good, "deletion_mean": 0.45}, chance)
    r.level = 0.25
    assert _decide(r).nonsensical[0]  # better on 1 of 3: not better on a majority
    tied = rule_on({"deletion_blur": 0.4, "deletion_mean": 0.4, "road_morf": 0.4}, chance)
    assert tied.p_value["deletion_blur"][0] == pytest.approx(0.4)  # the tie with 0.4 counts against the map


def test_controls_behave_on_a_model_that_reads_the_image_and_cannot_decide_on_one_that_does_not():
    images, masks = placed_squares()
    results = control_test(BrightModel(), images, masks.double(), 1, None, **OPTIONS)
    assert set(results) == set(CONTROLS)
    rates = {name: r.rates()["nonsensical"] for name, r in results.items()}
    check = controls_behaved(rates)
    assert check.ok and rates["inverted"] >= 0.9 and rates["other image"] >= 0.9 and rates["edges"] <= 0.5

    class Blind(nn.Module):  # ignores the image: every map ties with its chance maps
        def forward(self, x):
            return torch.zeros(len(x), 2) + torch.tensor([0.0, 1.0])

    blind = {name: r.rates()["nonsensical"] for name, r in control_test(Blind(), images[:4], masks[:4].double(), 1,
                                                                        None, **OPTIONS).items()}
    verdict = controls_behaved(blind)
    assert not verdict.ok and blind["edges"] == 1.0 and any("edges" in p for p in verdict.problems)
    weak = controls_behaved({"inverted": 0.5, "other image": 0.95, "edges": 0.1})
    assert not weak.ok and "no power" not in weak.problems[0] and "inverted" in weak.problems[0]
    assert not controls_behaved({"edges": 0.0}).ok  # nothing shows the test can flag a map


def test_a_level_that_no_rank_can_reach_is_refused():
    images, masks = placed_squares(2)
    with pytest.raises(MetricError, match="n_chance >= 10"):
        chance_test(BrightModel(), images, masks.double(), 1, n_chance=5)
    with pytest.raises(MetricError, match="level"):
        chance_test(BrightModel(), images, masks.double(), 1, n_chance=20, level=0.0)


# -- shared scores: the unstructured chance maps and the model-ignorant controls, once per images ---------------


class Counting(nn.Module):
    """BrightModel, counting the images it sees."""

    def __init__(self):
        super().__init__()
        self.model, self.seen = BrightModel(), 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen += len(x)
        return self.model(x)


def assert_same(a, b, exact: bool = True, decisions_only: bool = False) -> None:
    """a and b decide alike; unless ``decisions_only`` (a sequential test against a full one), every value too;
    with it, a's scored values equal b's and a's complete p-values too."""
    assert a.measures == b.measures
    np.testing.assert_array_equal(a.nonsensical, b.nonsensical)
    np.testing.assert_array_equal(a.not_better, b.not_better)
    if decisions_only:
        for m in a.measures:
            np.testing.assert_array_equal(a.value[m], b.value[m], err_msg=m)
            scored = np.isfinite(a.chance[m])
            np.testing.assert_array_equal(a.chance[m][scored], b.chance[m][scored], err_msg=m)
            complete = scored.all(axis=1)
            np.testing.assert_array_equal(a.p_value[m][complete], b.p_value[m][complete], err_msg=m)
            stopped = ~complete & np.isfinite(a.value[m])
            assert (a.p_value[m][stopped] > a.level).all() and (b.p_value[m][stopped] > b.level).all(), m
        return
    for m in a.measures:
        for got, want in ((a.value[m], b.value[m]), (a.chance[m], b.chance[m]), (a.p_value[m], b.p_value[m])):
            if exact:
                np.testing.assert_array_equal(got, want, err_msg=m)
            else:
                np.testing.assert_allclose(got, want, rtol=0, atol=1e-9, err_msg=m)


def method_maps(images: torch.Tensor, masks: torch.Tensor) -> dict[str, torch.Tensor]:
    """Two "methods" of the same images: the object mask blurred (ties only at 0) and white noise."""
    blurred = torch.from_numpy(scipy.ndimage.gaussian_filter(masks.double().numpy(), (0, 0, 1, 1)))
    return {"mask": torch.where(blurred > 0.05, blurred, torch.zeros_like(blurred)),
            "noise": torch.from_numpy(np.random.default_rng(2).random(masks.shape))}


def test_a_chance_test_shared_by_methods_equals_a_fresh_one_per_method_at_a_fraction_of_the_passes():
    images, masks = placed_squares(6)
    shared_model = Counting()
    shared = ChanceTest(shared_model, images, 1, masks, seed=4, **OPTIONS)
    for name, maps in method_maps(images, masks).items():
        fresh_model = Counting()
        fresh = chance_test(fresh_model, images, maps, 1, masks, seed=4, sequential=False, **OPTIONS)
        fresh_controls = control_test(fresh_model, images, maps, 1, masks, seed=4, sequential=False, **OPTIONS)
        assert_same(chance_test(BrightModel(), images, maps, 1, masks, seed=4, **OPTIONS), fresh, decisions_only=True)
        before = shared_model.seen
        assert_same(shared.test(maps), fresh, decisions_only=True)
        controls = shared.controls(maps)
        assert list(controls) == list(fresh_controls) == list(CONTROLS)
        for control in CONTROLS:
            assert_same(controls[control], fresh_controls[control], decisions_only=True)
        k, per_map = OPTIONS["n_chance"], 2 * (OPTIONS["steps"] - 1) + len(OPTIONS["percentages"])
        # fresh, every chance map scored: the unstructured chance maps twice (test, controls), the map and its
        # K smooth chance maps and those of the 4 controls, each deletion curve without its two ends (the image
        # and its substrate, 3 passes per image and test); shared and sequential, for the second method: at
        # most its map and 2 controls, each with its smooth chance maps, and fewer (the noise is flagged early)
        assert fresh_model.seen == 6 * per_map * (2 * k + 5 * (1 + k)) + 2 * 3 * 6
        if name == "noise":
            assert 6 * per_map * 3 <= shared_model.seen - before < 6 * per_map * 3 * (1 + k) / 2


def test_chance_values_do_not_depend_on_the_batch_size_or_the_imputation_chunks(monkeypatch):
    images, masks = placed_squares(5)
    maps = method_maps(images, masks)["mask"]
    options = dict(n_chance=10, steps=5, percentages=(30, 60))
    results = [ChanceTest(BrightModel(), images, 1, masks, batch_size=size, **options).test(maps) for size in (3, 64, 4096)]
    monkeypatch.setattr(faithfulness, "IMPUTATION_ELEMENTS", 256)  # ROAD imputed one model batch at a time
    results.append(ChanceTest(BrightModel(), images, 1, masks, batch_size=3, **options).test(maps))
    for result in results[1:]:
        assert_same(result, results[0], exact=False)


def test_the_unstructured_ranking_is_the_one_of_the_placed_values_for_a_map_without_ties():
    maps = torch.rand(3, 1, 6, 7, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    placed = chance_maps(maps, n_chance=4, seed=9).unstructured.flatten(2)
    ranks = unstructured_ranks(3, (6, 7), n_chance=4, seed=9).flatten(2)
    np.testing.assert_array_equal(ranks.numpy(), placed.argsort(-1).argsort(-1).double().numpy())


def test_a_head_tests_its_first_images_exactly_as_a_test_of_those_images_alone():
    images, masks = placed_squares(6)
    maps = method_maps(images, masks)["mask"]
    whole = ChanceTest(BrightModel(), images, 1, masks, seed=4, **OPTIONS)
    whole.test(maps)  # draws every image's noise and scores every image's unstructured chance maps
    head = whole.head(3)
    assert whole.head(3) is head and whole.head(6) is whole and len(head.images) == 3
    alone = ChanceTest(BrightModel(), images[:3], 1, masks[:3], seed=4, **OPTIONS)
    assert_same(head.test(maps[:3]), alone.test(maps[:3]), exact=False)
    controls, fresh = head.controls(maps[:3]), alone.controls(maps[:3])
    assert list(controls) == list(CONTROLS)
    for name in CONTROLS:
        assert_same(controls[name], fresh[name], exact=False)
    for bad in (0, 7, 2.0, True):
        with pytest.raises(MetricError, match="head"):
            whole.head(bad)


def test_the_total_variation_of_a_permuted_map_is_read_from_its_scaled_values_placed_alike():
    from binsight.metrics.noise import robust_unit, total_variation, tv_of_unit

    rng = np.random.default_rng(5)
    maps = torch.from_numpy(np.stack([smooth_field(1.0, 3), np.where(rng.random((28, 28)) < 0.6, 0.0, 1.0),
                                      np.full((28, 28), 2.0)])[:, None])  # smooth, tied, constant
    perm = torch.from_numpy(rng.permutation(28 * 28))
    permuted = maps.flatten(1)[:, perm].view(maps.shape)
    placed = robust_unit(maps)[:, perm].view(maps.shape)
    np.testing.assert_array_equal(tv_of_unit(placed), total_variation(permuted))  # NaN for the constant map too


def test_known_deletion_ends_and_per_image_road_noise_give_the_same_scores_alone_or_in_company():
    images, masks = placed_squares(4)
    maps = method_maps(images, masks)["noise"]
    model = BrightModel()
    whole = faithfulness.deletion_area(model, images, maps, 1, steps=5, substrate="blur")
    substrate = make_substrate(images, "blur", blur_sigma=None)
    every = torch.arange(4)
    none = faithfulness.target_probabilities(model, lambda k: images[k], every, torch.ones(4, dtype=torch.long), 8)[0]
    full = faithfulness.target_probabilities(model, lambda k: substrate[k], every, torch.ones(4, dtype=torch.long), 8)[0]
    counting = Counting()
    read = faithfulness.deletion_area(counting, images, maps, 1, steps=5, substrate="blur", ends=(none, full))
    np.testing.assert_allclose(read, whole, rtol=0, atol=1e-12)
    assert counting.seen == 4 * (5 - 1)  # the two ends read, not evaluated
    with pytest.raises(MetricError, match="ends"):
        faithfulness.deletion_area(model, images, maps, 1, steps=5, ends=(none[:2], full))

    fields = torch.from_numpy(np.random.default_rng(0).standard_normal(images.shape))
    together = faithfulness.road(model, images, maps, 1, percentages=(30, 70), noise_fields=fields).area
    alone = [faithfulness.road(model, images[i:i + 1], maps[i:i + 1], 1, percentages=(30, 70),
                               noise_fields=fields[i:i + 1]).area[0] for i in range(4)]
    np.testing.assert_allclose(together, alone, rtol=0, atol=1e-12)  # the stream of a seed would differ
    with pytest.raises(MetricError, match="noise_fields"):
        faithfulness.road(model, images, maps, 1, noise_fields=fields[:2])
