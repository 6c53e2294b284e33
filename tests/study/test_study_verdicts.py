"""Verdicts on synthetic tables whose answer is known (from synthetic maps, or from chosen per-image values
with noise), and their JSON."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from scipy import ndimage, stats

from binsight.metrics import noise

from binsight.study.config import VerdictsConfig
from binsight.study.measures import CONTROL_MEASURES
from binsight.study.store import Row
from binsight.study.verdicts import (
    ALIKE,
    DIFFER,
    MODEL_PROPERTY,
    MONTE_CARLO,
    NOT_REPRODUCIBLE,
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
              seed: int = 0, n: int = N, image_sd: float | None = None) -> list[Row]:
    """Pair rows: value = level(kind, a, b) + an effect of the image shared by every pair (SD ``image_sd``,
    default 2 ``sd``: some images' maps are easier to agree on) + per-pair noise (SD ``sd``); the shuffled
    measure at ``chance`` + noise."""
    rng = np.random.default_rng(seed)
    image = rng.normal(0, 2 * sd if image_sd is None else image_sd, n)
    rows = []
    for a, b, kind in table_pairs(models):
        mean = level(kind, a, b) if callable(level) else level[kind]
        rows += [Row(measure, method, a.name, b.name, 0, i, float(mean + image[i] + rng.normal(0, sd))) for i in range(n)]
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
        stack = torch.from_numpy(np.asarray(maps[m.name], dtype=np.float64))[:, None]
        ranked = {name: getattr(noise, name)(stack) for name in ("rank_total_variation", "rank_high_frequency_energy")}
        for i, x in enumerate(maps[m.name]):
            rows.append(Row("total_variation", method, m.name, "", 0, i, total_variation(x)))
            rows.append(Row("high_frequency_energy", method, m.name, "", 0, i, high_frequency_energy(x)))
            rows += [Row(name, method, m.name, "", 0, i, float(v[i])) for name, v in ranked.items()]
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
    fb_minus_chance = {c.name: c for c in v.parts[0].comparisons}["FP-vs-BNN minus chance"]
    assert abs(fb_minus_chance.estimate.value) < 0.1 and fb_minus_chance.status != Status.HELD  # at chance
    assert v.parts[0].estimate.high < 1 - MAP_SETTINGS.similarity_margin  # the agreement ratio


def test_seed_baselines_at_chance_read_not_reproducible():
    """Maps of independent smooth noise for every model: no pair agrees beyond chance, so the ratio has
    nothing to compare FP-vs-BNN with."""
    models = make_models()
    rng = np.random.default_rng(5)
    maps = {m.name: np.abs(smooth_maps(rng, 32)) for m in models}
    v = verdict(rows_from_maps(maps, models, "gradient"), models, 1, MAP_SETTINGS)
    assert [p.reading for p in v.parts] == [NOT_REPRODUCIBLE] * 2
    assert v.status == Status.INCONCLUSIVE and v.reading == NOT_REPRODUCIBLE
    assert {"chance FP-vs-BNN", "chance FP-vs-FP", "chance BNN-vs-BNN"} <= set(v.parts[0].levels)


def test_bnn_maps_with_structured_noise_are_noisier():
    models = make_models()
    rng = np.random.default_rng(2)
    base = np.abs(smooth_maps(rng, 32)) + 0.1
    checker = np.indices(base.shape[1:]).sum(axis=0) % 2 * 2 - 1.0
    noisy = base + 0.3 * base.std() * checker * rng.uniform(0.5, 1.0, base.shape)
    maps = {m.name: (base if m.precision == "fp" else noisy) + 0.01 * rng.normal(size=base.shape) for m in models}
    v = verdict(rows_from_maps(maps, models, "smoothgrad"), models, 2)
    assert v.status == Status.HELD and [p.status for p in v.parts] == [Status.HELD] * 4
    assert v.parts[0].estimate.effect > 1
    assert v.parts[0].levels["BNN"].value > v.parts[0].levels["FP"].value
    same = {m.name: base + 0.01 * rng.normal(size=base.shape) for m in models}
    assert verdict(rows_from_maps(same, models, "smoothgrad"), models, 2).status == Status.NOT_HELD


def test_a_monotone_remap_reads_noisier_by_value_measures_but_not_by_rank_measures():
    """BNN maps the square root of the FP maps (the same pixel order): total variation and high-frequency
    energy of the values read noisier, the rank-based measures read exactly the same."""
    models = make_models()
    rng = np.random.default_rng(4)
    base = np.abs(smooth_maps(rng, 32)) + 0.01 * rng.random((32, 16, 16))
    maps = {m.name: (base if m.precision == "fp" else np.sqrt(base)) for m in models}
    v = verdict(rows_from_maps(maps, models, "smoothgrad"), models, 2)
    parts = {p.name: p for p in v.parts}
    assert parts["rank_total_variation"].estimate.value == pytest.approx(0.0, abs=1e-9)
    assert parts["rank_high_frequency_energy"].estimate.value == pytest.approx(0.0, abs=1e-9)
    assert parts["rank_total_variation"].status == Status.NOT_HELD
    assert parts["high_frequency_energy"].estimate.value > 0.05  # the value measures move with the remap


# ------------------------------------------------------------------------------------------------------
# chosen values


LEVELS_ALIKE = {"fp-fp": 0.6, "fp-bnn": 0.6, "bnn-bnn": 0.6}


SPEARMAN = dataclasses.replace(SETTINGS, similarity_measures=("spearman",))


def test_differ_is_reachable_when_seed_baselines_are_barely_above_chance():
    """Seeds agree 0.08 above chance, FP-vs-BNN not at all: the old absolute margin (0.1) could not read
    "differ" here (FP-vs-BNN is within 0.1 of both baselines); the ratio is 0, far below 1 - margin."""
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, {"fp-fp": 0.08, "fp-bnn": 0.0, "bnn-bnn": 0.08}, sd=0.01)
    v = verdict(rows, models, 1, SPEARMAN)
    assert v.parts[0].reading == DIFFER and v.status == Status.NOT_HELD
    assert v.parts[0].estimate.value == pytest.approx(0.0, abs=0.05)
    # the other side: FP-vs-BNN as far above chance as the seeds, on the same small scale, reads alike
    alike = pair_rows("gradient", "spearman", models, {"fp-fp": 0.08, "fp-bnn": 0.08, "bnn-bnn": 0.08}, sd=0.01)
    v = verdict(alike, models, 1, SPEARMAN)
    assert v.parts[0].reading == ALIKE and v.status == Status.HELD


def test_the_reading_is_scale_free_and_each_kind_has_its_own_chance_level():
    models = make_models()

    def rows_at(scale):
        rows = pair_rows("gradient", "spearman", models, {"fp-fp": 0.6 * scale, "fp-bnn": 0.3 * scale,
                                                          "bnn-bnn": 0.6 * scale}, sd=0.01 * scale)
        return [dataclasses.replace(r, value=r.value + (0.1 * scale if r.measure.endswith("_shuffled") else 0))
                for r in rows]

    small, large = verdict(rows_at(1.0), models, 1, SPEARMAN), verdict(rows_at(10.0), models, 1, SPEARMAN)
    assert small.parts[0].estimate.value == pytest.approx(large.parts[0].estimate.value)
    assert small.parts[0].estimate.value == pytest.approx(0.2 / 0.5, abs=0.05)  # (0.3 - 0.1) / (0.6 - 0.1)
    assert small.parts[0].reading == large.parts[0].reading == DIFFER
    chance = {k: e.value for k, e in small.parts[0].levels.items() if k.startswith("chance")}
    assert chance == pytest.approx({"chance FP-vs-BNN": 0.1, "chance FP-vs-FP": 0.1, "chance BNN-vs-BNN": 0.1}, abs=0.02)


def test_seed_baselines_near_chance_read_not_reproducible():
    models = make_models()
    near_chance = pair_rows("gradient", "spearman", models, {"fp-fp": 0.0, "fp-bnn": 0.0, "bnn-bnn": 0.3})
    v = verdict(near_chance, models, 1, SPEARMAN)
    assert v.reading == NOT_REPRODUCIBLE and v.status == Status.INCONCLUSIVE
    assert {c.name: c.status for c in v.parts[0].comparisons}["FP-vs-FP minus chance"] != Status.HELD


def test_the_primary_measure_decides_and_a_disagreeing_secondary_is_shown_not_fragile():
    """Before #21 the verdict was "partly held" and fragile whenever measures disagreed (an uncorrected OR
    over parts); now the primary measure (spearman) decides and ssim is secondary."""
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, LEVELS_ALIKE)
    rows += pair_rows("gradient", "ssim", models, {"fp-fp": 0.6, "fp-bnn": 0.3, "bnn-bnn": 0.6}, seed=1)
    settings = dataclasses.replace(SETTINGS, similarity_measures=("spearman", "ssim"))
    v = verdict(rows, models, 1, settings)
    assert [p.status for p in v.parts] == [Status.HELD, Status.NOT_HELD] and v.primary == ("spearman",)
    assert v.status == Status.HELD and v.reading.startswith("measures disagree")
    assert "secondary: ssim not held" in v.sentence
    row = {r.setting: r for r in v.robustness}["ssim only"]
    assert row.status == Status.NOT_HELD and row.changed and row.secondary and not v.fragile
    other = verdict(rows, models, 1, dataclasses.replace(settings, primary_similarity="ssim"))
    assert other.status == Status.NOT_HELD and other.primary == ("ssim",)


def test_measures_disagree_only_when_one_holds_and_another_does_not():
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, {"fp-fp": 0.6, "fp-bnn": 0.5, "bnn-bnn": 0.5}, sd=0.3)
    rows += pair_rows("gradient", "ssim", models, {"fp-fp": 0.0, "fp-bnn": 0.0, "bnn-bnn": 0.3}, seed=1)
    v = verdict(rows, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman", "ssim")))
    assert [p.status for p in v.parts] == [Status.INCONCLUSIVE] * 2
    assert v.reading == f"by measure: spearman inconclusive; ssim {NOT_REPRODUCIBLE}"  # no "measures disagree"


def test_holm_across_the_findings_turns_a_borderline_held_into_inconclusive():
    from binsight.study.verdicts.compute import corrected
    from binsight.study.verdicts.records import Verdict

    def held(number, p):
        return Verdict(number, "t", "f", Status.HELD, (), "", "s.", primary=("m",), p_value=p)

    # each held on its own (p <= 0.025, the intervals' one-sided level); sorted: 0.001 x 3, 0.02 x 2, 0.021 x 1
    out = corrected([held(1, 0.02), held(2, 0.001), held(3, None), held(4, 0.021)], confidence=0.95)
    assert out[0].adjusted_p == pytest.approx(0.04) and out[1].adjusted_p == pytest.approx(0.003)
    assert out[3].adjusted_p == pytest.approx(0.04) and out[2].adjusted_p is None  # running maximum
    assert [v.status for v in out] == [Status.INCONCLUSIVE, Status.HELD, Status.HELD, Status.INCONCLUSIVE]
    assert "Holm" in out[0].sentence
    alone = corrected([held(1, 0.02)], confidence=0.95)[0]  # one test: no correction, held
    assert alone.status == Status.HELD and alone.adjusted_p == pytest.approx(0.02)


def test_interval_straddling_the_margin_is_inconclusive():
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, {"fp-fp": 0.6, "fp-bnn": 0.5, "bnn-bnn": 0.5}, sd=0.3)
    v = verdict(rows, models, 1, SPEARMAN)
    ratio = v.parts[0].estimate
    assert ratio.low < 1 - SETTINGS.similarity_margin < ratio.high
    assert v.parts[0].reading == "inconclusive" and v.status == Status.INCONCLUSIVE


def test_object_measures_are_parts_of_their_own():
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, LEVELS_ALIKE)
    rows += pair_rows("gradient", "spearman_object", models, {"fp-fp": 0.6, "fp-bnn": 0.2, "bnn-bnn": 0.6}, seed=2)
    v = verdict(rows, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    assert [(p.name, p.reading) for p in v.parts] == [("spearman", ALIKE), ("spearman_object", DIFFER)]
    assert v.status == Status.HELD  # the primary measure is the whole map's
    # inside the object no chance level was measured: maps as alike as the seeds' cannot be told from noise
    no_chance = [r for r in rows if r.measure != "spearman_object" and r.measure != "spearman_object_shuffled"]
    no_chance += [r for r in pair_rows("gradient", "spearman_object", models, LEVELS_ALIKE, seed=3)
                  if r.measure == "spearman_object"]
    v = verdict(no_chance, models, 1, dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    assert [p.status for p in v.parts] == [Status.HELD, Status.INCONCLUSIVE] and v.status == Status.HELD
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


def test_the_crossed_interval_covers_seed_variance_and_reports_its_split():
    """BNN seeds whose noise differs (1.0, 1.3, 1.6 against FP 1.0): 3 seeds say little about a fourth, so the
    interval is wide (model variance dominates the split); the same mean difference with seeds that agree
    holds, its variance from the images and the residual."""
    models = make_models()
    spread = {"bnn-0": 1.0, "bnn-1": 1.3, "bnn-2": 1.6}
    rows = single_rows("smoothgrad", "total_variation", models, lambda m: spread.get(m.name, 1.0), sd=0.02)
    settings = dataclasses.replace(SETTINGS, noise_measures=("total_variation",))
    part = verdict(rows, models, 2, settings).parts[0]
    assert part.estimate.value == pytest.approx(0.3, abs=0.02) and part.status == Status.INCONCLUSIVE
    assert part.estimate.split["models"] > 0.9 * part.estimate.se ** 2 and part.estimate.df < 5
    assert "crossed t-interval" in part.estimate.covers
    steady = single_rows("smoothgrad", "total_variation", models, {"fp": 1.0, "bnn": 1.3}, sd=0.02)
    part = verdict(steady, models, 2, settings).parts[0]
    assert part.status == Status.HELD and part.estimate.split["models"] < 0.5 * part.estimate.se ** 2
    assert sum(part.estimate.split.values()) == pytest.approx(part.estimate.se ** 2)
    data = json.loads(compute_verdicts(steady, models, settings).to_json())
    assert set(data["verdicts"][1]["parts"][0]["estimate"]["split"]) == {"models", "images", "residual"}


def test_one_model_per_precision_has_no_baseline_and_says_what_intervals_cover():
    models = make_models(1, 1)
    rows = pair_rows("gradient", "spearman", models, LEVELS_ALIKE)
    rows += single_rows("smoothgrad", "total_variation", models, {"fp": 1.0, "bnn": 1.5})
    out = compute_verdicts(rows, models, SETTINGS)
    assert out.verdicts[0].status == Status.NOT_MEASURED  # no FP-vs-FP nor BNN-vs-BNN pair
    est = out.verdicts[1].parts[0].estimate
    assert out.verdicts[1].parts[0].status == Status.HELD
    assert "does not cover BNN or FP model variance" in est.covers


def test_empty_table_is_not_measured():
    out = compute_verdicts([], make_models(), SETTINGS)
    assert [v.status for v in out.verdicts] == [Status.NOT_MEASURED] * 5
    assert out.predictions.all_agree is None and out.per_pair == () and out.undefined == ()


def test_gradcam_is_judged_against_its_own_baselines():
    models = make_models()
    rows = pair_rows("gradient", "spearman", models, {"fp-fp": 0.8, "fp-bnn": 0.8, "bnn-bnn": 0.8})
    # GradCAM FP-vs-BNN far below Gradient's, and GradCAM's own BNN seeds at chance: nothing to compare with
    rows += pair_rows("gradcam", "spearman", models, {"fp-fp": 0.7, "fp-bnn": 0.0, "bnn-bnn": 0.0}, seed=1)
    settings = dataclasses.replace(SETTINGS, similarity_measures=("spearman",))
    v = verdict(rows, models, 3, settings)
    assert v.parts[0].reading == NOT_REPRODUCIBLE and v.parts[0].status == Status.INCONCLUSIVE
    differ = pair_rows("gradcam", "spearman", models, {"fp-fp": 0.7, "fp-bnn": 0.3, "bnn-bnn": 0.7}, seed=1)
    v = verdict(differ, models, 3, settings)
    assert v.parts[0].reading == DIFFER and v.parts[0].status == Status.HELD


CONTROLS_BEHAVE = {"inverted": 1.0, "other image": 1.0, "edges": 0.0, "blob": 1.0}


def chance_rows(models: list[ModelInfo], nonsensical: dict[str, float], *, degenerate: dict[str, float] | None = None,
                controls: dict[str, float] | None = CONTROLS_BEHAVE, n: int = 16, method: str = "gradcam") -> list[Row]:
    """The chance test's rows of each model's first ``n`` maps: the first round(rate n) of a precision's maps
    flagged nonsensical, the first round(degenerate rate n) of them degenerate; each control flagged on
    round(rate n) of the maps."""
    degenerate = degenerate or {"fp": 0.0, "bnn": 0.0}
    rows = []
    for m in models:
        flagged, empty = round(nonsensical[m.precision] * n), round(degenerate[m.precision] * n)
        rows += [Row("nonsensical", method, m.name, "", 0, i, float(i < max(flagged, empty))) for i in range(n)]
        rows += [Row("degenerate", method, m.name, "", 0, i, float(i < empty)) for i in range(n)]
        for name, rate in (controls or {}).items():
            rows += [Row(CONTROL_MEASURES[name], method, m.name, "", 0, i, float(i < round(rate * n))) for i in range(n)]
    return rows


def nonsensical(rows: list[Row], models: list[ModelInfo]):
    v = verdict(rows, models, 3, dataclasses.replace(SETTINGS, similarity_measures=("spearman",)))
    return v, {p.name: p for p in v.parts}["nonsensical"], {c.name: c for c in v.checks}


def test_all_bnn_maps_empty_is_held_and_counted_as_degenerate():
    models = make_models()
    v, part, checks = nonsensical(chance_rows(models, {"fp": 0.0, "bnn": 1.0}, degenerate={"fp": 0.0, "bnn": 1.0}), models)
    assert part.status == Status.HELD and v.status == Status.HELD
    assert part.levels["BNN degenerate"].value == 1.0 and part.levels["BNN not better than chance"].value == 0.0
    assert part.levels["BNN nonsensical"].value == 1.0 and "100.0% = 0.0% not better than chance + 100.0% degenerate" in part.sentence
    assert checks["controls"].status == Status.HELD and checks["controls"].levels["inverted"].value == 1.0
    assert checks["degenerate"].levels["BNN"].value == 1.0
    assert part.p_value < 0.001


def test_none_of_48_maps_is_inconclusive_and_none_of_600_is_not_held():
    models = make_models()
    _, part, _ = nonsensical(chance_rows(models, {"fp": 0.0, "bnn": 0.0}), models)  # 3 models x 16 maps
    assert part.levels["BNN nonsensical"].high == pytest.approx(1 - 0.025 ** (1 / 48))  # exact: 7.4 %
    assert part.levels["BNN nonsensical"].high > 0.07 and part.status == Status.INCONCLUSIVE
    _, part, _ = nonsensical(chance_rows(models, {"fp": 0.0, "bnn": 0.0}, n=200), models)
    assert part.estimate.high < SETTINGS.nonsensical_margin and part.status == Status.NOT_HELD


def test_rates_are_clustered_by_model_and_split_into_not_better_and_degenerate():
    models = make_models()
    rows = chance_rows(models, {"fp": 0.0, "bnn": 0.5}, degenerate={"fp": 0.0, "bnn": 0.25})
    _, part, _ = nonsensical(rows, models)
    assert part.levels["BNN nonsensical"].value == pytest.approx(0.5)
    assert part.levels["BNN not better than chance"].value == pytest.approx(0.25)
    assert part.levels["BNN degenerate"].value == pytest.approx(0.25)
    assert part.status == Status.HELD
    # the same 24 flagged maps all from one model: the models disagree, the interval widens
    lumped = [r for r in rows if r.measure not in ("nonsensical", "degenerate")]
    lumped += [Row("nonsensical", "gradcam", m.name, "", 0, i, float(m.name == "bnn-0" and i < 24 or False))
               for m in models for i in range(16)] + [Row("degenerate", "gradcam", m.name, "", 0, i, 0.0)
                                                        for m in models for i in range(16)]
    lumped_part = nonsensical(lumped, models)[1]
    assert lumped_part.levels["BNN nonsensical"].value == pytest.approx(16 / 48)
    assert lumped_part.estimate.low < part.estimate.low - 0.1


def test_controls_that_misbehave_make_3b_unable_to_decide():
    models = make_models()
    empty = {"fp": 0.0, "bnn": 1.0}
    weak = chance_rows(models, empty, degenerate=empty, controls={**CONTROLS_BEHAVE, "inverted": 0.5})
    _, part, checks = nonsensical(weak, models)
    assert part.status == Status.INCONCLUSIVE and "cannot decide" in part.sentence and part.p_value is None
    assert checks["controls"].status == Status.NOT_HELD and "inverted maps flagged on 50%" in checks["controls"].sentence
    harsh = chance_rows(models, empty, degenerate=empty, controls={**CONTROLS_BEHAVE, "edges": 1.0})
    assert nonsensical(harsh, models)[1].status == Status.INCONCLUSIVE
    none = chance_rows(models, empty, degenerate=empty, controls=None)
    _, part, checks = nonsensical(none, models)
    assert part.status == Status.INCONCLUSIVE and checks["controls"].status == Status.NOT_MEASURED


SAMPLES = {"smoothgrad": 50, "smoothgrad-n200": 200}


def convergence(measure: str, fp: tuple[float, float], bnn: tuple[float, float], samples=SAMPLES):
    """Verdict 2's convergence check of ``measure`` with FP and BNN means (at 50, at 200 samples)."""
    models = make_models()
    rows = single_rows("smoothgrad", measure, models, {"fp": fp[0], "bnn": bnn[0]}, sd=0.02)
    rows += single_rows("smoothgrad-n200", measure, models, {"fp": fp[1], "bnn": bnn[1]}, images=range(16), sd=0.02)
    settings = dataclasses.replace(SETTINGS, noise_measures=(measure,), primary_noise=measure)
    return compute_verdicts(rows, models, settings, samples=samples).verdicts[1]


def test_a_difference_that_halves_from_50_to_200_samples_is_monte_carlo_noise():
    """Total variation falls as n^-1/2: +60 % at 50 samples and +30 % at 200 extrapolate to 0. The former
    check called this "a property of the model" whenever +30 % stayed above the margin."""
    v = convergence("total_variation", (1.0, 1.0), (1.6, 1.3))
    check = v.checks[0]
    assert check.reading == MONTE_CARLO and v.reading == f"convergence: {MONTE_CARLO}"
    assert check.estimate.value == pytest.approx(0.0, abs=0.02) and check.comparisons[1].estimate.value > 0.25
    assert check.comparisons[0].estimate.n_images == 16  # compared on the same images
    assert v.status == Status.HELD  # the check does not decide the verdict


def test_a_difference_that_stays_with_more_samples_is_a_property_of_the_model():
    stays = convergence("total_variation", (1.0, 1.0), (1.6, 1.55))
    assert stays.checks[0].reading == MODEL_PROPERTY and stays.checks[0].estimate.value == pytest.approx(0.5, abs=0.03)
    # an energy measure falls as 1/n: the same halving leaves (4 x 1.3 - 1.6) / 3 = 1.2, +20 %
    energy = convergence("high_frequency_energy", (1.0, 1.0), (1.6, 1.3))
    assert energy.checks[0].reading == MODEL_PROPERTY and energy.checks[0].estimate.value == pytest.approx(0.2, abs=0.03)


def test_the_convergence_check_needs_the_sample_counts():
    v = convergence("total_variation", (1.0, 1.0), (1.6, 1.3), samples=None)
    assert v.checks[0].status == Status.NOT_MEASURED and "sample counts" in v.checks[0].sentence


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


def test_faithfulness_leaves_degenerate_maps_out_counts_them_and_gives_fp_and_bnn_apart():
    models = make_models()
    methods = ["gradient", "gradcam", "neuromask"]
    settings = dataclasses.replace(SETTINGS, faithfulness_measures=("road_morf",))
    rows = single_rows("neuromask", "road_morf", models, {"fp": 0.2, "bnn": 0.4}, images=range(16), seed=1, sd=0.01)
    rows += single_rows("gradient", "road_morf", models, {"fp": 0.4, "bnn": 0.4}, seed=2, sd=0.01)
    rows += single_rows("gradcam", "road_morf", models, {"fp": 0.4, "bnn": 0.4}, seed=3, sd=0.01)
    # the first 4 BNN NeuroMask maps are empty, and score badly (1.0) where they are not left out
    empty = [(r.model, r.image) for r in rows if r.method == "neuromask" and r.model.startswith("bnn") and r.image < 4]
    scored = [dataclasses.replace(r, value=1.0) if (r.model, r.image) in empty and r.method == "neuromask" else r
              for r in rows]
    flags = [Row("degenerate", "neuromask", m.name, "", 0, i, float((m.name, i) in empty)) for m in models for i in range(16)]
    part = verdict(scored + flags, models, 4, settings, methods=methods).parts[0]
    first = part.comparisons[0]
    assert first.levels["FP"].value == pytest.approx(0.2, abs=0.01) and first.levels["BNN"].value == pytest.approx(0.0, abs=0.01)
    assert first.estimate.value == pytest.approx((0.2 * 48 + 0.0 * 36) / 84, abs=0.01)  # BNN maps left out: 12
    assert "Degenerate maps left out: neuromask 12, gradient 0, gradcam 0" in part.sentence
    counted = verdict(scored, models, 4, settings, methods=methods).parts[0].comparisons[0]
    assert counted.levels["BNN"].value < -0.1  # without the flags the empty maps' scores enter the mean
    assert part.status == Status.HELD  # decided on FP and BNN models together; the levels show BNNs gain nothing


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


def test_the_terminal_table_names_the_primary_measure_and_shows_the_controls_and_chance_levels():
    from binsight.report.render import verdict_markdown, verdict_table

    models = make_models()
    rows = pair_rows("gradient", "spearman", models, LEVELS_ALIKE)
    rows += pair_rows("gradient", "ssim", models, {"fp-fp": 0.6, "fp-bnn": 0.3, "bnn-bnn": 0.6}, seed=1)
    rows += pair_rows("gradcam", "spearman", models, {"fp-fp": 0.7, "fp-bnn": 0.0, "bnn-bnn": 0.7}, seed=2)
    rows += chance_rows(models, {"fp": 0.0, "bnn": 1.0}, degenerate={"fp": 0.0, "bnn": 1.0})
    out = compute_verdicts(rows, models, dataclasses.replace(SETTINGS, similarity_measures=("spearman", "ssim")))
    table = verdict_table(out)
    assert "(primary spearman, Holm-adjusted p " in table and "(primary spearman + nonsensical, Holm-adjusted p " in table
    assert "     - spearman [primary]: held" in table and "     - ssim [secondary]: not held (differ)" in table
    assert "chance FP-vs-BNN" in table and "chance BNN-vs-BNN" in table
    assert "     - controls [check]: held" in table and "inverted +1.000" in table
    markdown = "\n".join(verdict_markdown(out.verdicts[0]))
    assert "a secondary measure alone gives another status (not fragile): ssim only (not held)" in markdown


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
    config = VerdictsConfig(n_resamples=123, similarity_margin=0.3)
    settings = VerdictSettings.from_config(config)
    assert settings.n_resamples == 123 and settings.similarity_margin == 0.3
    assert settings.similarity_method == "gradient" and settings.noise_margin == VerdictSettings().noise_margin
    assert settings.scaled_margins(0.5).similarity_margin == pytest.approx(0.15)
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
    assert VerdictSettings().margins() == ("similarity_margin", "noise_margin", "nonsensical_margin",
                                           "faithfulness_margin", "evidence_margin")
    with pytest.raises(dataclasses.FrozenInstanceError):
        VerdictSettings().seed = 1
    assert list(json.loads(StudyVerdicts.to_json(compute_verdicts([], make_models(), SETTINGS)))["settings"]) == expected


# ------------------------------------------------------------------------------------------------------
# guards: a verdict resting on maps that did not settle says so (#26)


def unsettled_rows(models: list[ModelInfo], method: str, unsettled: dict[str, int]) -> list[Row]:
    """``unsettled[name]`` of model name's N maps flagged 1 (the first ones), the rest 0."""
    return [Row("unsettled", method, m.name, "", 0, i, float(i < unsettled.get(m.name, 0))) for m in models
            for i in range(N)]


def test_a_verdict_on_maps_that_did_not_settle_says_so_and_keeps_its_status():
    models = make_models()
    base = np.abs(smooth_maps(np.random.default_rng(0), 32))
    rows = rows_from_maps({m.name: base for m in models}, models, "gradient")
    settled = verdict(rows + unsettled_rows(models, "gradient", {}), models, 1, MAP_SETTINGS)
    unsettled = verdict(rows + unsettled_rows(models, "gradient", {"bnn-0": 5}), models, 1, MAP_SETTINGS)
    plain = verdict(rows, models, 1, MAP_SETTINGS)
    assert settled.status == unsettled.status == plain.status == Status.HELD
    check = {c.name: c for c in settled.checks}["gradient: maps unsettled"]
    assert check.status == Status.NOT_HELD and check.estimate.value == 0.0 and "Caution" not in settled.sentence
    check = {c.name: c for c in unsettled.checks}["gradient: maps unsettled"]
    assert check.status == Status.HELD and check.estimate.value == pytest.approx(5 / (6 * N))
    assert "Caution: it rests on maps that did not settle (gradient)" in unsettled.sentence
    assert not any(c.name.endswith("maps unsettled") for c in plain.checks)  # no rows: no check
    other = verdict(rows + unsettled_rows(models, "neuromask", {"bnn-0": 5}), models, 1, MAP_SETTINGS)
    assert "Caution" not in other.sentence  # verdict 1 does not read NeuroMask's maps
