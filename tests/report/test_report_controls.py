"""The report's first box counts the accuracy-matched FP models apart from the surrogate variants, with
their accuracy (the controls for binarization)."""

from __future__ import annotations

from binsight.report.findings import run_limits
from binsight.study.records import ModelRecord


def models(matched: bool) -> list[ModelRecord]:
    out = [ModelRecord(f"{p}-{i}", p, str(i), "ste" if p == "bnn" else "", seed=i, accuracy=0.9, accuracy_images=100)
           for p in ("fp", "bnn") for i in range(2)]
    out += [ModelRecord("bnn-0+approx", "bnn", "0", "approx", base="bnn-0")]
    if matched:
        out += [ModelRecord("fp-0+matched", "fp", "0", "", seed=0, accuracy=0.895, accuracy_images=100, base="fp-0")]
    return out


def box(records: list[ModelRecord]) -> dict[str, str]:
    return dict(run_limits(records, None, lambda *path, default=None: default))


def test_matched_fp_models_are_named_with_their_accuracy_and_not_counted_as_surrogate_variants():
    with_matched = box(models(True))["models"]
    assert "1 more table entries are BNNs explained with another surrogate" in with_matched
    assert "1 are FP models trained on fewer images to the BNNs' accuracy (robustness only: fp-0+matched 89.5 %" \
        in with_matched
    assert "2 FP and 2 BNN models" in with_matched
    assert "FP models trained on fewer images" not in box(models(False))["models"]


def test_the_findings_name_the_controls_the_run_computed():
    from binsight.report.findings import _basis
    from binsight.study.config import config_from_dict

    default = _basis(models(False), config_from_dict({}))
    assert ("Each verdict also recomputed on the images every model classifies correctly, with each model "
            "explaining its predicted class (controls for binarization, robustness).") in default
    opted = _basis(models(True), config_from_dict({"models": {"matched_fp": [20000]},
                                                   "verdicts": {"predicted_labels": False}}))
    assert ("recomputed on the images every model classifies correctly, with FP models trained to the BNNs' "
            "accuracy (controls") in opted
