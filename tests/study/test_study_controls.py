"""The controls for binarization as robustness rows (binsight.study.verdicts.controls), on planted per-image
rows whose answer is known: a verdict that flips only on the images some model misclassifies, only on the
misclassified images' true-class maps, or only with FP models of the BNNs' accuracy reads the other status
in that row and is fragile; a verdict that does not flip keeps its status there."""

from __future__ import annotations

import dataclasses

from test_study_verdicts import SETTINGS, faithfulness_rows, make_models, pair_rows, single_rows, verdict

from binsight.study.formats import Row
from binsight.study.verdicts import ModelInfo, Status
from binsight.study.verdicts.controls import ALL_CORRECT, MATCHED, PREDICTED

N = 48
WRONG = range(12)
"""The images every BNN misclassifies (the FP models classify every image correctly)."""
NOISE = dataclasses.replace(SETTINGS, noise_measures=("total_variation",), primary_noise="total_variation")


def correct_rows(models: list[ModelInfo], wrong: dict[str, range]) -> list[Row]:
    """The predictions stage's ``correct`` rows: model m misclassifies the images ``wrong[m.precision]``."""
    return [Row("correct", "", m.name, "", 0, i, float(i not in wrong.get(m.precision, ()))) for m in models
            for i in range(N)]


def noise_level(bnn_on_wrong: float, bnn_elsewhere: float = 1.0):
    """Total variation: FP 1.0 everywhere; BNN ``bnn_on_wrong`` on :data:`WRONG`, ``bnn_elsewhere`` on the rest."""
    def level(m: ModelInfo, i: int) -> float:
        if m.precision == "fp":
            return 1.0
        return bnn_on_wrong if i in WRONG else bnn_elsewhere
    return level


def noise_rows(models: list[ModelInfo], level, method: str = "smoothgrad", seed: int = 0) -> list[Row]:
    rows = []
    for i in range(N):
        rows += single_rows(method, "total_variation", models, lambda m, i=i: level(m, i), seed=seed + i,
                            images=range(i, i + 1))
    return rows


def rows_by_setting(v) -> dict:
    return {r.setting: r for r in v.robustness}


# ------------------------------------------------------------------------------------------------------
# the images every model classifies correctly


def test_a_verdict_that_rests_on_misclassified_images_changes_on_the_all_correct_subset():
    """BNN maps noisier only on the images the BNNs misclassify: noisier (held) on all images, not noisier on
    the images every model gets right; the row says how many images remain and the verdict is fragile."""
    models = make_models()
    rows = noise_rows(models, noise_level(3.0)) + correct_rows(models, {"bnn": WRONG})
    v = verdict(rows, models, 2, NOISE)
    row = rows_by_setting(v)[ALL_CORRECT]
    assert v.status == Status.HELD and row.status == Status.NOT_HELD
    assert row.changed and not row.secondary and v.fragile
    assert row.reading.startswith(f"{N - len(WRONG)} of {N} images")
    assert ALL_CORRECT in v.sentence


def test_a_verdict_that_holds_on_every_image_keeps_its_status_on_the_all_correct_subset():
    models = make_models()
    rows = noise_rows(models, noise_level(1.5, 1.5)) + correct_rows(models, {"bnn": WRONG})
    v = verdict(rows, models, 2, NOISE)
    row = rows_by_setting(v)[ALL_CORRECT]
    assert v.status == row.status == Status.HELD and not row.changed and not v.fragile


def test_too_few_all_correct_images_or_no_predictions_read_not_measured_with_the_reason():
    models = make_models()
    few = noise_rows(models, noise_level(3.0)) + correct_rows(models, {"bnn": range(N - 5)})
    row = rows_by_setting(verdict(few, models, 2, NOISE))[ALL_CORRECT]
    assert row.status == Status.NOT_MEASURED and not row.changed
    assert "5 of 48 images" in row.reading and "all_correct_min_images = 10" in row.reading
    lower = dataclasses.replace(NOISE, all_correct_min_images=5)
    assert rows_by_setting(verdict(few, models, 2, lower))[ALL_CORRECT].status != Status.NOT_MEASURED
    none = rows_by_setting(verdict(noise_rows(models, noise_level(3.0)), models, 2, NOISE))[ALL_CORRECT]
    assert none.status == Status.NOT_MEASURED and "no predictions of" in none.reading


# ------------------------------------------------------------------------------------------------------
# each model explains its predicted class


def predicted_rows(models: list[ModelInfo], label_level, predicted_level) -> list[Row]:
    """The noise method's rows (true class) and its ``@predicted`` rows: the same values on the images every
    model classifies correctly (same maps), ``predicted_level`` on the misclassified ones."""
    label = noise_rows(models, label_level)
    predicted = noise_rows(models, predicted_level)  # same seeds: equal values where the levels agree
    return label + [dataclasses.replace(r, method="smoothgrad@predicted") for r in predicted]


def test_a_verdict_that_rests_on_true_class_maps_of_misclassified_images_changes_with_predicted_classes():
    """BNN maps noisier only where a BNN explains a class it did not predict: explained for its predicted
    class, the BNN's map there is as smooth as elsewhere, and the verdict flips."""
    models = make_models()
    rows = predicted_rows(models, noise_level(3.0), noise_level(1.0)) + correct_rows(models, {"bnn": WRONG})
    v = verdict(rows, models, 2, NOISE)
    row = rows_by_setting(v)[PREDICTED]
    assert v.status == Status.HELD and row.status == Status.NOT_HELD and row.changed and v.fragile


def test_a_verdict_that_does_not_depend_on_the_explained_class_keeps_its_status_with_predicted_classes():
    models = make_models()
    rows = predicted_rows(models, noise_level(3.0), noise_level(3.0)) + correct_rows(models, {"bnn": WRONG})
    v = verdict(rows, models, 2, NOISE)
    row = rows_by_setting(v)[PREDICTED]
    assert v.status == row.status == Status.HELD and not row.changed


def test_without_predicted_class_maps_of_a_verdicts_method_the_row_is_not_measured():
    models = make_models()
    rows = noise_rows(models, noise_level(3.0))
    row = rows_by_setting(verdict(rows, models, 2, NOISE))[PREDICTED]
    assert row.status == Status.NOT_MEASURED and "no predicted-class maps of smoothgrad" in row.reading


def test_predicted_class_rows_are_not_methods_of_the_verdicts():
    """Without an explicit method list, the ``@predicted`` labels are no method verdict 4 compares with."""
    models = make_models()
    rows = faithfulness_rows(models, True)
    rows += [dataclasses.replace(r, method="gradient@predicted") for r in rows if r.method == "gradient"]
    v = verdict(rows, models, 4)
    assert [c.name for c in v.parts[0].comparisons] == ["neuromask minus gradcam", "neuromask minus gradient"]
    row = rows_by_setting(v)[PREDICTED]
    assert row.status == Status.NOT_MEASURED and "no predicted-class maps of neuromask, gradcam" in row.reading


# ------------------------------------------------------------------------------------------------------
# FP models matched to the BNNs' accuracy


def matched_models() -> list[ModelInfo]:
    return make_models() + [ModelInfo(f"fp-{i}+matched", "fp", str(i), "") for i in range(3)]


def matched_level(matched_noise: float):
    """Total variation: FP 1.0, BNN 1.5, the matched FP models ``matched_noise``."""
    def level(m: ModelInfo, i: int) -> float:
        if m.precision == "bnn":
            return 1.5
        return matched_noise if m.name.endswith("+matched") else 1.0
    return level


def test_a_difference_that_the_accuracy_gap_explains_changes_with_matched_fp_models():
    """FP models as noisy as the BNNs once trained to the BNNs' accuracy: noisier against the FP models,
    not against the matched ones."""
    models = matched_models()
    v = verdict(noise_rows(models, matched_level(1.5)), models, 2, NOISE)
    row = rows_by_setting(v)[MATCHED]
    assert v.status == Status.HELD and row.status == Status.NOT_HELD and row.changed and v.fragile


def test_a_difference_the_accuracy_gap_does_not_explain_keeps_its_status_with_matched_fp_models():
    models = matched_models()
    v = verdict(noise_rows(models, matched_level(1.0)), models, 2, NOISE)
    row = rows_by_setting(v)[MATCHED]
    assert v.status == row.status == Status.HELD and not row.changed
    assert ALL_CORRECT in rows_by_setting(v)  # the matched models are no base models: not in the main verdict


def test_maps_that_differ_only_from_more_accurate_fp_models_read_alike_with_matched_ones():
    """Verdict 1 on pairs: FP-vs-BNN agreement far below the seeds' with the FP models, as high as the
    seeds' with the matched ones (whose own seed baseline is as high)."""
    models = matched_models()

    def level(kind, a, b):
        matched = "+matched" in a.name or "+matched" in b.name
        return 0.2 if kind == "fp-bnn" and not matched else 0.6

    spearman = dataclasses.replace(SETTINGS, similarity_measures=("spearman",))
    v = verdict(pair_rows("gradient", "spearman", models, level), models, 1, spearman)
    row = rows_by_setting(v)[MATCHED]
    assert v.status == Status.NOT_HELD and row.status == Status.HELD and row.changed and v.fragile
    steady = verdict(pair_rows("gradient", "spearman", models, lambda kind, a, b: 0.2 if kind == "fp-bnn" else 0.6),
                     models, 1, spearman)
    assert rows_by_setting(steady)[MATCHED].status == Status.NOT_HELD and not steady.fragile


def test_without_matched_fp_models_the_row_is_not_measured():
    models = make_models()
    row = rows_by_setting(verdict(noise_rows(models, matched_level(1.0)), models, 2, NOISE))[MATCHED]
    assert row.status == Status.NOT_MEASURED and "models.matched_fp is off" in row.reading
    some = make_models() + [ModelInfo("fp-0+matched", "fp", "0", "")]
    row = rows_by_setting(verdict(noise_rows(some, matched_level(1.0)), some, 2, NOISE))[MATCHED]
    assert row.status == Status.NOT_MEASURED and "fp-1, fp-2" in row.reading
