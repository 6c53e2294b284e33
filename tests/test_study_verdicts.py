"""Verdicts decided from intervals on synthetic tables whose truth is known, and the run folder's store."""

from __future__ import annotations

import numpy as np
import pytest

from binsight.study.config import StudyConfig, VerdictsConfig, config_from_dict
from binsight.study.store import RunFolder, RunFolderError, Row
from binsight.study.verdicts import (
    HELD,
    INCONCLUSIVE,
    NOT_HELD,
    NOT_MEASURED,
    ModelInfo,
    Table,
    bootstrap_mean,
    compute_verdicts,
    flagged_maps,
)

MODELS = [ModelInfo("fp-0", "fp"), ModelInfo("fp-1", "fp"), ModelInfo("bnn-0", "bnn"), ModelInfo("bnn-1", "bnn")]
CFG = VerdictsConfig(n_resamples=500)
N = 60


def pair_rows(method: str, fp_fp: np.ndarray, fp_bnn: np.ndarray, bnn_bnn: np.ndarray) -> list[Row]:
    rows = []
    for i, a in enumerate(MODELS):
        for b in MODELS[i + 1:]:
            kind = {("fp", "fp"): fp_fp, ("bnn", "bnn"): bnn_bnn}.get((a.precision, b.precision), fp_bnn)
            rows += [Row("spearman", method, a.name, b.name, 0, img, float(kind[img])) for img in range(N)]
    return rows


def single_rows(method: str, measure: str, fp: np.ndarray, bnn: np.ndarray) -> list[Row]:
    return [Row(measure, method, m.name, "", 0, img, float((fp if m.precision == "fp" else bnn)[img]))
            for m in MODELS for img in range(N)]


def test_bootstrap_interval_covers_the_mean_and_is_seeded():
    x = np.random.default_rng(1).normal(0.5, 1.0, 200)
    est, low, high = bootstrap_mean(x, CFG)
    assert low < est < high and est == pytest.approx(x.mean())
    assert (est, low, high) == bootstrap_mean(x, CFG)
    assert high - low == pytest.approx(2 * 1.96 / np.sqrt(200), rel=0.25)


def test_gradient_verdict_follows_the_data():
    rng = np.random.default_rng(0)
    base = rng.uniform(0.6, 0.8, N)
    alike = compute_verdicts(pair_rows("gradient", base, base + rng.normal(0, 0.01, N), base), MODELS, ["gradient"], CFG)
    assert alike["verdicts"][0]["status"] == HELD
    apart = compute_verdicts(pair_rows("gradient", base, base - 0.4, base), MODELS, ["gradient"], CFG)
    v = apart["verdicts"][0]
    assert v["status"] == NOT_HELD and v["ci"][1] < -CFG.similarity_margin
    assert "did not hold" in v["sentence"]
    noisy = compute_verdicts(pair_rows("gradient", base, base - 0.1 + rng.normal(0, 0.3, N), base), MODELS, ["gradient"], CFG)
    assert noisy["verdicts"][0]["status"] == INCONCLUSIVE


def test_smoothgrad_noise_verdict_and_wilcoxon():
    rng = np.random.default_rng(0)
    fp = rng.uniform(0.2, 0.3, N)
    noisier = compute_verdicts(single_rows("smoothgrad", "total_variation", fp, fp * 1.5), MODELS, ["smoothgrad"], CFG)
    v = noisier["verdicts"][1]
    assert v["status"] == HELD and v["details"]["wilcoxon_p"] < 1e-6
    same = compute_verdicts(single_rows("smoothgrad", "total_variation", fp, fp), MODELS, ["smoothgrad"], CFG)
    assert same["verdicts"][1]["status"] == NOT_HELD and same["verdicts"][1]["details"]["wilcoxon_p"] == 1.0


def test_missing_inputs_are_not_measured_not_guessed():
    out = compute_verdicts([], MODELS, ["gradient"], CFG)
    assert [v["status"] for v in out["verdicts"]] == [NOT_MEASURED] * 4
    one_fp = compute_verdicts([], MODELS[1:], ["gradient"], CFG)
    assert "two FP models" in one_fp["verdicts"][0]["sentence"]


def test_flagged_when_degenerate_or_worse_than_random_on_both():
    rows = [
        Row("degenerate", "m", "x", "", 0, 0, 1.0), Row("degenerate", "m", "x", "", 0, 1, 0.0),
        Row("degenerate", "m", "x", "", 0, 2, 0.0), Row("degenerate", "m", "x", "", 0, 3, 0.0),
    ]
    # image 1: worse on both; image 2: worse on deletion only; image 3: better on both
    for img, (dele, energy) in {0: (0.1, 0.9), 1: (0.5, 0.1), 2: (0.5, 0.9), 3: (0.1, 0.9)}.items():
        rows += [Row("deletion_auc", "m", "x", "", 0, img, dele), Row("energy_inside", "m", "x", "", 0, img, energy),
                 Row("deletion_auc", "random", "x", "", 0, img, 0.3), Row("energy_inside", "random", "x", "", 0, img, 0.5)]
    assert flagged_maps(Table(rows), "x", "m") == {0: 1.0, 1: 1.0, 2: 0.0, 3: 0.0}


def test_store_refuses_another_configuration_and_merges_without_duplicates(tmp_path):
    config = StudyConfig()
    folder = RunFolder.create(tmp_path / "run", config)
    folder.save_unit("measures", "b", [Row("tv", "gradient", "fp-0", "", 0, 2, 0.5)])
    folder.save_unit("measures", "a", [Row("tv", "gradient", "fp-0", "", 0, 1, float("nan"))])
    folder.save_unit("measures", "a", [Row("tv", "gradient", "fp-0", "", 0, 1, 0.25)])  # a redone unit replaces
    rows = folder.merge_measurements()
    assert [r.image for r in rows] == [1, 2] and folder.read_measurements() == rows
    with pytest.raises(RunFolderError, match="in use by another running study"):
        RunFolder.create(tmp_path / "run", config)
    folder.close()
    with pytest.raises(RunFolderError, match="another configuration"):
        RunFolder.create(tmp_path / "run", config_from_dict({"data": {"n_images": 3}}))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunFolderError, match="not empty and holds no study run"):
        RunFolder.create(tmp_path / "other", config)


def test_maps_round_trip(tmp_path):
    folder = RunFolder.create(tmp_path, StudyConfig())
    maps = np.random.default_rng(0).random((3, 1, 5, 5)).astype(np.float32)
    folder.save_maps("fp-0", "gradient", 1, maps, np.array([1, 2, 3]), np.array([10, 11, 12]))
    folder.save_maps("fp-0", "gradient", 0, maps[:1], np.array([0]), np.array([9]))
    back = folder.read_all_maps("fp-0", "gradient")
    assert back["images"].tolist() == [9, 10, 11, 12] and np.array_equal(back["maps"][1:], maps)
    folder.close()
