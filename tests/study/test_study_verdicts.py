"""Verdicts on synthetic tables whose answer is known (from synthetic maps, or from chosen per-image values
with noise), and their JSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
from scipy import ndimage, stats

from binsight.study.config import VerdictsConfig
from binsight.study.store import Row
from binsight.study.verdicts import (
    ALIKE,
    DIFFER,
    MODEL_PROPERTY,
    MONTE_CARLO,
    UNSTABLE,
    ModelInfo,
    Status,
    StudyVerdicts,
    VerdictError,
    VerdictSettings,
    combine,
    compute_verdicts,
)

SETTINGS = VerdictSettings(n_resamples=300)
N = 48


def make_models(n_fp: int = 3, n_bnn: int = 3, surrogates: tuple[str, ...] = ()) -> list[ModelInfo]:
    models = [ModelInfo(f"fp-{i}", "fp", str(i), "") for i in range(n_fp)]
    models += [ModelInfo(f"bnn-{i}", "bnn", str(i), "ste") for i in range(n_bnn)]
    models += [ModelInfo(f"bnn-{i}+{s}", "bnn", str(i), s) for s in surrogates for i in range(n_bnn)]
    return models


def table_pairs(models: list[ModelInfo]) -> list[tuple[ModelInfo, ModelInfo, str]]:
    """The pairs a study computes: base pairs, and (fp, bnn+s), (bnn+s, bnn+s) per surrogate s."""
    out = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            if a.precision == "bnn" and b.precision == "bnn" and a.surrogate != b.surrogate:
                continue
            kind = "fp-bnn" if a.precision != b.precision else f"{a.precision}-{a.precision}"
            out.append((a, b, kind))
    return out


def pair_rows(method: str, measure: str, models: list[ModelInfo], level, *, sd: float = 0.05, chance: float = 0.0,
              seed: int = 0, n: int = N) -> list[Row]:
    """Pair rows: value = level(kind, a, b) + per-image noise; the shuffled measure at ``chance``."""
    rng = np.random.default_rng(seed)
    rows = []
    for a, b, kind in table_pairs(models):
        mean = level(kind, a, b) if callable(level) else level[kind]
        rows += [Row(measure, method, a.name, b.name, 0, i, float(mean + rng.normal(0, sd))) for i in range(n)]
        rows += [Row(f"{measure}_shuffled", method, a.name, b.name, 0, i, float(chance + rng.normal(0, sd)))
                 for i in range(n)]
    return rows


def single_rows(method: str, measure: str, models: list[ModelInfo], level, *, sd: float = 0.05, seed: int = 0,
                images: range = range(N)) -> list[Row]:
    rng = np.random.default_rng(seed)
    return [Row(measure, method, m.name, "", 0, i, float((level(m) if callable(level) else level[m.precision])
                                                           + rng.normal(0, sd))) for m in models for i in images]


def verdict(rows: list[Row], models: list[ModelInfo], number: int, settings: VerdictSettings = SETTINGS, **kw):
    return compute_verdicts(rows, models, settings, **kw).verdicts[number - 1]


# ------------------------------------------------------------------------------------------------------
# synthetic maps


def smooth_maps(rng: np.random.Generator, n: int, size: int = 16) -> np.ndarray:
    return ndimage.gaussian_filter(rng.normal(size=(n, size, size)), sigma=(0, 2, 2))


def top_k_iou(a: np.ndarray, b: np.ndarray, k: float = 0.1) -> float:
    m = int(k * a.size)
    ta, tb = set(np.argsort(a.ravel())[-m:]), set(np.argsort(b.ravel())[-m:])
    return len(ta & tb) / len(ta | tb)


def total_variation(x: np.ndarray) -> float:
    return float((np.abs(np.diff(x, axis=0)).mean() + np.abs(np.diff(x, axis=1)).mean()) / np.abs(x).mean())


def high_frequency_energy(x: np.ndarray) -> float:
    power = np.abs(np.fft.fft2(x - x.mean())) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(x.shape[0]), np.fft.fftfreq(x.shape[1]), indexing="ij"))
    return float(power[f > 0.25].sum() / power.sum())


def rows_from_maps(maps: dict[str, np.ndarray], models: list[ModelInfo], method: str) -> list[Row]:
    """Similarity rows (and their image-shuffled chance: image i against image i + 1) and noise rows."""
    rows = []
    for a, b, _ in table_pairs(models):
        ma, mb = maps[a.name], maps[b.name]
        for i in range(len(ma)):
            j = (i + 1) % len(ma)
            for name, fn in (("spearman", lambda x, y: stats.spearmanr(x.ravel(), y.ravel()).statistic),
                             ("top_k_iou", top_k_iou)):
                rows.append(Row(name, method, a.name, b.name, 0, i, float(fn(ma[i], mb[i]))))
                rows.append(Row(f"{name}_shuffled", method, a.name, b.name, 0, i, float(fn(ma[i], mb[j]))))
    for m in models:
        for i, x in enumerate(maps[m.name]):
            rows.append(Row("total_variation", method, m.name, "", 0, i, total_variation(x)))
            rows.append(Row("high_frequency_energy", method, m.name, "", 0, i, high_frequency_energy(x)))
    return rows


MAP_SETTINGS = dataclasses.replace(SETTINGS, similarity_measures=("spearman", "top_k_iou"))


def test_identical_maps_are_alike_and_held():
    models = make_models()
    base = np.abs(smooth_maps(np.random.default_rng(0), 32))
    rows = rows_from_maps({m.name: base for m in models}, models, "gradient")
    v = verdict(rows, models, 1, MAP_SETTINGS)
    assert v.status == Status.HELD and v.reading == ALIKE
    assert [p.name for p in v.parts] == ["spearman", "top_k_iou"] and all(p.reading == ALIKE for p in v.parts)
    assert v.parts[0].levels["FP-vs-BNN"].value == pytest.approx(1.0)
    assert not v.fragile


def test_unrelated_maps_differ_and_are_not_held():
    models = make_models()
    rng = np.random.default_rng(1)
    fp_base, bnn_base = np.abs(smooth_maps(rng, 32)), np.abs(smooth_maps(rng, 32))
    maps = {m.name: (fp_base if m.precision == "fp" else bnn_base) + 0.02 * rng.normal(size=fp_base.shape)
            for m in models}
    v = verdict(rows_from_maps(maps, models, "gradient"), models, 1, MAP_SETTINGS)
    assert v.status == Status.NOT_HELD and v.reading == DIFFER
    fb_minus_chance = v.parts[0].comparisons[2]
    assert abs(fb_minus_chance.estimate.value) < 0.1 and fb_minus_chance.status != Status.HELD  # at chance


def test_bnn_maps_with_structured_noise_are_noisier():
    models = make_models()
    rng = np.random.default_rng(2)
    base = np.abs(smooth_maps(rng, 32)) + 0.1
    checker = np.indices(base.shape[1:]).sum(axis=0) % 2 * 2 - 1.0
    noisy = base + 0.3 * base.std() * checker * rng.uniform(0.5, 1.0, base.shape)
    maps = {m.name: (base if m.precision == "fp" else noisy) + 0.01 * rng.normal(size=base.shape) for m in models}
    v = verdict(rows_from_maps(maps, models, "smoothgrad"), models, 2)
    assert v.status == Status.HELD and [p.status for p in v.parts] == [Status.HELD, Status.HELD]
    assert v.parts[0].estimate.effect > 1
    assert v.parts[0].levels["BNN"].value > v.parts[0].levels["FP"].value
    same = {m.name: base + 0.01 * rng.normal(size=base.shape) for m in models}
    assert verdict(rows_from_maps(same, models, "smoothgrad"), models, 2).status == Status.NOT_HELD


# ------------------------------------------------------------------------------------------------------
# chosen values


LEVELS_ALIKE = {"fp-fp": 0.6, "fp-bnn": 0.6, "bnn-bnn": 0.6}


def test_unstable_bnn_seeds_read_as_unstable_not_as_a_difference():
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, {"fp-fp": 0.6, "fp-bnn": 0.2, "bnn-bnn": 0.2})
    v = verdict(rows, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    assert v.reading == UNSTABLE and v.status == Status.NOT_HELD
    assert "BNN-vs-BNN as low as FP-vs-BNN" in v.parts[0].sentence
    near_chance = pair_rows("gradient", "spearman", models, {"fp-fp": 0.05, "fp-bnn": 0.05, "bnn-bnn": 0.05})
    v = verdict(near_chance, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    assert v.reading == UNSTABLE and "FP-vs-FP near chance" in v.parts[0].sentence


def test_measures_that_disagree_give_partly_held():
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, LEVELS_ALIKE)
    rows += pair_rows("gradient", "ssim", models, {"fp-fp": 0.6, "fp-bnn": 0.3, "bnn-bnn": 0.6}, seed=1)
    v = verdict(rows, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman", "ssim")))
    assert [p.status for p in v.parts] == [Status.HELD, Status.NOT_HELD]
    assert v.status == Status.PARTLY_HELD and v.reading.startswith("measures disagree")
    assert v.fragile  # each measure alone gives another status
    assert {r.setting: r.status for r in v.robustness}["ssim only"] == Status.NOT_HELD


def test_interval_straddling_the_margin_is_inconclusive():
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, {"fp-fp": 0.6, "fp-bnn": 0.5, "bnn-bnn": 0.5}, sd=0.3)
    v = verdict(rows, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    first = v.parts[0].comparisons[0]
    assert first.estimate.low < -SETTINGS.similarity_margin < first.estimate.high
    assert first.status == Status.INCONCLUSIVE and v.status == Status.INCONCLUSIVE


def test_object_measures_are_parts_of_their_own():
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, LEVELS_ALIKE)
    rows += pair_rows("gradient", "spearman_object", models, {"fp-fp": 0.6, "fp-bnn": 0.2, "bnn-bnn": 0.6}, seed=2)
    v = verdict(rows, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    assert [(p.name, p.reading) for p in v.parts] == [("spearman", ALIKE), ("spearman_object", DIFFER)]
    assert v.status == Status.PARTLY_HELD
    # inside the object no chance level was measured: maps as alike as the seeds' cannot be told from noise
    no_chance = [r for r in rows if r.measure != "spearman_object" and r.measure != "spearman_object_shuffled"]
    no_chance += [r for r in pair_rows("gradient", "spearman_object", models, LEVELS_ALIKE, seed=3)
                  if r.measure == "spearman_object"]
    v = verdict(no_chance, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    assert [p.status for p in v.parts] == [Status.HELD, Status.INCONCLUSIVE] and v.status == Status.INCONCLUSIVE
    assert "No image-shuffled chance level" in v.parts[1].sentence


def test_a_verdict_that_flips_under_a_surrogate_is_fragile():
    models = make_models(surrogates=("approx",))

    def level(kind, a, b):
        variant = "+" in a.name or "+" in b.name
        return 0.2 if kind == "fp-bnn" and variant else 0.6

    rows = pair_rows("gradient", "spearman", models, level)
    v = verdict(rows, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    assert v.status == Status.HELD and v.fragile
    row = {r.setting: r for r in v.robustness}["BNNs explained with surrogate approx"]
    assert row.changed and row.status == Status.NOT_HELD
    assert "surrogate approx" in v.sentence
    steady = verdict(pair_rows("gradient", "spearman", models, LEVELS_ALIKE), models, 1,
                     dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    assert steady.status == Status.HELD and not steady.fragile


def test_a_verdict_that_flips_at_half_the_margin_is_fragile():
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, {"fp-fp": 0.6, "fp-bnn": 0.52, "bnn-bnn": 0.6}, sd=0.01)
    v = verdict(rows, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    rows_by = {r.setting: r for r in v.robustness}
    assert v.status == Status.HELD and v.fragile
    assert rows_by["margins at half the default"].status == Status.NOT_HELD
    assert not rows_by["margins at twice the default"].changed


def test_one_model_per_precision_has_no_baseline_and_says_what_intervals_cover():
    models = make_models(1, 1)
    rows = pair_rows("gradient", "spearman", models, LEVELS_ALIKE)
    rows += single_rows("smoothgrad", "total_variation", models, {"fp": 1.0, "bnn": 1.5})
    out = compute_verdicts(rows, models, SETTINGS)
    assert out.verdicts[0].status == Status.NOT_MEASURED  # no FP-vs-FP nor BNN-vs-BNN pair
    est = out.verdicts[1].parts[0].estimate
    assert out.verdicts[1].parts[0].status == Status.HELD
    assert "the interval does not cover model variance" in est.covers


def test_empty_table_is_not_measured():
    out = compute_verdicts([], make_models(), SETTINGS)
    assert [v.status for v in out.verdicts] == [Status.NOT_MEASURED] * 5
    assert out.predictions.all_agree is None and out.per_pair == () and out.undefined == ()


def test_gradcam_is_judged_against_its_own_baselines():
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, {"fp-fp": 0.8, "fp-bnn": 0.8, "bnn-bnn": 0.8})
    # GradCAM FP-vs-BNN far below Gradient's, but no lower than GradCAM's own BNN seeds
    rows += pair_rows("gradcam", "spearman", models, {"fp-fp": 0.7, "fp-bnn": 0.3, "bnn-bnn": 0.3}, seed=1)
    rows += single_rows("gradcam", "below_chance", models, {"fp": 0.0, "bnn": 0.0}, sd=0.0)
    settings = dataclasses.replace(SETTINGS, similarity_measures=("spearman",))
    v = verdict(rows, models, 3, settings)
    assert v.parts[0].reading == UNSTABLE and v.parts[0].status == Status.NOT_HELD
    differ = pair_rows("gradcam", "spearman", models, {"fp-fp": 0.7, "fp-bnn": 0.3, "bnn-bnn": 0.7}, seed=1)
    v = verdict(differ + rows[-len(models) * N:], models, 3, settings)
    assert v.parts[0].reading == DIFFER and v.parts[0].status == Status.HELD


def test_below_chance_fraction_and_degenerate_maps_counted_apart():
    models = make_models()
    rng = np.random.default_rng(3)
    rows = pair_rows("gradcam", "spearman", models, {"fp-fp": 0.7, "fp-bnn": 0.3, "bnn-bnn": 0.7})
    rows += [Row("below_chance", "gradcam", m.name, "", 0, i, float(rng.random() < (0.3 if m.precision == "bnn" else 0.02)))
             for m in models for i in range(N)]
    rows += [Row("degenerate", "gradcam", m.name, "", 0, i, float(m.name == "bnn-0" and i < 12))
             for m in models for i in range(N)]
    settings = dataclasses.replace(SETTINGS, similarity_measures=("spearman",))
    v = verdict(rows, models, 3, settings)
    below = v.parts[-1]
    assert below.name == "below chance" and below.status == Status.HELD
    assert below.levels["BNN"].value > 0.2 and below.levels["FP"].value < 0.1
    assert v.status == Status.HELD
    degenerate = v.checks[0]
    assert degenerate.levels["BNN"].value == pytest.approx(12 / (3 * N)) and degenerate.levels["FP"].value == 0
    same = [r for r in rows if r.measure != "below_chance"]
    same += [Row("below_chance", "gradcam", m.name, "", 0, i, 0.0) for m in models for i in range(N)]
    v = verdict(same, models, 3, settings)
    assert v.parts[-1].status == Status.NOT_HELD and v.status == Status.PARTLY_HELD


def test_convergence_check_tells_monte_carlo_noise_from_a_property_of_the_model():
    models = make_models()
    rows = single_rows("smoothgrad", "total_variation", models, {"fp": 1.0, "bnn": 1.5})
    subset = range(16)
    persists = rows + single_rows("smoothgrad-n200", "total_variation", models, {"fp": 0.9, "bnn": 1.3}, images=subset)
    shrinks = rows + single_rows("smoothgrad-n200", "total_variation", models, {"fp": 0.9, "bnn": 0.9}, images=subset)
    settings = dataclasses.replace(SETTINGS, noise_measures=("total_variation",))
    v = verdict(persists, models, 2, settings)
    assert v.checks[0].reading == MODEL_PROPERTY and v.reading == f"convergence: {MODEL_PROPERTY}"
    v = verdict(shrinks, models, 2, settings)
    assert v.status == Status.HELD and v.checks[0].reading == MONTE_CARLO
    assert v.checks[0].comparisons[0].estimate.n_images == 16  # compared on the same images


def faithfulness_rows(models, nm_better: bool, images: range = range(16)) -> list[Row]:
    """NeuroMask on ``images`` only, 0.2 better (or worse) than every other map on each measure."""
    rows = []
    for measure, lower in (("road_morf", True), ("road_lerf", False), ("deletion_blur_auc", True),
                           ("insertion_blur_auc", False)):
        good, bad, worse = (0.2, 0.4, 0.6) if lower else (0.6, 0.4, 0.2)
        nm = good if nm_better else worse
        rows += single_rows("neuromask", measure, models, {"fp": nm, "bnn": nm}, images=images, seed=1)
        for i, other in enumerate(("gradient", "gradcam", "random", "smooth-random")):
            rows += single_rows(other, measure, models, {"fp": bad, "bnn": bad}, seed=2 + i)
    return rows


def test_faithfulness_verdict_on_measures_it_does_not_optimise():
    models = make_models()
    methods = ["gradient", "gradcam", "neuromask", "random", "smooth-random"]
    v = verdict(faithfulness_rows(models, True), models, 4, methods=methods)
    assert v.status == Status.HELD and len(v.parts) == 4
    assert [c.name for c in v.parts[0].comparisons] == ["neuromask minus gradient", "neuromask minus gradcam"]
    assert v.parts[0].comparisons[0].estimate.value == pytest.approx(0.2, abs=0.03)  # lower ROAD MoRF is better
    assert v.parts[0].comparisons[0].estimate.n_images == 16 and "on 16 images" in v.parts[0].sentence
    assert v.parts[0].estimate == min((c.estimate for c in v.parts[0].comparisons), key=lambda e: e.value)
    assert [c.status for c in v.checks] == [Status.HELD] * 4  # against both chance maps
    assert {c.name.split(" minus ")[1] for c in v.checks[0].comparisons} == {"random", "smooth-random"}
    worse = verdict(faithfulness_rows(models, False), models, 4, methods=methods)
    assert worse.status == Status.NOT_HELD


# ------------------------------------------------------------------------------------------------------
# statuses, tables of the report, JSON


def test_combine_rules():
    H, N_, I, M = Status.HELD, Status.NOT_HELD, Status.INCONCLUSIVE, Status.NOT_MEASURED
    assert combine([H, H]) == H and combine([N_, N_, M]) == N_ and combine([H, N_]) == Status.PARTLY_HELD
    assert combine([H, N_, I]) == Status.PARTLY_HELD and combine([H, I]) == I and combine([N_, I]) == I
    assert combine([M, M]) == M and combine([]) == M


def test_per_pair_values_predictions_and_undefined_counts():
    models = make_models(2, 1)
    rows = pair_rows("gradient", "spearman", models, {"fp-fp": 0.6, "fp-bnn": 0.2, "bnn-bnn": 0.6}, sd=0.0, n=4)
    classes = {"fp-0": [1, 2, 3, 4], "fp-1": [1, 2, 3, 0], "bnn-0": [1, 2, 0, 0]}
    rows += [Row("predicted", "", name, "", 0, i, float(c)) for name, cs in classes.items() for i, c in enumerate(cs)]
    rows += [Row("correct", "", "fp-0", "", 0, i, 1.0) for i in range(4)]
    rows += [Row("spearman:undefined", "gradient", "fp-0", "bnn-0", 0, i, 1.0) for i in (5, 6)]
    out = compute_verdicts(rows, models, SETTINGS)
    pairs = {(p.measure, p.model, p.model_b): p for p in out.per_pair}
    assert pairs[("spearman", "fp-0", "bnn-0")].mean == pytest.approx(0.2) and pairs[("spearman", "fp-0", "bnn-0")].kind == "fp-bnn"
    assert pairs[("spearman", "fp-0", "fp-1")].n_images == 4
    assert out.predictions.all_agree == pytest.approx(0.5) and out.predictions.n_images == 4
    agree = {(p.model, p.model_b): p.fraction for p in out.predictions.pairs}
    assert agree == {("fp-0", "fp-1"): 0.75, ("fp-0", "bnn-0"): 0.5, ("fp-1", "bnn-0"): 0.75}
    assert out.predictions.accuracy == {"fp-0": 1.0}
    assert [(u.measure, u.model, u.model_b, u.count) for u in out.undefined] == [("spearman", "fp-0", "bnn-0", 2)]


def test_json_is_strict_and_round_trips():
    models = make_models(surrogates=("approx",))
    rows = pair_rows("gradient", "spearman", models, LEVELS_ALIKE)
    rows += single_rows("smoothgrad", "total_variation", models, {"fp": 1.0, "bnn": 1.5})
    rows += [Row("predicted", "", m.name, "", 0, i, 1.0) for m in models[:6] for i in range(3)]
    out = compute_verdicts(rows, models, SETTINGS)
    text = out.to_json()

    def refuse(name):
        raise AssertionError(f"non-strict JSON constant {name}")

    data = json.loads(text, parse_constant=refuse)
    assert data["verdicts"][0]["status"] == "held" and data["verdicts"][3]["status"] == "not measured"
    assert "covers" in data["verdicts"][1]["parts"][0]["estimate"]
    back = StudyVerdicts.from_json(text)
    assert back == out and isinstance(back.verdicts[0].status, Status)
    assert isinstance(back.verdicts[0].parts[0].comparisons[0].estimate.low, float)
    with pytest.raises(VerdictError, match="cannot be read"):
        StudyVerdicts.from_json('{"verdicts": 3}')


def test_settings_from_the_configuration_and_bad_models():
    config = VerdictsConfig(n_resamples=123, similarity_margin=0.2)
    settings = VerdictSettings.from_config(config)
    assert settings.n_resamples == 123 and settings.similarity_margin == 0.2
    assert settings.similarity_method == "gradient" and settings.chance_margin == VerdictSettings().chance_margin
    assert settings.scaled_margins(0.5).similarity_margin == pytest.approx(0.1)
    with pytest.raises(VerdictError, match="precision"):
        compute_verdicts([], [ModelInfo("x", "int8")], SETTINGS)
    with pytest.raises(VerdictError, match="repeat"):
        compute_verdicts([], [ModelInfo("x", "fp"), ModelInfo("x", "fp")], SETTINGS)


def test_the_method_each_verdict_is_about_is_a_setting():
    models = make_models()
    rows = pair_rows("my-method", "spearman", models, LEVELS_ALIKE)
    settings = dataclasses.replace(SETTINGS, similarity_method="my-method", similarity_measures=("spearman",))
    assert verdict(rows, models, 1, settings).status == Status.HELD
    assert verdict(rows, models, 1, dataclasses.replace(settings, similarity_method="gradient")).status == Status.NOT_MEASURED


def test_settings_defaults_agree_with_the_configuration_defaults():
    config, settings = VerdictsConfig(), VerdictSettings()
    shared = [f.name for f in dataclasses.fields(VerdictSettings) if hasattr(config, f.name)]
    assert len(shared) >= 10
    for name in shared:
        value = getattr(config, name)
        assert (tuple(value) if isinstance(value, list) else value) == getattr(settings, name), name


def test_each_verdict_setting_is_declared_once_in_the_configuration():
    """VerdictSettings is derived from VerdictsConfig: the same fields in the same order (verdicts.json's),
    but the runner's robustness_surrogates, plus chance_map_methods; a new configuration field appears here."""
    config_fields = [f.name for f in dataclasses.fields(VerdictsConfig)]
    settings_fields = [f.name for f in dataclasses.fields(VerdictSettings)]
    expected = [n for n in config_fields if n != "robustness_surrogates"]
    expected.insert(expected.index("faithfulness_method") + 1, "chance_map_methods")
    assert settings_fields == expected
    assert VerdictSettings().chance_map_methods == ("random", "smooth-random")
    assert VerdictSettings().margins() == ("similarity_margin", "chance_margin", "noise_margin", "below_chance_margin",
                                           "faithfulness_margin", "evidence_margin")
    with pytest.raises(dataclasses.FrozenInstanceError):
        VerdictSettings().seed = 1
    assert list(json.loads(StudyVerdicts.to_json(compute_verdicts([], make_models(), SETTINGS)))["settings"]) == expected
