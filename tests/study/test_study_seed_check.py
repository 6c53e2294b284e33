"""NeuroMask's own seed baseline in the similarity verdict: known answers from planted pair statistics
(each model's maps against its maps from a second start, stored as the pair of a model with itself)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from binsight.study.config import StudyConfig, config_from_dict
from binsight.study.names import seed_check_label
from binsight.study.plan import StudyModel, make_plan
from binsight.study.stages.maps import map_units, seed_check_specs, seed_check_units
from binsight.study.stages.pairs import start_pair_units
from binsight.study.store import Row
from binsight.study.verdicts import ALIKE, DIFFER, NOT_REPRODUCIBLE, ModelInfo, Status, VerdictSettings, compute_verdicts

METHOD = "neuromask"
SETTINGS = VerdictSettings(similarity_method=METHOD, similarity_measures=("spearman",))
N, N_START = 48, 16  # images of the method, and of its seed check (its first ones)
MODELS = [ModelInfo(f"fp-{i}", "fp", str(i), "") for i in range(3)] + [ModelInfo(f"bnn-{i}", "bnn", str(i), "ste")
                                                                       for i in range(3)]


def planted_rows(levels: dict[str, float], start: float | None, *, sd: float = 0.03, seed: int = 0) -> list[Row]:
    """Pair rows of every pair of models at ``levels[kind]`` and, unless ``start`` is None, each model's
    start-to-start rows at ``start`` on the first N_START images; every chance level (image-shuffled) at 0;
    per-value noise of SD ``sd``."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, a in enumerate(MODELS):
        for b in MODELS[i + 1:]:
            kind = "-".join(sorted((a.precision, b.precision), key=("fp", "bnn").index))
            rows += [Row("spearman", METHOD, a.name, b.name, 0, k, levels[kind] + rng.normal(0, sd)) for k in range(N)]
            rows += [Row("spearman_shuffled", METHOD, a.name, b.name, 0, k, rng.normal(0, sd)) for k in range(N)]
    if start is not None:
        label = seed_check_label(METHOD)
        for m in MODELS:
            rows += [Row("spearman", label, m.name, m.name, 0, k, start + rng.normal(0, sd)) for k in range(N_START)]
            rows += [Row("spearman_shuffled", label, m.name, m.name, 0, k, rng.normal(0, sd)) for k in range(N_START)]
    return rows


def part_of(rows: list[Row]):
    v = compute_verdicts(rows, MODELS, SETTINGS).verdicts[0]
    return v, v.parts[0]


ALIKE_LEVELS = {"fp-fp": 0.6, "fp-bnn": 0.6, "bnn-bnn": 0.6}


def test_a_high_start_baseline_lets_alike_maps_read_alike_and_prints_it():
    v, part = part_of(planted_rows(ALIKE_LEVELS, start=0.8))
    assert part.reading == ALIKE and v.status == Status.HELD
    levels = {k: e.value for k, e in part.levels.items()}
    assert levels["FP start-to-start"] == pytest.approx(0.8, abs=0.03)
    assert levels["BNN start-to-start"] == pytest.approx(0.8, abs=0.03)
    assert levels["chance FP start-to-start"] == pytest.approx(0.0, abs=0.03)
    assert {c.name: c.status for c in part.comparisons}["FP start-to-start minus chance"] == Status.HELD
    assert "start baseline" in part.sentence


def test_a_start_baseline_at_chance_reads_not_reproducible():
    """The model-seed baselines are high and FP-vs-BNN is as high (alike without the seed check), but one
    model's masks from two starts share nothing beyond chance: nothing to read."""
    assert part_of(planted_rows(ALIKE_LEVELS, start=None))[1].reading == ALIKE
    v, part = part_of(planted_rows(ALIKE_LEVELS, start=0.0))
    assert part.reading == NOT_REPRODUCIBLE and v.status == Status.INCONCLUSIVE
    assert {c.name: c.status for c in part.comparisons}["BNN start-to-start minus chance"] != Status.HELD
    assert "two starts" in part.sentence


def test_fp_vs_bnn_agreement_beyond_the_start_baseline_is_not_credited():
    """FP-vs-BNN and the model-seed baselines at 0.6, one model from two starts at 0.3 (the signature of a
    start shared by the models): FP-vs-BNN is credited 0.3, the ratio is 0.5, and the maps read differ, not
    alike; below the ceiling nothing changes (FP-vs-BNN 0.3 under a start baseline of 0.8 reads as without it)."""
    v, part = part_of(planted_rows(ALIKE_LEVELS, start=0.3))
    assert part.estimate.value == pytest.approx(0.5, abs=0.05)
    assert part.reading == DIFFER and v.status == Status.NOT_HELD
    below = {"fp-fp": 0.6, "fp-bnn": 0.3, "bnn-bnn": 0.6}
    with_start, without = part_of(planted_rows(below, start=0.8))[1], part_of(planted_rows(below, start=None))[1]
    assert with_start.estimate.value == pytest.approx(without.estimate.value)
    assert with_start.reading == without.reading == DIFFER


def test_other_methods_and_models_without_a_seed_check_are_read_as_before():
    rows = planted_rows(ALIKE_LEVELS, start=0.0)  # neuromask's start baseline at chance
    gradient = [dataclasses.replace(r, method="gradient") for r in rows if r.method == METHOD]
    v = compute_verdicts(rows + gradient, MODELS, dataclasses.replace(SETTINGS, similarity_method="gradient"))
    assert v.verdicts[0].parts[0].reading == ALIKE
    assert not any("start" in k for k in v.verdicts[0].parts[0].levels)


def test_start_values_of_one_precision_only_read_not_reproducible():
    rows = [r for r in planted_rows(ALIKE_LEVELS, start=0.8) if not (r.model == r.model_b and r.model.startswith("bnn"))]
    v, part = part_of(rows)
    assert part.reading == NOT_REPRODUCIBLE and v.status == Status.INCONCLUSIVE


# -- the seed check's units ----------------------------------------------------------------------------


def test_the_default_study_checks_neuromask_from_its_next_start_on_16_images_of_the_base_models():
    plan = make_plan(StudyConfig())
    ((method, check),) = seed_check_specs(plan)
    assert method.label == "neuromask" and check.label == "neuromask-start1" == seed_check_label("neuromask")
    assert check.options == {**method.options, "start": 1} and check.n_images == 16 and check.seeded
    models = [StudyModel("fp-0", "fp", "0", "", None), StudyModel("bnn-0", "bnn", "0", "ste", None),
              StudyModel("bnn-0+approx", "bnn", "0", "approx", None, base="bnn-0")]
    units = seed_check_units(plan, models)
    assert [(m.name, s.label, c, (p.start, p.stop)) for m, s, c, p in units] == [
        ("fp-0", "neuromask-start1", 0, (0, 16)), ("bnn-0", "neuromask-start1", 0, (0, 16))]
    assert not {s.label for _, s, _, _ in map_units(plan, models)} & {"neuromask-start1"}  # no single-map measures
    assert [(a.name, b.name, s.label) for a, b, s in start_pair_units(plan, models)] == [
        ("fp-0", "fp-0", "neuromask-start1"), ("bnn-0", "bnn-0", "neuromask-start1")]


def test_a_seed_check_takes_the_start_after_the_tables_own_and_no_more_images_than_the_method():
    config = config_from_dict({"methods": {"neuromask": {"start": 2, "n_images": 8, "seed_check_images": 20}}})
    ((_, check),) = seed_check_specs(make_plan(config))
    assert check.options["start"] == 3 and check.n_images == 8
    off = config_from_dict({"methods": {"neuromask": {"seed_check_images": 0}}})
    assert seed_check_specs(make_plan(off)) == []
