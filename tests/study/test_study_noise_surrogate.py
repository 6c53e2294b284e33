"""Verdict 2's surrogate-free check: whether BNN maps' extra noise belongs to the network or to its surrogate.

Planted maps whose answer is known: FP maps and BNN SmoothGrad (surrogate) maps, and surrogate-free maps of
both at two sample counts whose Monte Carlo noise shrinks as n^-1/2; the BNN's surrogate-free maps carry
extra noise of their own (the network's) or none (the surrogate's)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from scipy import ndimage

from binsight.metrics import noise
from binsight.study.inference import CANNOT_TELL
from binsight.study.store import Row
from binsight.study.verdicts import ModelInfo, Status, VerdictSettings, compute_verdicts
from binsight.study.verdicts.faithfulness import other_methods
from binsight.study.verdicts.noise import NETWORK, NO_EXTRA, SURROGATE, attribution
from binsight.study.verdicts.table import Context, Table

SETTINGS = VerdictSettings()
FREE, FREE_MANY = SETTINGS.surrogate_free_method, SETTINGS.surrogate_free_convergence_method
SAMPLES = {"smoothgrad": 50, "smoothgrad-n200": 200, FREE: 4000, FREE_MANY: 16000}
IMAGES, SIZE = 16, 16
MEASURES = ("total_variation", "high_frequency_energy")


def models() -> list[ModelInfo]:
    return [ModelInfo(f"{p}-{i}", p, str(i), "ste" if p == "bnn" else "") for p in ("fp", "bnn") for i in range(3)]


def planted_rows(*, surrogate_extra: float, network_extra: float | tuple[float, ...], mc: float = 0.3) -> list[Row]:
    """Noise rows of planted maps: every model's maps = a smooth signal of the image (+ a little of the model's
    own) + white noise: SmoothGrad's FP maps 0.05, its BNN maps 0.05 + ``surrogate_extra``; the surrogate-free
    maps ``mc`` x (4000 / n)^1/2 of Monte Carlo noise (FP and BNN alike) + for BNN ``network_extra`` (one
    value, or one per BNN) of the network's own, the same at both sample counts."""
    rng = np.random.default_rng(0)
    signal = np.abs(ndimage.gaussian_filter(rng.normal(size=(IMAGES, SIZE, SIZE)), sigma=(0, 2, 2))) * 10
    rows = []
    for index, m in enumerate(models()):
        own = signal + 0.2 * np.abs(ndimage.gaussian_filter(rng.normal(size=signal.shape), sigma=(0, 2, 2))) * 10
        bnn = m.precision == "bnn"
        extra = network_extra[index - 3] if bnn and isinstance(network_extra, tuple) else network_extra if bnn else 0.0
        structure = extra * rng.normal(size=signal.shape)  # the BNN's own extra noise, at every sample count
        maps = {"smoothgrad": own + (0.05 + (surrogate_extra if bnn else 0.0)) * rng.normal(size=signal.shape)}
        for label, n in ((FREE, 4000), (FREE_MANY, 16000)):
            maps[label] = own + structure + mc * (4000 / n) ** 0.5 * rng.normal(size=signal.shape)
        for label, values in maps.items():
            stack = torch.from_numpy(np.abs(values))[:, None]
            for measure in MEASURES:
                rows += [Row(measure, label, m.name, "", 0, i, float(v)) for i, v in
                         enumerate(getattr(noise, measure)(stack))]
    return rows


def noise_verdict(rows: list[Row], samples=SAMPLES, methods=None):
    settings = dataclasses.replace(SETTINGS, noise_measures=MEASURES)
    return compute_verdicts(rows, models(), settings, samples=samples, methods=methods).verdicts[1]


def free_checks(v) -> dict:
    return {c.name.removesuffix(" without the surrogate"): c for c in v.checks if c.name.endswith("without the surrogate")}


def test_extra_noise_only_with_the_surrogate_belongs_to_the_surrogate():
    v = noise_verdict(planted_rows(surrogate_extra=0.6, network_extra=0.0, mc=0.15))
    assert v.status == Status.HELD  # SmoothGrad's BNN maps are noisier; the check does not change that
    for measure, check in free_checks(v).items():
        assert check.reading == SURROGATE and check.status == Status.NOT_HELD, measure
        assert check.comparisons[0].status == Status.HELD  # noisier with the surrogate, on the same images
        assert abs(check.estimate.value) < SETTINGS.noise_margin
        assert check.comparisons[0].estimate.n_images == IMAGES
    assert v.reading.endswith(f"; extra noise: {SURROGATE}") and f"Reading: {v.reading}." in v.sentence


def test_extra_noise_that_stays_without_the_surrogate_belongs_to_the_network():
    v = noise_verdict(planted_rows(surrogate_extra=0.6, network_extra=0.6))
    for measure, check in free_checks(v).items():
        assert check.reading == NETWORK and check.status == Status.HELD, measure
        assert check.estimate.low > SETTINGS.noise_margin
        assert check.p_value < 0.025
    assert v.reading.endswith(f"; extra noise: {NETWORK}") and "extra noise: belongs to the network." in \
        free_checks(v)["total_variation"].sentence


def test_surrogate_free_maps_that_did_not_settle_cannot_tell():
    """The extrapolation assumes small Monte Carlo noise: one unsettled map at the larger count is enough."""
    rows = planted_rows(surrogate_extra=0.6, network_extra=0.6)
    flags = [Row("unsettled", FREE_MANY, m.name, "", 0, i, float(m.name == "bnn-1" and i == 3))
             for m in models() for i in range(IMAGES)]
    check = free_checks(noise_verdict(rows + flags))["total_variation"]
    assert check.status == Status.HELD and check.reading == CANNOT_TELL
    assert "1 of its maps at 16000 samples did not settle" in check.sentence
    settled = [dataclasses.replace(r, value=0.0) for r in flags]
    assert free_checks(noise_verdict(rows + settled))["total_variation"].reading == NETWORK


def test_extra_noise_of_one_bnn_seed_only_cannot_tell():
    """One BNN seed's surrogate-free maps noisier, two not: 3 seeds cannot say whether a fourth would be."""
    v = noise_verdict(planted_rows(surrogate_extra=0.6, network_extra=(1.2, 0.0, 0.0)))
    check = free_checks(v)["total_variation"]
    assert check.status == Status.INCONCLUSIVE and check.reading == CANNOT_TELL
    assert check.estimate.low < SETTINGS.noise_margin < check.estimate.high


def test_monte_carlo_noise_of_the_surrogate_free_maps_is_extrapolated_away():
    """More Monte Carlo noise in BNN maps than in FP maps at both counts (+0.15 and +0.075 of total variation,
    shrinking as n^-1/2): at the sample counts themselves BNN maps read noisier, at infinitely many they do not."""
    rows = planted_rows(surrogate_extra=0.6, network_extra=0.0)
    bnn = {m.name for m in models() if m.precision == "bnn"}
    shifted = [dataclasses.replace(r, value=r.value + 0.15 * (4000 / SAMPLES[r.method]) ** 0.5)
               if r.method in (FREE, FREE_MANY) and r.model in bnn and r.measure == "total_variation" else r
               for r in rows]
    check = free_checks(noise_verdict(shifted))["total_variation"]
    few, many = check.comparisons[1:]
    assert few.status == many.status == Status.HELD  # noisier at 4000 and at 16000 samples ...
    assert check.reading == SURROGATE and abs(check.estimate.value) < SETTINGS.noise_margin  # ... not in the limit


def test_without_the_surrogate_free_maps_the_verdict_is_as_before():
    rows = [r for r in planted_rows(surrogate_extra=0.6, network_extra=0.6) if r.method not in (FREE, FREE_MANY)]
    v = noise_verdict(rows)
    assert not free_checks(v) and "extra noise" not in v.reading
    rows = [r for r in planted_rows(surrogate_extra=0.6, network_extra=0.6) if r.method != FREE_MANY]
    assert not free_checks(noise_verdict(rows, methods=["smoothgrad"]))  # not run: nothing shown
    missing = free_checks(noise_verdict(rows, methods=["smoothgrad", FREE]))  # run, one sample count only
    assert missing["total_variation"].status == Status.NOT_MEASURED
    assert f"not measured (no maps of {FREE_MANY})" in missing["total_variation"].sentence
    no_counts = noise_verdict(planted_rows(surrogate_extra=0.6, network_extra=0.6), samples={})
    assert "sample counts" in free_checks(no_counts)["total_variation"].sentence
    assert "extra noise" not in no_counts.reading


def test_no_extra_noise_with_the_surrogate_leaves_nothing_to_attribute():
    v = noise_verdict(planted_rows(surrogate_extra=0.0, network_extra=0.6))
    check = free_checks(v)["total_variation"]
    assert check.status == Status.HELD and check.reading == NO_EXTRA  # noisier without the surrogate, not with it


@pytest.mark.parametrize("with_surrogate, without, reading", [
    (Status.HELD, Status.HELD, NETWORK), (Status.HELD, Status.NOT_HELD, SURROGATE),
    (Status.HELD, Status.INCONCLUSIVE, CANNOT_TELL), (Status.INCONCLUSIVE, Status.NOT_HELD, CANNOT_TELL),
    (Status.NOT_HELD, Status.HELD, NO_EXTRA), (Status.HELD, Status.NOT_MEASURED, CANNOT_TELL),
])
def test_attribution(with_surrogate, without, reading):
    assert attribution(with_surrogate, without) == reading


def test_the_surrogate_free_methods_are_not_competitors_in_verdict_4():
    ctx = Context(Table([]), models(), SETTINGS, ["gradient", "smoothgrad", "gradcam", "neuromask", FREE])
    assert other_methods(ctx) == ["gradient", "smoothgrad", "gradcam"]
