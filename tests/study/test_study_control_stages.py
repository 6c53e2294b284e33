"""The stages of the controls for binarization on a tiny study.

Stage ``predicted``: each base model's maps of its predicted class are its stored maps where it classifies
the image correctly and the explainer's map of the predicted class where it does not; they get single-map
and pair rows under ``M@predicted``, and the verdicts' row "each model explains its predicted class" is
computed from them for verdicts 1 and 2. Stage ``matched``: the ladder rule, and FP models trained on fewer
images recorded as ``fp-N+matched``, explained, paired, and read by the verdicts' matched row."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_study_config import TINY as ONE_METHOD

from binsight.data import load_dataset
from binsight.explain import get_explainer
from binsight.models.checkpoint import load_checkpoint
from binsight.study.config import config_from_dict, tomllib
from binsight.study.plan import make_plan
from binsight.study.runner import run_study
from binsight.study.stages.matched import choose_rung
from binsight.study.stages.predicted import predicted_methods
from binsight.study.verdicts.controls import MATCHED, PREDICTED

pytestmark = pytest.mark.slow

CHANGES = {
    "data": {"n_images": 6},
    "models": {"matched_fp": [64, 128]},
    "methods": {"run": ["gradient", "smoothgrad"], "smoothgrad": {"n_samples": 3}},
    "measures": {"faithfulness": False, "sanity": False, "baselines": False, "chance_methods": ["gradient"],
                 "chance_maps": 10, "chance_images": 1},
    "verdicts": {"faithfulness_method": "gradient", "robustness_surrogates": ["ste"]},
    "run": {"chunk_size": 4},
}
"""The one-method tiny study of test_study_config with these sections updated."""
BASE = ["fp-0", "fp-1", "bnn-0", "bnn-1"]


def config(**changes):
    raw = tomllib.loads(ONE_METHOD)
    for section, values in (*CHANGES.items(), *changes.items()):
        raw.setdefault(section, {}).update(values)
    return config_from_dict(raw)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("predicted")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BINSIGHT_CACHE", str(root / "cache"))
        torch.set_num_threads(1)
        run_study(config(), root / "run")
    return root / "run"


def chunks(folder, model: str, method: str) -> dict[str, np.ndarray]:
    parts = [dict(np.load(p)) for p in sorted((folder / "maps" / model / method).glob("*.npz"))]
    return {k: np.concatenate([p[k] for p in parts]) for k in ("maps", "targets", "images")}


def test_predicted_class_maps_are_the_stored_maps_where_right_and_new_maps_where_wrong(run):
    labels = load_dataset("fashion-mnist", split="test").labels
    rows = [line.split(",") for line in (run / "measurements.csv").read_text().splitlines() if "predicted," in line]
    wrong_somewhere = 0
    for model in BASE:
        plain, predicted = chunks(run, model, "gradient"), chunks(run, model, "gradient%40predicted")
        assert np.array_equal(plain["images"], predicted["images"])
        stored = {int(r[0]): int(float(r[-1])) for r in rows if r[1] == model and r[4] == "predicted"}
        assert predicted["targets"].tolist() == [stored[int(i)] for i in predicted["images"]]
        right = predicted["targets"] == labels[torch.from_numpy(plain["images"])].numpy()
        assert np.array_equal(predicted["maps"][right], plain["maps"][right])
        wrong = np.flatnonzero(~right)
        wrong_somewhere += wrong.size
        if wrong.size:
            module, _ = load_checkpoint(run / "models" / f"{model}.json")
            x = load_dataset("fashion-mnist", split="test").images[torch.from_numpy(predicted["images"][wrong])]
            expected = get_explainer("gradient", module).attribute(x, torch.from_numpy(predicted["targets"][wrong]))
            np.testing.assert_allclose(predicted["maps"][wrong], expected.numpy(), atol=1e-6)
            assert not np.allclose(predicted["maps"][wrong], plain["maps"][wrong])
    assert wrong_somewhere  # models trained one epoch on 256 images misclassify images


def test_predicted_class_maps_get_single_and_pair_rows_and_the_verdicts_row(run):
    table = [line.split(",") for line in (run / "measurements.csv").read_text().splitlines()[1:]
             if not line.startswith("#")]
    noise = {(r[1], r[0]) for r in table if "total_variation" in r and "smoothgrad@predicted" in r}
    assert len(noise) == len(BASE) * 6
    pairs = {tuple(sorted((r[1], r[2]))) for r in table if "spearman" in r and "gradient@predicted" in r}
    assert len(pairs) == len(BASE) * (len(BASE) - 1) // 2
    verdicts = json.loads((run / "verdicts.json").read_text())["verdicts"]
    rows = {v["id"]: {r["setting"]: r for r in v["robustness"]}.get(PREDICTED) for v in verdicts}
    assert rows[1]["status"] != "not measured" and rows[2]["status"] != "not measured"


def test_no_predicted_class_maps_when_off_or_when_the_study_explains_predicted_classes():
    def methods(cfg):
        return [s.label for s in predicted_methods(SimpleNamespace(config=cfg, plan=make_plan(cfg)))]
    assert methods(config()) == ["gradient", "smoothgrad"]
    assert methods(config(verdicts={"predicted_labels": False})) == []
    assert methods(config(methods={"target": "predicted"})) == []
    assert methods(config(verdicts={"noise_method": "gradient"})) == ["gradient"]


# ------------------------------------------------------------------------------------------------------
# accuracy-matched FP models


def ladder(accuracies: dict[int, float]):
    """accuracy_of(rung) from a table, recording which rungs were trained."""
    trained = []

    def accuracy_of(rung: int) -> float:
        trained.append(rung)
        return accuracies[rung]
    return accuracy_of, trained


def test_the_ladder_stops_at_the_first_rung_that_reaches_the_bnn_and_keeps_the_closest():
    accuracy_of, trained = ladder({1000: 0.85, 2000: 0.88, 4000: 0.90, 8000: 0.91})
    assert choose_rung([4000, 1000, 8000, 2000], accuracy_of, 0.895)[:2] == (4000, 0.90)
    assert trained == [1000, 2000, 4000]  # ascending, and nothing above the first that reaches the BNN
    accuracy_of, trained = ladder({1000: 0.85, 2000: 0.893, 4000: 0.90})
    rung, accuracy, tried = choose_rung([1000, 2000, 4000], accuracy_of, 0.895)
    assert (rung, accuracy) == (2000, 0.893) and tried == [(1000, 0.85), (2000, 0.893), (4000, 0.90)]


def test_a_ladder_that_never_reaches_the_bnn_keeps_its_largest_rung():
    accuracy_of, trained = ladder({1000: 0.80, 2000: 0.82})
    assert choose_rung([1000, 2000], accuracy_of, 0.895)[:2] == (2000, 0.82) and trained == [1000, 2000]


def test_matched_fp_models_are_trained_on_fewer_images_recorded_explained_and_read_by_the_verdicts(run):
    models = {m["name"]: m for m in json.loads((run / "models.json").read_text())}
    assert [n for n in models if n.endswith("+matched")] == ["fp-0+matched", "fp-1+matched"]
    for seed in (0, 1):
        record = models[f"fp-{seed}+matched"]
        assert record["precision"] == "fp" and record["group"] == str(seed) and record["base"] == f"fp-{seed}"
        side = json.loads((run / record["checkpoint"]).with_suffix(".json").read_text())
        assert side["num_train"] in (64, 128) and side["seed"] == seed and side["epochs"] == 1
    table = (run / "measurements.csv").read_text()
    assert ",fp-0+matched,,gradient,total_variation," in table and ",bnn-1,fp-0+matched,gradient,spearman," in table
    written = json.loads((run / "verdicts.json").read_text())
    row = {r["setting"]: r for r in written["verdicts"][1]["robustness"]}[MATCHED]
    assert row["status"] != "not measured"
    assert sorted(written["predictions"]["accuracy"]) == ["bnn-0", "bnn-1", "fp-0", "fp-1"]  # no base models


def test_a_continued_run_reloads_the_matched_models_and_recomputes_nothing(run):
    before = {p: p.stat().st_mtime_ns for area in ("maps", "models", "units") for p in (run / area).rglob("*")
              if p.is_file()}
    models = (run / "models.json").read_text()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BINSIGHT_CACHE", str(run.parent / "cache"))
        run_study(config(), run)
    assert (run / "models.json").read_text() == models
    assert {p: p.stat().st_mtime_ns for p in before} == before
