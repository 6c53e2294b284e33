"""The study configuration: defaults, method tables driven by the explainer registry, TOML round trip,
clear errors naming the key, what the hash covers, and the device."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from binsight.cli import main
from binsight.errors import BinsightError
from binsight.study.config import (
    ConfigError,
    MethodConfig,
    StudyConfig,
    config_from_dict,
    config_hash,
    load_config,
    own_specs,
    resolve_device,
    to_toml,
    tomllib,
)
from binsight.study.plan import method_specs


def test_defaults_are_the_default_study():
    c = StudyConfig()
    assert c.data.name == "fashion-mnist" and c.data.split == "test" and c.data.n_images == 128
    assert c.models.arch == "small-cnn" and c.models.precisions == ["fp", "bnn"] and c.models.seeds == [0, 1, 2]
    assert c.methods.run == ["gradient", "smoothgrad", "gradcam", "neuromask"] and c.methods.target == "label"
    assert c.methods.table("smoothgrad").options == {"n_samples": 50, "noise_level": 0.15}
    assert c.methods.table("neuromask").n_images == 64 and c.methods.table("neuromask").options["iterations"] == 2000
    assert [m for m in c.methods.run if c.methods.table(m).robustness] == ["gradient", "smoothgrad", "gradcam"]
    assert c.verdicts.robustness_surrogates == ["ste", "approx", "identity"]
    assert c.method_names() == ["gradient", "smoothgrad", "gradcam", "neuromask", "smoothgrad-n200", "random",
                                "smooth-random"]
    assert c.run.device == "auto"


def test_method_specs_come_from_the_tables():
    specs = {s.label: s for s in method_specs(StudyConfig())}
    assert specs["neuromask"].n_images == 64 and specs["neuromask"].seeded and not specs["neuromask"].robustness
    assert specs["smoothgrad-n200"].explainer == "smoothgrad" and specs["smoothgrad-n200"].n_images == 16
    assert specs["smoothgrad-n200"].options == {"n_samples": 200, "noise_level": 0.15}
    assert specs["gradient"].n_images == 128 and not specs["gradient"].seeded and specs["gradient"].chance_test
    assert specs["random"].chance and specs["smooth-random"].chance and not specs["random"].explainer


def test_a_method_table_may_run_another_explainer_under_its_own_label():
    c = config_from_dict({"methods": {"run": ["gradient", "sg-wide"],
                                      "sg-wide": {"explainer": "smoothgrad", "noise_level": 0.3, "n_images": 5}},
                          "measures": {"chance_methods": ["gradient"]}})
    spec = next(s for s in method_specs(c) if s.label == "sg-wide")
    assert spec.explainer == "smoothgrad" and spec.options == {"noise_level": 0.3} and spec.n_images == 5


def test_toml_round_trip_including_checkpoints_and_method_tables():
    c = config_from_dict({"models": {"checkpoints": [{"path": "a.safetensors", "precision": "bnn", "name": "mine"}]},
                          "methods": {"smoothgrad": {"noise_level": 0.2, "convergence": {"n_samples": 100}},
                                      "neuromask": {"sanity": True, "sanity_options": {"iterations": 5}}},
                          "data": {"n_images": 7}})
    assert c.methods.table("smoothgrad").options == {"n_samples": 50, "noise_level": 0.2}
    assert config_from_dict(tomllib.loads(to_toml(c))) == c
    assert config_from_dict(tomllib.loads(to_toml(StudyConfig()))) == StudyConfig()


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"methods": {"smoothgrad": {"n_samples": "50"}}}, None),  # the explainer checks option values
        ({"methods": {"smoothgrad": {"n_sample": 5}}}, "methods.smoothgrad.n_sample: not an option of explainer"),
        ({"methods": {"smoothgrad": {"seed": 5}}}, "methods.smoothgrad.seed: not an option"),
        ({"methods": {"gradient": {"n_images": -1}}}, "methods.gradient.n_images: must be >= 0"),
        ({"methods": {"neuromask": {"seed_check_images": -1}}}, "methods.neuromask.seed_check_images: must be >= 0"),
        ({"methods": {"gradient": {"seed_check_images": 4}}}, "explainer 'gradient' has no `start` option"),
        ({"methods": {"run": ["neuromask", "neuromask-start1"], "neuromask-start1": {"explainer": "gradient"}}},
         "seed check labels): values repeat"),
        ({"methods": {"gradient": {"sanity": 1}}}, "methods.gradient.sanity: expected bool, got int"),
        ({"methods": {"gradient": 3}}, "methods.gradient: expected a table"),
        ({"methods": {"lime": {}}}, "methods.lime: 'lime' is not one of"),
        ({"methods": {"mine": {"explainer": "lime"}}}, "methods.mine.explainer: 'lime' is not one of"),
        ({"methods": {"target": "guess"}}, "methods.target: 'guess' is not one of 'label', 'predicted'"),
        ({"methods": {"run": ["gradient", "random"], "random": {"explainer": "gradient"}}}, "label of a chance baseline"),
        ({"run": {"batch_size": True}}, "run.batch_size: expected int, got bool"),
        ({"run": {"threads": 100000}}, "run.threads: 100000 is not between 0"),
        ({"run": {"threads": -1}}, "run.threads: -1 is not between 0"),
        ({"run": {"device": "gpu"}}, "run.device: expected 'auto'"),
        ({"data": {"nimages": 3}}, "data.nimages: unknown key"),
        ({"data": {"name": "mnist"}}, "data.name: 'mnist' is not one of"),
        ({"datta": {}}, "datta: unknown key"),
        ({"models": {"seeds": [0, "1"]}}, "models.seeds[1]: expected int, got str"),
        ({"models": {"seeds": [0, -1]}}, "models.seeds[1]: a seed must be >= 0"),
        ({"models": {"seeds": 1}}, "models.seeds: expected a list of int, got int"),
        ({"models": {"arch": "vgg99"}}, "models.arch: 'vgg99' is not one of"),
        ({"models": {"train_surrogate": "tanh"}}, "models.train_surrogate: 'tanh' is not one of"),
        ({"models": {"checkpoints": [{"path": "x", "sha": 1}]}}, "models.checkpoints[0].sha: unknown key"),
        ({"models": {"checkpoints": [{"name": "a"}]}}, "models.checkpoints[0].path: give the checkpoint file"),
        ({"models": {"checkpoints": [{"path": "x", "name": "fp-1"}]}}, "has the form of an automatic name"),
        ({"models": {"checkpoints": [{"path": "x", "name": "a"}, {"path": "y", "name": "a"}]}}, "names: values repeat"),
        ({"methods": "gradient"}, "methods: expected a table, got str"),
        ({"methods": {"run": ["gradient", "lime"]}}, "methods.run[1]: 'lime' is not one of"),
        ({"data": {"n_images": 0}}, "data.n_images: must be a positive integer"),
        ({"models": {"precisions": ["fp", "fp"]}}, "models.precisions: values repeat"),
        ({"data": {"masks": "m.json"}}, "data.masks: only used with data.name = 'image-folder'"),
        ({"measures": {"top_k": 1.5}}, "measures.top_k: must be in (0, 1]"),
        ({"measures": {"chance_methods": ["gradient", "lime"]}}, "measures.chance_methods[1]: 'lime' is not in "
                                                                 "methods.run"),
        ({"verdicts": {"noise_margin": float("nan")}}, "verdicts.noise_margin: must be a finite number"),
        ({"verdicts": {"similarity_margin": float("inf")}}, "verdicts.similarity_margin: must be a finite number"),
        ({"verdicts": {"noise_margin": -0.1}}, "verdicts.noise_margin: must be a finite number >= 0"),
        ({"verdicts": {"similarity_measures": ["pearson"]}}, "verdicts.similarity_measures[0]: 'pearson' is not one of"),
        ({"verdicts": {"similarity_measures": ["ssim"]}},
         "verdicts.primary_similarity (one of verdicts.similarity_measures): 'spearman' is not one of 'ssim'"),
        ({"verdicts": {"robustness_surrogates": ["ste", "tanh"]}}, "verdicts.robustness_surrogates[1]: 'tanh'"),
    ],
)
def test_bad_configurations_name_the_key(raw, message):
    if message is None:
        config_from_dict(raw)  # accepted here; the explainer refuses a wrong value when built
        return
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert message in str(info.value)
    assert isinstance(info.value, BinsightError)


def test_chance_maps_are_enough_for_the_chance_test_level():
    """With N chance maps of each kind the smallest p-value is 1 / (2 N + 1): 10 is the fewest at level 0.05."""
    from binsight.metrics.chance import LEVEL
    from binsight.study.config.check import min_chance_maps

    assert LEVEL == 0.05 and min_chance_maps() == 10
    assert config_from_dict({"measures": {"chance_maps": 10}}).measures.chance_maps == 10
    with pytest.raises(ConfigError, match=r"measures.chance_maps: must be at least 10 .*; got 9"):
        config_from_dict({"measures": {"chance_maps": 9}})
    assert config_from_dict({"measures": {"chance_maps": 0, "chance_methods": []}}).measures.chance_maps == 0


def test_float_field_accepts_an_int():
    assert config_from_dict({"verdicts": {"noise_margin": 0}}).verdicts.noise_margin == 0.0


def test_nan_margins_in_a_toml_file_are_refused(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text("[verdicts]\nsimilarity_margin = nan\n")
    with pytest.raises(ConfigError, match="verdicts.similarity_margin: must be a finite number"):
        load_config(path)


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nname = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_hash_covers_batch_sizes_but_not_display_or_threads():
    base = config_hash(StudyConfig())
    assert config_hash(config_from_dict({"run": {"progress": False, "threads": 1}})) == base
    assert config_hash(config_from_dict({"run": {"batch_size": 3}})) != base
    assert config_hash(config_from_dict({"models": {"train_batch_size": 64}})) != base
    assert config_hash(config_from_dict({"data": {"n_images": 10}})) != base
    assert config_hash(config_from_dict({"methods": {"neuromask": {"iterations": 10}}})) != base


def test_device_auto_resolves_and_a_missing_cuda_is_a_config_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == "cpu" and resolve_device("cpu") == "cpu"
    with pytest.raises(ConfigError, match="run.device: device 'cuda' asked for, but torch sees no CUDA GPU here; use 'auto' or 'cpu'"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="run.device: device 'cuda:1' asked for"):
        resolve_device("cuda:1")
    assert config_hash(StudyConfig()) == config_hash(config_from_dict({"run": {"device": "cpu"}}))


def test_print_config_prints_the_resolved_config(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[data]\nn_images = 9\n[methods.smoothgrad]\nn_samples = 7\n")
    assert main(["study", str(path), "--print-config"]) == 0
    printed = config_from_dict(tomllib.loads(capsys.readouterr().out))
    assert printed.data.n_images == 9 and printed.methods.table("smoothgrad").options["n_samples"] == 7


def test_cli_reports_a_config_error_in_one_line(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[methods.smoothgrad]\nn_sample = 5\n')
    assert main(["study", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "methods.smoothgrad.n_sample: not an option of explainer 'smoothgrad'" in err and "Traceback" not in err


def test_an_unknown_method_table_default_is_empty():
    assert StudyConfig().methods.table("gradcam") == MethodConfig(sanity=True, robustness=True)
    assert StudyConfig().methods.table("captum:Saliency") == MethodConfig()


def test_an_option_value_the_explainer_refuses_names_the_method_table():
    from binsight.models import build_model
    from binsight.study.plan import StudyModel
    from binsight.study.stages.maps import create_explainer

    config = config_from_dict({"methods": {"smoothgrad": {"n_samples": "50"}}})
    spec = next(s for s in method_specs(config) if s.label == "smoothgrad")
    model = StudyModel("fp-0", "fp", "0", "", build_model("small-cnn", "fp"))
    with pytest.raises(ConfigError, match="methods.smoothgrad: .*n_samples"):
        create_explainer(spec, model, chunk=0, batch_size=8)
    ok = next(s for s in method_specs(StudyConfig()) if s.label == "smoothgrad-n200")
    explainer = create_explainer(ok, model, chunk=3, batch_size=8)
    assert explainer.n_samples == 200 and explainer.seed == 3 and explainer.batch_size == 8


def test_own_model_tables_round_trip_with_their_folder(tmp_path):
    """``[[models.own]]`` tables: read with their keys, relative weights resolved against the file's
    folder (own_dir, recorded so that the run folder's config.toml reads back the same), written back
    as array-of-tables TOML, and training switched off."""
    (tmp_path / "study.toml").write_text(
        '[[models.own]]\nfactory = "mine:build"\nkwargs = {width = 8}\nweights = "w.safetensors"\n'
        'precision = "bnn"\nmean = [0.5]\nstd = [0.25]\nname = "mine"\ngroup = 1\n')
    config = load_config(tmp_path / "study.toml")
    assert config.models.own_dir == str(tmp_path.resolve())
    (spec,) = own_specs(config.models)
    assert spec.weights == str(tmp_path.resolve() / "w.safetensors") and spec.group == "1"
    assert spec.kwargs == {"width": 8} and spec.mean == (0.5,)
    text = to_toml(config)
    assert "[[models.own]]" in text
    again = tmp_path / "again.toml"
    again.write_text(text)
    assert load_config(again) == config and config_hash(load_config(again)) == config_hash(config)


def test_an_empty_road_percentages_is_refused_naming_the_key():
    with pytest.raises(ConfigError, match=r"measures.road_percentages: give at least one percent"):
        config_from_dict({"measures": {"road_percentages": []}})


@pytest.mark.parametrize("text, message", [
    ("[methods.smoothgrad]\nnoise_level = 1979-05-27\n",
     r"methods.smoothgrad.noise_level: expected a string, number, boolean, list or table, got date"),
    ("[methods.gradcam]\nconvergence = {layer = 07:32:00}\nconvergence_label = \"g\"\n",
     r"methods.gradcam.convergence.layer: expected a string, number, boolean, list or table, got time"),
    ("[[models.own]]\nfactory = \"m:f\"\nnormalize = \"inside\"\nkwargs = {when = 1979-05-27T07:32:00}\n",
     r"models.own\[0\].kwargs.when: expected a string, number, boolean, list or table, got datetime"),
    ("[methods.gradcam]\nlayer = " + "[" * 40 + "]" * 40 + "\n", r"methods.gradcam.layer: nested deeper than 32"),
    ("[data]\nn_images = " + "[" * 3000 + "]" * 3000 + "\n", r"nested too deeply"),
    ("[data]\nseed = 9223372036854775807\n", r"data.seed: must be from 0 to 4294967295"),
    ("[models]\nseeds = [-5]\n", r"models.seeds\[0\]: a seed must be >= 0"),
    ("[verdicts]\nseed = -1\n", r"verdicts.seed: must be from 0 to 4294967295"),
])
def test_configuration_cases_that_used_to_be_tracebacks_are_one_line_errors(tmp_path, text, message):
    """A TOML date or time as an option, an array nested past the limit (or past the reader's recursion),
    and seeds that overflow a generator are ConfigErrors before anything runs."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    with pytest.raises(ConfigError, match=message) as info:
        load_config(path)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("value", ["\U0001F600 smile", "caf\u00e9 \u2603", "tab\tquote\" back\\ del\x7f nul\x00"])
def test_strings_outside_the_basic_plane_are_written_as_valid_toml(tmp_path, capsys, value):
    """An emoji (outside Unicode's basic plane), accents and control characters are written into
    config.toml and --print-config as TOML that reads back to the same value."""
    from binsight.study.settings_reference import commented_toml

    config = config_from_dict({"models": {"checkpoints": [{"path": value, "name": "m"}]},
                               "methods": {"gradcam": {"layer": value}}})
    for text in (to_toml(config), commented_toml(config)):
        again = config_from_dict(tomllib.loads(text))
        assert again == config and again.models.checkpoints[0].path == value
        assert again.methods.table("gradcam").options["layer"] == value
    path = tmp_path / "c.toml"
    path.write_text(to_toml(config), encoding="utf-8")
    assert main(["study", str(path), "--print-config"]) == 0
    assert load_config(path) == config
    assert config_from_dict(tomllib.loads(capsys.readouterr().out)).models.checkpoints[0].path == value


def test_method_keyed_settings_follow_the_methods_that_run():
    """Left out, the chance test takes every method of methods.run (a subset of the methods runs with
    nothing else configured); given, it is kept."""
    assert config_from_dict({}).measures.chance_methods == ["gradient", "smoothgrad", "gradcam", "neuromask"]
    assert config_from_dict({}) == StudyConfig()
    assert config_from_dict({"methods": {"run": ["gradient"]}}).measures.chance_methods == ["gradient"]
    c = config_from_dict({"methods": {"run": ["gradcam", "captum:Saliency"]}})
    assert c.measures.chance_methods == ["gradcam", "captum:Saliency"]
    assert [s.label for s in method_specs(c) if s.chance_test] == ["gradcam", "captum:Saliency"]
    kept = config_from_dict({"methods": {"run": ["gradient", "gradcam"]}, "measures": {"chance_methods": ["gradcam"]}})
    assert kept.measures.chance_methods == ["gradcam"]
    assert config_from_dict(tomllib.loads(to_toml(c))) == c


def test_a_convergence_check_is_configured_in_its_methods_table_alone():
    """One key, ``methods.NAME.convergence``: the label defaults to NAME-convergence and the noise
    verdict's convergence method follows the noise method's check; the old keys still work."""
    c = config_from_dict({"methods": {"run": ["gradient", "sg"], "sg": {"explainer": "smoothgrad",
                                                                        "convergence": {"n_samples": 100}}},
                          "verdicts": {"noise_method": "sg"}})
    assert c.methods.table("sg").convergence_label == "sg-convergence"
    assert c.verdicts.convergence_method == "sg-convergence"
    spec = next(s for s in method_specs(c) if s.label == "sg-convergence")
    assert spec.explainer == "smoothgrad" and spec.options == {"n_samples": 100}
    more = config_from_dict({"methods": {"smoothgrad": {"convergence": {"n_samples": 400}}}})
    assert more.verdicts.convergence_method == more.methods.table("smoothgrad").convergence_label == "smoothgrad-n200"
    assert next(s for s in method_specs(more) if s.label == "smoothgrad-n200").options["n_samples"] == 400
    old = config_from_dict({"methods": {"smoothgrad": {"convergence": {"n_samples": 400}, "convergence_label": "sg400"}},
                            "verdicts": {"convergence_method": "sg400"}})
    assert old.verdicts.convergence_method == "sg400" and "sg400" in old.method_names()


def test_the_learning_rate_and_recipe_settings_reach_training_and_its_cache_key(monkeypatch):
    """models.lr_fp / lr_bnn (0 = the recipe's) and models.augment are hashed, checked, and given to
    training, whose cache key changes with them."""
    from types import SimpleNamespace

    from binsight.study.plan import model_sources
    from binsight.study.stages import models as stage
    from binsight.train.cache import cache_key
    from binsight.train.loop import TrainConfig

    base = config_hash(StudyConfig())
    for key, value in (("lr_fp", 0.05), ("lr_bnn", 0.01), ("augment", False)):
        assert config_hash(config_from_dict({"models": {key: value}})) != base, key
    with pytest.raises(ConfigError, match=r"models.lr_bnn: a learning rate in \(0, 10\], or 0 for the recipe's"):
        config_from_dict({"models": {"lr_bnn": 1e308}})
    trained = {}

    def train_here(arch, precision, dataset, seed, epochs, *, progress, data_parallel, **settings):
        trained[precision] = TrainConfig(model=arch, precision=precision, dataset=dataset, seed=seed, epochs=epochs,
                                         **settings)
        return torch.nn.Identity(), {"checkpoint": "unused"}

    monkeypatch.setattr(stage, "cached_model", train_here)
    config = config_from_dict({"models": {"lr_fp": 0.05, "augment": False, "seeds": [0]}})
    ctx = SimpleNamespace(config=config, device="cpu", shows_progress=False)
    for source in model_sources(config, []):
        stage.obtain(ctx, source)
    assert trained["fp"].lr == 0.05 and trained["bnn"].lr is None and not trained["fp"].augment
    assert trained["fp"].resolved().lr == 0.05 and trained["bnn"].resolved().lr == 2e-3
    recipe = TrainConfig(model="small-cnn", precision="fp", seed=0, device="cpu")
    assert cache_key(trained["fp"]) != cache_key(recipe)


def test_undecidable_verdicts_are_named_before_any_work():
    """Known answers on both sides: the default study decides every verdict; one BNN alone cannot decide
    the FP-vs-BNN verdicts (1 to 3), one model per precision not the within-precision baselines, and a
    method that does not run not its verdict; each is a warning of make_plan, before anything runs."""
    import warnings as w

    from binsight.study.plan import make_plan

    with w.catch_warnings(record=True) as caught:
        w.simplefilter("always")
        assert make_plan(StudyConfig()).notes == ()
    assert not [c for c in caught if "cannot be decided" in str(c.message)]
    with pytest.warns(UserWarning) as caught:
        plan = make_plan(config_from_dict({"models": {"precisions": ["bnn"], "seeds": [0]}}))
    assert [str(c.message) for c in caught if "cannot be decided" in str(c.message)] == list(plan.notes)
    assert [n.split(" (")[0] for n in plan.notes] == ["verdict 1", "verdict 2", "verdict 3"]
    assert all("it compares FP with BNN models (FP models: 0, BNN models: 1)" in n for n in plan.notes)
    pairs = make_plan(config_from_dict({"models": {"seeds": [0]}})).notes
    assert len(pairs) == 2 and pairs[0].startswith("verdict 1 ") and "cannot be decided: the within-precision" in pairs[0]
    assert pairs[1].startswith("verdict 3 ") and "part of it cannot be decided, its similarity parts" in pairs[1]
    alone = make_plan(config_from_dict({"methods": {"run": ["gradient"]}})).notes
    assert [n.split(" (")[0] for n in alone] == ["verdict 2", "verdict 3", "verdict 4"]
    assert "its method 'smoothgrad' does not run (methods.run: gradient)" in alone[0]
    untested = make_plan(config_from_dict({"measures": {"chance_methods": ["gradient"]}})).notes
    assert untested == ("verdict 3 (gradcam maps differ between FP and BNN models): part of it cannot be decided, "
                        "its nonsensical-maps part: measures.chance_methods leaves out 'gradcam'",)
    few = make_plan(config_from_dict({"measures": {"convergence_images": 1}})).notes
    assert few == ("verdict 2 (smoothgrad maps of BNNs noisier): part of it cannot be decided, its convergence "
                   "check: smoothgrad-n200 explains 1 image(s), fewer than 2 (measures.convergence_images)",)


TINY = """
[data]
n_images = 4
[models]
seeds = [0, 1]
epochs_fp = 1
epochs_bnn = 1
train_subset = 256
test_subset = 64
[methods]
run = ["gradient"]
[verdicts]
n_resamples = 100
[run]
device = "cpu"
progress = false
"""


@pytest.mark.slow
def test_a_study_of_one_method_runs_end_to_end(tmp_path, monkeypatch, capsys):
    """methods.run = ["gradient"] and no other method setting: the study and its report run through; the
    verdicts of the methods that do not run are named before the work and left undecided."""
    monkeypatch.setenv("BINSIGHT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.toml"
    path.write_text(TINY)
    assert main(["study", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert [line.split(" (")[0] for line in err.splitlines() if "cannot be decided" in line] == [
        "warning: verdict 2", "warning: verdict 3", "warning: verdict 4"]
    assert (tmp_path / "run" / "report.html").is_file()
    verdicts = json.loads((tmp_path / "run" / "verdicts.json").read_text())
    assert [v["status"] for v in verdicts["verdicts"]][1:] == ["not measured"] * 4  # verdicts 2-4, and 5 (no planted data)
    methods = {row["method"] for row in csv.DictReader(open(tmp_path / "run" / "measurements.csv"))} - {""}
    assert methods == {"gradient", "random", "smooth-random", "gradient@predicted"}  # verdict 1's control


@pytest.mark.slow
def test_a_study_of_one_bnn_warns_and_runs_what_it_can(tmp_path, monkeypatch, capsys):
    """One BNN, no FP model: the FP-vs-BNN verdicts are named undecidable, the rest runs; the BNN is
    trained at the configured learning rate."""
    monkeypatch.setenv("BINSIGHT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "bnn.toml"
    path.write_text(TINY.replace("seeds = [0, 1]", 'seeds = [0]\nprecisions = ["bnn"]\nlr_bnn = 0.005')
                    .replace('run = ["gradient"]', 'run = ["gradient", "gradcam"]'))
    assert main(["study", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert [line.split(" (")[0] for line in err.splitlines() if "cannot be decided" in line] == [
        "warning: verdict 1", "warning: verdict 2", "warning: verdict 3", "warning: verdict 4"]
    side = json.loads((tmp_path / "run" / "models" / "bnn-0.json").read_text())
    assert side["train_config"]["lr"] == 0.005
    assert (tmp_path / "run" / "report.html").is_file()


MOVABLE = """
[data]
n_images = 4
[[models.own]]
factory = "own_models:build_fp"
weights = "weights/fp.safetensors"
normalize = "inside"
name = "mine"
[methods]
run = ["gradient"]
[measures]
faithfulness = false
sanity = false
[verdicts]
n_resamples = 50
[run]
device = "cpu"
progress = false
"""

CONTINUE = "import sys; from binsight.cli.study import study; study(sys.argv[1], sys.argv[2])"


def continue_study(config: Path, out: Path) -> subprocess.CompletedProcess:
    """``binsight study CONFIG --out OUT`` (without the report) in a fresh process, so that the factory's
    module is imported from where the configuration says, not from an earlier import."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BINSIGHT_CACHE": str(config.parent / "cache")}
    return subprocess.run([sys.executable, "-c", CONTINUE, str(config), str(out)], env=env, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_a_project_folder_with_own_models_can_move_and_be_continued(tmp_path):
    """[[models.own]] paths are kept relative to the configuration file (and the run folder's config.toml
    relative to the run folder), and the hash leaves out where the project lies: a project folder copied
    elsewhere, its original gone, continues its run from its own configuration or from the run's."""
    from safetensors.torch import save_file

    import own_models

    project = tmp_path / "project"
    (project / "weights").mkdir(parents=True)
    (project / "own_models.py").write_text(Path(own_models.__file__).read_text())
    torch.manual_seed(0)
    save_file(own_models.build_fp().state_dict(), str(project / "weights" / "fp.safetensors"))
    (project / "study.toml").write_text(MOVABLE)
    first = continue_study(project / "study.toml", project / "runs" / "r")
    assert first.returncode == 0, first.stdout + first.stderr
    moved = tmp_path / "elsewhere" / "moved"
    shutil.copytree(project, moved)
    shutil.rmtree(project)  # nothing may be imported or read from the old place
    done = {p: p.stat().st_mtime_ns for p in (moved / "runs" / "r" / "units").rglob("*.csv")}
    again = continue_study(moved / "study.toml", moved / "runs" / "r")
    assert again.returncode == 0, again.stdout + again.stderr
    remedy = continue_study(moved / "runs" / "r" / "config.toml", moved / "runs" / "r")
    assert remedy.returncode == 0, remedy.stdout + remedy.stderr
    assert done and all(p.stat().st_mtime_ns == mtime for p, mtime in done.items())  # continued, not recomputed
    assert "own_dir = \"../..\"" in (moved / "runs" / "r" / "config.toml").read_text()
    assert load_config(moved / "runs" / "r" / "config.toml").models.own_dir == str(moved.resolve())


def test_a_lone_surrogate_in_a_setting_is_refused():
    """A string TOML and UTF-8 cannot hold (a lone surrogate, possible from Python) is refused by name."""
    with pytest.raises(ConfigError, match=r"data.root: not valid Unicode text"):
        config_from_dict({"data": {"root": "\ud800"}})
    with pytest.raises(ConfigError, match=r"methods.gradcam.layer: not valid Unicode text"):
        config_from_dict({"methods": {"gradcam": {"layer": "x\udfff"}}})


def test_the_training_settings_leave_the_hash_of_a_run_without_them_unchanged():
    """A configuration that keeps the recipe's learning rates and augmentation hashes as it did before
    models.lr_fp, lr_bnn and augment existed (the hash then: sha256 of the settings without them), so an
    older run folder's config.toml still matches its run.json."""
    import hashlib
    import json as js

    from binsight.study.config import as_plain_dict

    for config in (config_from_dict({"run": {"device": "cpu"}}),
                   config_from_dict({"run": {"device": "cpu"}, "methods": {"run": ["gradient"]}})):
        data = as_plain_dict(config)
        for key in ("lr_fp", "lr_bnn", "augment"):
            data["models"].pop(key)
        for key in ("progress", "threads"):
            data["run"].pop(key)
        before = hashlib.sha256(js.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:16]
        assert config_hash(config) == before
