"""The study's measure functions (binsight.study.measures): deletion, insertion and ROAD read tied pixels as a
group, so no order of them moves a score; the top-k IoU takes them in a seeded random order, never row-major."""

from __future__ import annotations

import numpy as np
import torch

from binsight.metrics import faithfulness
from binsight.metrics.faithfulness import pixel_ranks
from binsight.metrics.similarity import top_k_iou
from binsight.study.measures import faithfulness_scores, pair_values
from support import TinyNet

RANKED = ("deletion_auc", "insertion_auc", "deletion_blur_auc", "insertion_blur_auc", "road_morf", "road_lerf")


def tied_maps(n: int = 3, size: int = 8) -> torch.Tensor:
    """GradCAM-like maps: about half the pixels exactly 0 (ReLU), the rest distinct positive values."""
    values = torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    return torch.where(values > 0.5, values, torch.zeros_like(values))


def scores(maps: torch.Tensor, seed: int) -> dict[str, np.ndarray]:
    torch.manual_seed(0)
    model = TinyNet(channels=1).eval()
    images = torch.rand(len(maps), 1, 8, 8, generator=torch.Generator().manual_seed(1))
    return faithfulness_scores(model, images, maps, torch.zeros(len(maps), dtype=torch.long), steps=8,
                               percentages=(30.0, 70.0), batch_size=64, seed=seed)[1]


def test_faithfulness_scores_do_not_depend_on_the_order_of_tied_pixels(monkeypatch):
    maps = tied_maps()
    as_a_group = scores(maps, seed=5)
    # the same maps with their ties cut in a seeded order (0 = most salient), written as maps without ties
    in_one_order = [scores(-pixel_ranks(maps, tie_seed=t).double(), seed=5) for t in (0, 1)]
    assert any(not np.allclose(in_one_order[0][name], in_one_order[1][name]) for name in RANKED)  # orders matter
    for tie_seed in (0, 1):  # the ranks the measures take in those orders: nothing moves
        monkeypatch.setattr(faithfulness, "pixel_ranks", lambda m, *_, t=tie_seed: pixel_ranks(m, tie_seed=t))
        again = scores(maps, seed=5)
        for name in RANKED:
            np.testing.assert_allclose(again[name], as_a_group[name], rtol=0, atol=1e-9, err_msg=name)


def test_pair_values_take_tied_pixels_of_the_top_k_in_the_seeded_order():
    a = torch.zeros(2, 1, 8, 8, dtype=torch.float64)
    a[:, :, :, :4] = 1.0  # left half tied at the top
    b = torch.zeros_like(a)
    b[:, :, :4, :] = 1.0  # top half tied at the top
    values = pair_values(a, b, top_k=0.1, masks=None, perm=None, tie_seed=3)
    np.testing.assert_array_equal(values["top_k_iou"], top_k_iou(a, b, 0.1, tie_seed=3))
    row_major = top_k_iou(a, b, 0.1)  # both top sets start at pixel (0, 0): 4 of 6 pixels shared
    assert row_major[0] == 0.5 and not np.array_equal(values["top_k_iou"], row_major)


def test_shared_chance_keeps_one_test_per_chunk_of_the_current_model_and_targets():
    from types import SimpleNamespace

    from binsight.study.stages.measures import SharedChance

    measures = SimpleNamespace(chance_maps=10, road_percentages=[50.0], mask_dilation=1)
    ctx = SimpleNamespace(config=SimpleNamespace(measures=measures), plan=SimpleNamespace(batch_size=32))
    first, second = (SimpleNamespace(name=name, base="", module=TinyNet(channels=1).eval()) for name in ("fp", "bnn"))
    images, targets = torch.rand(3, 1, 8, 8), torch.tensor([0, 1, 0])
    shared = SharedChance()
    test = shared.test(ctx, first, 0, images, targets, None)
    assert shared.test(ctx, first, 0, images, targets.clone(), None) is test  # another method, same targets
    assert test.seed == 0 and test.n_chance == 10 and test.model is first.module
    assert shared.test(ctx, first, 1, images, targets, None) is not test  # another chunk: its own seed
    variant = SimpleNamespace(name="fp+approx", base="fp", module=first.module)  # the same forward pass
    assert shared.test(ctx, variant, 0, images, targets, None) is test
    assert shared.test(ctx, first, 0, images, torch.tensor([1, 1, 0]), None) is not test  # other targets
    other_model = shared.test(ctx, second, 0, images, targets, None)
    assert other_model.model is second.module and set(shared.tests) == {0}  # the first model's tests dropped


def test_controls_are_tested_on_the_first_control_images_of_the_chance_tested_ones():
    from types import SimpleNamespace

    from binsight.study.stages.measures import control_count

    def ctx(control_images, chance_images=128, controls=True):
        measures = SimpleNamespace(chance_controls=controls, control_images=control_images, chance_images=chance_images)
        return SimpleNamespace(config=SimpleNamespace(measures=measures, data=SimpleNamespace(n_images=128)),
                               plan=SimpleNamespace(chunk_size=20))

    assert [control_count(ctx(32), chunk, 20) for chunk in range(3)] == [20, 12, 0]  # images 0-19, 20-31, none
    assert control_count(ctx(0), 2, 20) == 20  # 0: every chance-tested image
    assert control_count(ctx(0, chance_images=50), 2, 10) == 10 and control_count(ctx(0, chance_images=50), 3, 0) == 0
    assert control_count(ctx(32, controls=False), 0, 20) == 0
