"""The study configuration: defaults, TOML round trip, and clear errors naming the key."""

from __future__ import annotations

import pytest

from binsight.cli import main
from binsight.study.config import (
    ConfigError,
    StudyConfig,
    config_from_dict,
    config_hash,
    load_config,
    to_toml,
    tomllib,
)


def test_defaults_are_the_default_study():
    c = StudyConfig()
    assert c.data.name == "fashion-mnist" and c.data.split == "test"
    assert c.models.arch == "small-cnn" and c.models.precisions == ["fp", "bnn"] and len(c.models.seeds) == 2
    assert c.methods.run == ["gradient", "smoothgrad", "gradcam", "neuromask"]
    assert c.methods.smoothgrad.n_samples == 50 and c.methods.smoothgrad.noise == 0.15
    assert c.methods.neuromask.iterations == 2000
    assert c.method_names()[-2:] == ["random", "gaussian"]


def test_toml_round_trip_including_checkpoints():
    c = config_from_dict({"models": {"checkpoints": [{"path": "a.safetensors", "precision": "bnn"}]},
                          "methods": {"smoothgrad": {"noise": 0.2}}, "data": {"n_images": 7}})
    assert config_from_dict(tomllib.loads(to_toml(c))) == c
    assert config_from_dict(tomllib.loads(to_toml(StudyConfig()))) == StudyConfig()


@pytest.mark.parametrize(
    "raw, message",
    [
        ({"methods": {"smoothgrad": {"n_samples": "50"}}}, "methods.smoothgrad.n_samples: expected int, got str"),
        ({"methods": {"smoothgrad": {"n_samples": 5.0}}}, "methods.smoothgrad.n_samples: expected int, got float"),
        ({"run": {"batch_size": True}}, "run.batch_size: expected int, got bool"),
        ({"data": {"nimages": 3}}, "data.nimages: unknown key"),
        ({"datta": {}}, "datta: unknown key"),
        ({"methods": {"gradcam": {"layer": 3}}}, "methods.gradcam.layer: expected str, got int"),
        ({"models": {"seeds": [0, "1"]}}, "models.seeds[1]: expected int, got str"),
        ({"models": {"seeds": 1}}, "models.seeds: expected a list of int, got int"),
        ({"measures": {"sanity_methods": ["gradient", "lime"]}}, "measures.sanity_methods[1]: 'lime' is not one of"),
        ({"models": {"checkpoints": [{"path": "x", "sha": 1}]}}, "models.checkpoints[0].sha: unknown key"),
        ({"methods": "gradient"}, "methods: expected a table, got str"),
        ({"methods": {"run": ["gradient", "lime"]}}, "methods.run[1]: 'lime' is not one of"),
        ({"data": {"n_images": 0}}, "data.n_images: must be a positive integer"),
        ({"models": {"precisions": ["fp", "fp"]}}, "models.precisions: values repeat"),
        ({"data": {"masks": "m.json"}}, "data.masks: only used with data.name = 'image-folder'"),
        ({"measures": {"top_k": 1.5}}, "measures.top_k: must be in (0, 1]"),
        ({"models": {"checkpoints": [{"name": "a"}]}}, "models.checkpoints[0].path: give the checkpoint file"),
    ],
)
def test_bad_configurations_name_the_key(raw, message):
    with pytest.raises(ConfigError) as info:
        config_from_dict(raw)
    assert message in str(info.value)


def test_float_field_accepts_an_int():
    assert config_from_dict({"methods": {"smoothgrad": {"noise": 0}}}).methods.smoothgrad.noise == 0.0


def test_load_config_errors(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[data\nname = 1\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_hash_changes_with_results_not_with_speed_settings():
    base = config_hash(StudyConfig())
    assert config_hash(config_from_dict({"run": {"batch_size": 7, "progress": False}})) == base
    assert config_hash(config_from_dict({"data": {"n_images": 10}})) != base
    assert config_hash(config_from_dict({"methods": {"neuromask": {"iterations": 10}}})) != base


def test_print_config_prints_the_resolved_config(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text("[data]\nn_images = 9\n")
    assert main(["study", str(path), "--print-config"]) == 0
    printed = capsys.readouterr().out
    assert config_from_dict(tomllib.loads(printed)).data.n_images == 9


def test_cli_reports_a_config_error_in_one_line(tmp_path, capsys):
    path = tmp_path / "c.toml"
    path.write_text('[methods.smoothgrad]\nn_samples = "many"\n')
    assert main(["study", str(path), "--print-config"]) == 2
    err = capsys.readouterr().err
    assert "methods.smoothgrad.n_samples: expected int, got str" in err and "Traceback" not in err
