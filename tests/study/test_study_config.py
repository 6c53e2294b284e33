"""The study configuration: defaults, method tables driven by the explainer registry, TOML round trip,
clear errors naming the key, what the hash covers, and the device."""

from __future__ import annotations

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
        ({"methods": {"gradcam": {"convergence": {"layer": "x"}}}}, "methods.gradcam.convergence_label: give"),
        ({"methods": {"gradient": {"n_images": -1}}}, "methods.gradient.n_images: must be >= 0"),
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
        ({"measures": {"chance_methods": ["gradient", "lime"]}}, "measures.chance_methods[1]: 'lime' is not one of"),
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
