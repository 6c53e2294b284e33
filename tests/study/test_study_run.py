"""The study end to end on a tiny configuration: what the runner writes (methods, variants, chance maps,
convergence check, predictions, pairs), resume after a real SIGKILL, refusal of another configuration in
the same folder, names and devices refused before anything is written, and a toy method added through
the explainer registry alone."""

from __future__ import annotations

import csv
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import processes
from binsight.explain import EXPLAINERS, Attribution, Explainer, register_explainer
from binsight.study.config import ConfigError, config_from_dict, tomllib
from binsight.study.context import RunContext
from binsight.study.names import seed_check_label
from binsight.study.plan import make_plan
from binsight.study.runner import run_study
from binsight.study.store import RunFolder
from binsight.study.verdicts import StudyVerdicts

pytestmark = pytest.mark.slow

TINY = """
[data]
n_images = 6
[models]
seeds = [0, 1]
epochs_fp = 1
epochs_bnn = 1
train_subset = 256
test_subset = 64
[methods.smoothgrad]
n_samples = 3
convergence = {n_samples = 6}
[methods.neuromask]
iterations = 30
n_images = 4
sanity = true
sanity_options = {iterations = 5}
[measures]
curve_steps = 4
road_percentages = [30.0, 70.0]
sanity_images = 2
convergence_images = 3
chance_maps = 10
chance_images = 2
control_images = 1
[verdicts]
n_resamples = 200
robustness_surrogates = ["ste", "approx"]
[run]
device = "cpu"
chunk_size = 3
progress = false
"""

KEY = ("image", "model", "model_b", "method", "measure", "step")
BASE = ["fp-0", "fp-1", "bnn-0", "bnn-1"]
VARIANTS = ["bnn-0+approx", "bnn-1+approx"]


# the study command without the report (built by the CLI above it, tested with the report)
STUDY = ("import sys; from binsight.cli.study import study; study(sys.argv[1], sys.argv[2])")


def study(config: Path, out: Path, env: dict[str, str], **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-c", STUDY, str(config), str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finish(proc: subprocess.Popen) -> str:
    return processes.finish(proc, timeout=900)


def read_table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(line for line in fh if not line.startswith("#")))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, and a run killed with SIGKILL part-way through its maps then resumed."""
    root = tmp_path_factory.mktemp("study")
    config = root / "tiny.toml"
    config.write_text(TINY)
    # one thread per process: the test machine's cores are shared, and oversubscribed threads crawl
    env = {**os.environ, "BINSIGHT_CACHE": str(root / "cache"), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    whole = root / "whole"
    log = finish(study(config, whole, env))

    killed = root / "killed"
    processes.kill_after(study(config, killed, env), killed, "maps/*/*/*.npz", 3, timeout=300)
    before = {p: p.stat().st_mtime_ns for p in killed.glob("maps/*/*/*.npz")}
    assert not (killed / "measurements.csv").exists()
    finish(study(config, killed, env))
    return {"root": root, "config": config, "env": env, "whole": whole, "killed": killed, "log": log,
            "maps_before_kill": before, "table": read_table(whole / "measurements.csv")}


def test_resumed_run_gives_the_same_table_without_duplicates(runs):
    resumed = read_table(runs["killed"] / "measurements.csv")
    assert resumed == runs["table"]
    keys = [tuple(r[k] for k in KEY) for r in resumed]
    assert len(keys) == len(set(keys))


def test_resume_computes_nothing_twice(runs):
    for path, mtime in runs["maps_before_kill"].items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was computed again"
    assert not list(runs["killed"].rglob("*.part"))


def test_every_value_is_finite_and_undefined_values_are_named(runs):
    values = [float(r["value"]) for r in runs["table"]]
    assert all(math.isfinite(v) for v in values)
    undefined = [r for r in runs["table"] if r["measure"].endswith(":undefined")]
    assert all(float(r["value"]) == 1.0 for r in undefined)


def test_methods_labels_and_images(runs):
    table = runs["table"]
    images = {m: {r["image"] for r in table if r["method"] == m and r["model"] == "fp-0"}
              for m in ("gradient", "neuromask", "smoothgrad-n200", "random", "smooth-random")}
    assert len(images["gradient"]) == 6 and len(images["random"]) == 6 and len(images["smooth-random"]) == 6
    assert len(images["neuromask"]) == 4 and len(images["smoothgrad-n200"]) == 3
    measures = {r["measure"] for r in table}
    assert {"spearman", "ssim", "top_k_iou", "spearman_shuffled", "ssim_shuffled", "top_k_iou_shuffled",
            "total_variation", "high_frequency_energy", "deletion_auc", "insertion_auc", "deletion_blur_auc",
            "insertion_blur_auc", "road_morf", "road_lerf", "degenerate", "sanity_spearman", "sanity_ssim",
            "predicted", "correct"} <= measures
    sanity = {r["method"] for r in table if r["measure"] == "sanity_spearman"}
    assert sanity == {"gradient", "smoothgrad", "gradcam", "neuromask"}


def test_chance_test_and_its_controls_on_the_first_images_of_the_chance_methods(runs):
    table = runs["table"]
    first = sorted({int(r["image"]) for r in table})[:2]  # measures.chance_images = 2
    flagged = [r for r in table if r["measure"] == "nonsensical"]
    assert {r["method"] for r in flagged} == {"gradient", "smoothgrad", "gradcam", "neuromask"}
    assert {int(r["image"]) for r in flagged} == set(first) and {r["value"] for r in flagged} <= {"0.0", "1.0"}
    assert {r["model"] for r in flagged} == set(BASE + VARIANTS)
    assert not [r for r in table if r["measure"] == "below_chance"]  # the former rule is gone
    fractions = {r["measure"] for r in table if r["measure"].startswith("chance_fraction_")}
    assert fractions >= {"chance_fraction_deletion_blur", "chance_fraction_road_morf"}
    degenerate = {(r["model"], r["method"], r["image"]) for r in table if r["measure"] == "degenerate" and r["value"] == "1.0"}
    tested = {(r["model"], r["method"], r["image"]): r["value"] for r in flagged}
    assert all(tested[key] == "1.0" for key in degenerate & set(tested))  # degenerate maps counted, never dropped
    controlled = {key for key in tested if int(key[2]) == first[0]}  # measures.control_images = 1
    assert controlled and len(controlled) < len(tested)
    for name in ("inverted", "edges", "blob"):  # "other image" needs two maps of a chunk: not with one image
        control = {(r["model"], r["method"], r["image"]) for r in table if r["measure"] == f"nonsensical_{name}"}
        assert control == controlled, name


def test_surrogate_variants_are_explained_measured_and_paired(runs):
    table = runs["table"]
    by_model = {m: {r["method"] for r in table if r["model"] == m and r["model_b"] == ""} for m in BASE + VARIANTS}
    for v in VARIANTS:
        assert by_model[v] == {"gradient", "smoothgrad", "gradcam"}, v
    assert {"neuromask", "smoothgrad-n200", "random", "smooth-random"} <= by_model["bnn-0"]
    pairs = {(r["model"], r["model_b"], r["method"]) for r in table if r["measure"] == "spearman"}
    assert ("fp-0", "bnn-0+approx", "gradcam") in pairs and ("bnn-0+approx", "bnn-1+approx", "smoothgrad") in pairs
    assert ("fp-0", "bnn-1", "neuromask") in pairs and ("fp-0", "bnn-0+approx", "neuromask") not in pairs
    assert not any("random" in method or method == "smoothgrad-n200" for _, _, method in pairs)
    assert ("bnn-0", "bnn-0+approx", "gradient") not in pairs  # a model is never paired with its own variant


def test_the_seed_check_survives_a_resumed_run_and_pairs_each_model_with_itself(runs):
    """NeuroMask's seed check (the default table's seed_check_images, here all 4 of its images): every base
    model's maps from a second start, stored under their own label, the same in the resumed run; each
    model's start-to-start pair rows, with their chance level."""
    label = seed_check_label("neuromask")
    for model in BASE:
        stored = {}
        for run in ("whole", "killed"):
            files = sorted((runs[run] / "maps" / model / label).glob("*.npz"))
            stored[run] = [dict(np.load(f)) for f in files]
        assert len(stored["whole"]) == 2  # 4 images in chunks of 3
        for whole, killed in zip(stored["whole"], stored["killed"]):
            assert all(np.array_equal(whole[k], killed[k]) for k in ("maps", "images", "targets"))
        first = [dict(np.load(f)) for f in sorted((runs["whole"] / "maps" / model / "neuromask").glob("*.npz"))]
        assert np.array_equal(first[0]["images"], stored["whole"][0]["images"])
        assert not np.array_equal(first[0]["maps"], stored["whole"][0]["maps"])  # another start
    assert not list(runs["whole"].glob(f"maps/*+*/{label}"))  # base models only
    rows = [r for r in runs["table"] if r["method"] == label]
    assert {(r["model"], r["model_b"]) for r in rows} == {(m, m) for m in BASE}
    assert {r["measure"] for r in rows} >= {"spearman", "ssim", "top_k_iou", "spearman_shuffled"}
    assert len({r["image"] for r in rows}) == 4


def test_maps_explain_the_true_label_and_predictions_are_rows(runs):
    from binsight.data import load_dataset

    labels = load_dataset("fashion-mnist", split="test").labels
    for path in runs["whole"].glob("maps/*/gradient/*.npz"):
        with np.load(path) as chunk:
            assert (chunk["targets"] == labels[torch.from_numpy(chunk["images"])].numpy()).all()
    for model in BASE:
        predicted = {int(r["image"]): int(float(r["value"])) for r in runs["table"]
                     if r["measure"] == "predicted" and r["model"] == model and r["method"] == ""}
        correct = {int(r["image"]): float(r["value"]) for r in runs["table"]
                   if r["measure"] == "correct" and r["model"] == model}
        assert len(predicted) == 6 and correct == {i: float(p == int(labels[i])) for i, p in predicted.items()}


def test_run_folder_holds_the_outputs(runs):
    whole = runs["whole"]
    for name in ("config.toml", "models.json", "verdicts.json", "timings.json", "images.json", "measurements.csv"):
        assert (whole / name).is_file(), name
    models = json.loads((whole / "models.json").read_text())
    assert [m["name"] for m in models] == BASE + VARIANTS
    assert {m["name"]: (m["group"], m["surrogate"]) for m in models}["bnn-1+approx"] == ("1", "approx")
    assert {m["name"]: m["surrogate"] for m in models}["fp-1"] == ""
    assert len(list((whole / "models").glob("*.safetensors"))) == 4
    verdicts = StudyVerdicts.from_json((whole / "verdicts.json").read_text())
    assert len(verdicts.verdicts) == 5
    invocation = json.loads((whole / "run.json").read_text())["invocations"][0]
    assert {"python", "torch", "numpy", "device", "threads"} <= set(invocation) and invocation["device"] == "cpu"
    timings = json.loads((whole / "timings.json").read_text())
    assert {"models", "maps", "measures", "pairs", "sanity", "verdicts"} <= set(timings["cpu"])
    passes = timings["passes"]  # images through the models per stage (binsight.study.passes)
    assert passes["predictions"] == {"forward": 6.0 * len(BASE), "forward_backward": 0.0}  # each base model, once
    assert passes["maps"]["forward_backward"] > 0 and passes["measures"]["forward"] > 0
    assert passes["models"]["forward_backward"] > 0  # trained in the run
    log = runs["log"]
    assert "status" in log
    assert all(v.title in log for v in verdicts.verdicts)  # full titles, never cut


def test_another_configuration_in_the_same_folder_is_refused(runs):
    other = runs["root"] / "other.toml"
    other.write_text(TINY.replace("[run]\n", "[run]\nbatch_size = 3\n"))
    cmd = [sys.executable, "-m", "binsight.cli", "study", str(other), "--out", str(runs["whole"])]
    proc = subprocess.run(cmd, env=runs["env"], capture_output=True, text=True, timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 2
    assert "another configuration" in out and "Traceback" not in out


def test_report_rebuilds_from_the_folder_alone(runs, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(runs["whole"], copy)
    out = subprocess.run([sys.executable, "-m", "binsight.cli", "report", str(copy)], capture_output=True, text=True,
                         env=runs["env"], timeout=300)
    assert out.returncode == 0, out.stderr
    assert (copy / "report.html").is_file()


# -- names and devices refused before anything is written ------------------------------------------------


def _checkpoint_config(checkpoints: list[dict[str, str]]) -> dict:
    raw = tomllib.loads(TINY)
    raw["models"] = {"checkpoints": checkpoints}
    return raw


@pytest.mark.parametrize("names, message", [
    (["../../escaped", "b"], "model name"),
    (["a/b", "b"], "model name"),
    (["a+ste", "b"], "reserved for surrogate variants"),
    (["same", "same"], "values repeat"),
    (["fp-1", "x"], "automatic name"),
])
def test_bad_model_names_are_refused_before_anything_is_written(tmp_path, capsys, names, message):
    from binsight.cli import main

    lines = [f'[[models.checkpoints]]\npath = "{tmp_path / n}.safetensors"\nname = "{n}"\n' for n in names]
    config = tmp_path / "c.toml"
    config.write_text("\n".join(lines))
    assert main(["study", str(config), "--out", str(tmp_path / "run" / "out")]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "run").exists() and not (tmp_path.parent / "escaped").exists()


def test_automatic_names_of_checkpoints(runs, tmp_path):
    models = runs["whole"] / "models"
    raw = _checkpoint_config([{"path": str(models / "bnn-1.safetensors")}, {"path": str(models / "fp-0.safetensors")},
                                    {"path": str(models / "fp-1.safetensors"), "name": "mine"}])
    raw["methods"] = {"run": ["gradient"]}
    raw["measures"].update({"chance_methods": ["gradient"], "sanity": False, "faithfulness": False, "baselines": False})
    run_study(config_from_dict(raw), tmp_path / "out")
    listed = json.loads((tmp_path / "out" / "models.json").read_text())
    assert [m["name"] for m in listed] == ["bnn-0", "fp-1", "mine", "bnn-0+approx"]
    assert [m["group"] for m in listed[:3]] == ["0", "1", "2"]


def test_cuda_on_a_machine_without_one_is_refused_before_anything_is_written(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    raw = tomllib.loads(TINY)
    raw["run"]["device"] = "cuda"
    with pytest.raises(ConfigError, match="run.device: device 'cuda' asked for"):
        run_study(config_from_dict(raw), tmp_path / "out")
    assert not (tmp_path / "out").exists()


# -- a method added through the registry alone ------------------------------------------------------------

SEEDS_SEEN: list[int] = []


@pytest.fixture
def toy_method(monkeypatch):
    """A toy method registered in a private copy of the explainer registry (restored after the test):
    the image's brightness to the power ``power`` plus seeded noise."""
    monkeypatch.setattr(EXPLAINERS, "_items", dict(EXPLAINERS._items))

    @register_explainer
    class ToyBrightness(Explainer):
        name = "toy-brightness"
        seeded = True

        def __init__(self, model, *, power: float = 1.0, seed: int = 0, surrogate=None, batch_size=None):
            super().__init__(model, surrogate=surrogate, batch_size=batch_size)
            self.power, self.seed = power, seed

        def _explain(self, inputs, wanted):
            SEEDS_SEEN.append(self.seed)
            targets = self.resolve_targets(inputs, wanted)
            noise = torch.rand(inputs[:, :1].shape, generator=torch.Generator().manual_seed(self.seed))
            return Attribution(inputs.mean(1, keepdim=True) ** self.power + 0.01 * noise, targets)

    return ToyBrightness


def test_a_toy_method_registered_here_runs_through_a_tiny_study(runs, tmp_path, toy_method):
    models = runs["whole"] / "models"
    raw = _checkpoint_config([{"path": str(models / f"{n}.safetensors"), "name": f"m{n.replace('-', '')}"}
                                    for n in ("fp-0", "fp-1", "bnn-0")])
    raw["methods"] = {"run": ["toy-brightness", "gradient"],
                      "toy-brightness": {"power": 2.0, "robustness": True, "sanity": True}}
    raw["measures"].update({"chance_methods": ["toy-brightness"], "sanity_images": 2})
    SEEDS_SEEN.clear()
    run_study(config_from_dict(raw), tmp_path / "out")
    table = read_table(tmp_path / "out" / "measurements.csv")
    toy = [r for r in table if r["method"] == "toy-brightness"]
    assert {r["model"] for r in toy if r["model_b"] == ""} >= {"mfp0", "mfp1", "mbnn0", "mbnn0+approx"}
    assert {r["measure"] for r in toy} >= {"spearman", "total_variation", "road_morf", "sanity_spearman"}
    assert {r["image"] for r in toy if r["measure"] == "total_variation"} == {r["image"] for r in table}
    assert set(SEEDS_SEEN) == {0, 1}  # the chunk's index, chunks of 3 of 6 images
    with np.load(next((tmp_path / "out" / "maps" / "mfp0" / "toy-brightness").glob("*.npz"))) as chunk:
        assert chunk["maps"].min() >= 0 and chunk["maps"].shape[1:] == (1, 28, 28)


def test_progress_bars_are_drawn_by_rank_0_alone_and_say_whose_share(tmp_path):
    """Under torchrun every rank runs the stages; only rank 0 draws bars (two ranks' bars on one terminal
    garble each other), labelled as its share of the units."""
    def bar(ctx):
        with ctx.progress(3, "maps") as made:
            return getattr(made, "desc", None), made.disable  # a disabled bar keeps no label

    def context(progress: bool, out: Path, **place) -> RunContext:
        plan = make_plan(config_from_dict({"run": {"device": "cpu", "progress": progress}}))
        return RunContext(plan, RunFolder(out), torch.device("cpu"), **place)

    ctx = context(True, tmp_path / "out")
    assert ctx.shows_progress and bar(ctx) == ("maps", False)
    ctx = context(True, tmp_path / "out", rank=0, ranks=2)  # as rank 0 of two processes
    assert bar(ctx) == ("maps (process 1 of 2, its share)", False)
    ctx = context(True, tmp_path / "out", rank=1, ranks=2)  # as the other rank
    assert not ctx.shows_progress and bar(ctx)[1]
    quiet = context(False, tmp_path / "quiet")
    assert not quiet.shows_progress and bar(quiet)[1]
