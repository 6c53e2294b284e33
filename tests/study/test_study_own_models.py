"""The study on a user's own models: an FP CNN and a Brevitas BNN built by factories of a test module
(``[[models.own]]`` tables) and the same two given as modules through :func:`run_study`. The foreign
BNN's surrogate is recorded in models.json and verdicts.json, its binsight-surrogate variants are
explained through the Brevitas adapter, a BNN whose sign binsight cannot switch gets no variants and its
robustness rows say they do not apply, and the given modules are left as they were."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import save_file

from binsight.data import load_dataset
from binsight.models.factory import ModelSpec
from binsight.study.config import ConfigError, config_from_dict, load_config, tomllib
from binsight.study.runner import run_study
from binsight.study.verdicts import StudyVerdicts

pytestmark = pytest.mark.slow

TESTS = Path(__file__).resolve().parents[1]  # tests/: own_models.py
MEAN, STD = [0.2860], [0.3530]

CHEAP = """
[data]
n_images = 4
[models]
test_subset = 256
[methods]
run = ["gradient", "gradcam"]
[measures]
faithfulness = false
sanity = false
baselines = false
chance_methods = []
[verdicts]
n_resamples = 50
robustness_surrogates = ["ste", "approx"]
[run]
device = "cpu"
chunk_size = 2
progress = false
"""

OWN = """
[[models.own]]
factory = "own_models:build_fp"
weights = "fp.safetensors"
normalize = "inside"
name = "my-fp"
group = 0

[[models.own]]
factory = "own_models:build_bnn"
kwargs = {width = 8}
weights = "bnn.pt"
precision = "bnn"
mean = [0.2860]
std = [0.3530]
gradcam_layer = "bn3"
name = "my-bnn"
group = 0
"""


def train_briefly(model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, normalise: bool) -> None:
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(10):
        idx = torch.randint(0, len(images), (32,), generator=gen)
        x = (images[idx] - MEAN[0]) / STD[0] if normalise else images[idx]
        opt.zero_grad()
        F.cross_entropy(model(x), labels[idx]).backward()
        opt.step()
    model.eval()


@pytest.fixture(scope="module")
def own_folder(tmp_path_factory):
    """A folder with the test module's models, briefly trained, saved (safetensors and a state_dict
    file), and a configuration naming them by factory with relative weights paths."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(TESTS))
        import own_models

    folder = tmp_path_factory.mktemp("own")
    (folder / "own_models.py").write_text((TESTS / "own_models.py").read_text())
    data = load_dataset("fashion-mnist", split="train").subset(128, seed=0)
    torch.manual_seed(0)
    fp, bnn = own_models.build_fp(), own_models.build_bnn(width=8)
    train_briefly(fp, data.images, data.labels, normalise=False)
    train_briefly(bnn, data.images, data.labels, normalise=True)
    save_file(fp.state_dict(), str(folder / "fp.safetensors"))
    torch.save(bnn.state_dict(), folder / "bnn.pt")
    (folder / "study.toml").write_text(CHEAP + OWN)
    return {"folder": folder, "fp": fp, "bnn": bnn, "module": own_models}


def read_table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_a_study_of_own_models_from_factories(own_folder, tmp_path):
    config = load_config(own_folder["folder"] / "study.toml")
    assert config.models.own_dir == str(own_folder["folder"].resolve())
    verdicts = run_study(config, tmp_path / "run")
    models = {m["name"]: m for m in json.loads((tmp_path / "run" / "models.json").read_text())}
    assert list(models) == ["my-fp", "my-bnn", "my-bnn+ste", "my-bnn+approx"]
    assert models["my-bnn"]["surrogate"] == "brevitas-ste" and models["my-bnn"]["switchable"]
    assert models["my-fp"]["surrogate"] == "" and models["my-bnn"]["kind"] == "own"
    assert models["my-bnn+approx"]["surrogate"] == "approx" and models["my-bnn+approx"]["base"] == "my-bnn"
    assert models["my-bnn"]["gradcam_layer"] == "model.bn3" and models["my-bnn"]["normalisation"]["mean"] == MEAN
    assert (tmp_path / "run" / "models" / "my-bnn.safetensors").is_file()
    recorded = StudyVerdicts.from_json((tmp_path / "run" / "verdicts.json").read_text())
    assert len(recorded.verdicts) == len(verdicts.verdicts) == 4
    table = read_table(tmp_path / "run" / "measurements.csv")
    pairs = {(r["model"], r["model_b"], r["method"]) for r in table if r["measure"] == "spearman"}
    assert ("my-fp", "my-bnn", "gradient") in pairs and ("my-fp", "my-bnn+approx", "gradcam") in pairs
    # the approx variant's maps differ from the model's own (Brevitas clipped STE) maps: the switch took effect
    own_maps = [r for r in table if r["measure"] == "total_variation" and r["method"] == "gradient"]
    by_model = {m: sorted(float(r["value"]) for r in own_maps if r["model"] == m) for m in ("my-bnn", "my-bnn+approx")}
    assert by_model["my-bnn"] != by_model["my-bnn+approx"]


def test_verdicts_record_the_foreign_surrogate_and_rows_that_do_not_apply(own_folder, tmp_path):
    """Through the Python API: modules given as they are; a BNN with its own autograd sign gets no
    variants, its surrogate is "own" in models.json and verdicts.json, and the robustness rows say so."""
    fp, bnn, module = own_folder["fp"], own_folder["bnn"], own_folder["module"]
    torch.manual_seed(1)
    custom = module.build_custom_sign()
    fp.train()  # the caller's mode, restored after the study
    before = {name: {k: v.clone() for k, v in m.state_dict().items()} for name, m in (("fp", fp), ("bnn", bnn))}
    # one FP model: no FP-vs-FP baseline, so the similarity verdicts are not measured; the noise verdict is
    noisy = CHEAP.replace('run = ["gradient", "gradcam"]', 'run = ["gradient", "gradcam", "smoothgrad"]\n'
                          '[methods.smoothgrad]\nn_samples = 4')
    config = config_from_dict(tomllib.loads(noisy))
    models = [(fp, ModelSpec(normalize="inside", name="fp-mine", group="0")),
              (bnn, ModelSpec(precision="bnn", mean=tuple(MEAN), std=tuple(STD), gradcam_layer="bn3", name="bnn-brev",
                              group="0")),
              (custom, ModelSpec(precision="bnn", normalize="inside", gradcam_layer="conv2", name="bnn-own",
                                 group="1"))]
    result = run_study(config, tmp_path / "run", models=models)
    listed = {m["name"]: m["surrogate"] for m in json.loads((tmp_path / "run" / "models.json").read_text())}
    assert listed == {"fp-mine": "", "bnn-brev": "brevitas-ste", "bnn-own": "own", "bnn-brev+ste": "ste",
                      "bnn-brev+approx": "approx"}
    text = (tmp_path / "run" / "verdicts.json").read_text()
    assert StudyVerdicts.from_json(text).verdicts and text == result.to_json()  # the typed verdicts returned
    applied = [r for v in result.verdicts for r in v.robustness
               if r.setting == "BNNs explained with another surrogate"]
    measured = [v for v in result.verdicts if v.status.value != "not measured"]
    assert len(applied) == len(measured) >= 1
    assert all("does not apply to bnn-own" in r.reading and r.status.value == "not measured" for r in applied)
    assert fp.training and not bnn.training  # modes as the caller left them
    for name, m in (("fp", fp), ("bnn", bnn)):
        after = m.state_dict()
        assert all(torch.equal(after[k], v) for k, v in before[name].items()), name
    fp.eval()


def test_a_resumed_run_must_be_given_the_same_own_models(own_folder, tmp_path):
    config = load_config(own_folder["folder"] / "study.toml")
    run_study(config, tmp_path / "run")
    mtime = (tmp_path / "run" / "measurements.csv").stat().st_mtime_ns
    run_study(config, tmp_path / "run")  # continued: every unit done, nothing recomputed
    units = sorted((tmp_path / "run" / "units").rglob("*.csv"))
    assert units and all(p.stat().st_mtime_ns <= mtime for p in units)
    other = ModelSpec(normalize="inside", name="other", group="0")
    with pytest.raises(Exception, match="are not those this run started with"):
        run_study(config, tmp_path / "run", models=[(own_folder["fp"], other)])


@pytest.mark.parametrize("table, message", [
    ({"factory": "own_models:build_fp", "normalise": "inside"}, r"models.own\[0\]: unknown key 'normalise'"),
    ({"factory": "own_models:build_fp"}, r"models.own\[0\]: model 'build_fp' declares no input normalisation"),
    ({"normalize": "inside"}, r"models.own\[0\]: model 'model' has no factory"),
])
def test_bad_own_tables_are_refused_with_the_key_named(table, message):
    raw = tomllib.loads(CHEAP)
    raw["models"] = {"own": [table]}
    with pytest.raises(ConfigError, match=message):
        config_from_dict(raw)
