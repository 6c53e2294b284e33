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
from safetensors.torch import load_file, save_file

from binsight._utils import BinsightWarning
from binsight.data import load_dataset
from binsight.models.factory import ModelSpec
from binsight.study.config import ConfigError, config_from_dict, load_config, tomllib
from binsight.study.errors import RunFolderError
from binsight.study.plan import make_plan
from binsight.study.runner import open_run, run_stages, run_study
from binsight.study.stages import ImagesStage, ModelsStage
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
    assert len(recorded.verdicts) == len(verdicts.verdicts) == 5
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


# -- a stopped run continued: the weights it recorded, never the factory's new ones -----------------------

DRIFTING = """
import torch
from torch import nn


def build():
    \"\"\"A tiny FP CNN, initialised from torch's global random state: other weights at every call.\"\"\"
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(4), nn.Flatten(),
                         nn.Linear(64, 10))
"""

DRIFTING_TABLE = """
[[models.own]]
factory = "drifting:build"
normalize = "inside"
gradcam_layer = "0"
name = "drift"
"""


def stopped_after_models(config, out, models=()):
    """A study stopped after its models stage (the stages of an invocation up to it): the base models'
    weights, by name."""
    with open_run(make_plan(config, models=models), out) as ctx:
        run_stages(ctx, stages=(ImagesStage(), ModelsStage()))
        return {m.name: {k: v.clone() for k, v in m.module.model.state_dict().items()} for m in ctx.base}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.fixture()
def drifting(tmp_path):
    """A configuration whose own model's factory draws new weights at every call (no seed, no weights file)."""
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "drifting.py").write_text(DRIFTING)
    (folder / "study.toml").write_text(CHEAP.replace('run = ["gradient", "gradcam"]', 'run = ["gradient"]')
                                       + DRIFTING_TABLE)
    return load_config(folder / "study.toml")


def test_a_continued_run_uses_the_weights_it_recorded_not_the_factorys_new_ones(drifting, tmp_path):
    first = stopped_after_models(drifting, tmp_path / "run")["drift"]
    recorded = load_file(str(tmp_path / "run" / "models" / "drift.safetensors"))
    assert same(first, recorded)
    again = stopped_after_models(drifting, tmp_path / "run")["drift"]  # the factory now draws other weights
    assert same(again, first)
    run_study(drifting, tmp_path / "run")  # continued to the end on the recorded weights
    assert same(load_file(str(tmp_path / "run" / "models" / "drift.safetensors")), recorded)


def test_a_weights_file_rewritten_at_the_same_path_is_not_mixed_in(own_folder, tmp_path):
    folder = tmp_path / "project"
    folder.mkdir()
    (folder / "own_models.py").write_text((TESTS / "own_models.py").read_text())
    torch.manual_seed(5)
    save_file(own_folder["module"].build_fp().state_dict(), str(folder / "fp.safetensors"))
    table = OWN.split("[[models.own]]")[1]
    (folder / "study.toml").write_text(CHEAP + "[[models.own]]" + table)
    config = load_config(folder / "study.toml")
    first = stopped_after_models(config, tmp_path / "run")["my-fp"]
    torch.manual_seed(6)  # the model retrained and saved at the same path
    save_file(own_folder["module"].build_fp().state_dict(), str(folder / "fp.safetensors"))
    assert not same(load_file(str(folder / "fp.safetensors")), first)
    assert same(stopped_after_models(config, tmp_path / "run")["my-fp"], first)


def test_a_changed_copy_of_the_recorded_weights_is_refused_by_its_checksum(drifting, tmp_path):
    stopped_after_models(drifting, tmp_path / "run")
    copy = tmp_path / "run" / "models" / "drift.safetensors"
    record = next(m for m in json.loads((tmp_path / "run" / "models.json").read_text()) if m["name"] == "drift")
    assert len(record["weights_sha256"]) == 64
    state = load_file(str(copy))
    save_file({k: v + 1 for k, v in state.items()}, str(copy))  # valid weights, not the recorded ones
    with pytest.raises(RunFolderError, match=r"the weights this run recorded for own model 'drift' "
                                             r"\(models/drift.safetensors\) are changed \(sha256 .*use a new --out"):
        stopped_after_models(drifting, tmp_path / "run")
    copy.unlink()
    with pytest.raises(RunFolderError, match=r"are missing"):
        stopped_after_models(drifting, tmp_path / "run")


def test_a_given_module_with_other_weights_is_refused_on_resume_and_left_unchanged(tmp_path):
    config = config_from_dict(tomllib.loads(CHEAP))
    spec = ModelSpec(normalize="inside", gradcam_layer="features.3", name="given", group="0")
    torch.manual_seed(0)
    module = own_models_module().build_fp()
    stopped_after_models(config, tmp_path / "run", models=[(module, spec)])
    assert same(stopped_after_models(config, tmp_path / "run", models=[(module, spec)])["given"],
                module.state_dict())
    torch.manual_seed(1)
    other = own_models_module().build_fp()
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(RunFolderError, match=r"the module given as own model 'given' holds other weights than "
                                             r"this run started with"):
        stopped_after_models(config, tmp_path / "run", models=[(other, spec)])
    assert same(other.state_dict(), before)


def own_models_module():
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(TESTS))
        import own_models
    return own_models


# -- a BNN whose backward pass carries no gradient is flagged ---------------------------------------------


class TorchSignBNN(torch.nn.Module):
    """Conv -> BN -> torch.sign -> conv -> BN -> torch.sign -> mean -> linear: no gradient reaches the input."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.BatchNorm2d(4)
        self.conv2, self.bn2 = torch.nn.Conv2d(4, 8, 3, padding=1), torch.nn.BatchNorm2d(8)
        self.head = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = torch.sign(self.bn1(self.conv1(x)))
        x = torch.sign(self.bn2(self.conv2(x)))
        return self.head(x.mean((2, 3)))


def test_a_bnn_without_gradient_is_recorded_and_named_in_a_warning(tmp_path):
    config = config_from_dict(tomllib.loads(CHEAP.replace('run = ["gradient", "gradcam"]', 'run = ["gradient"]')))
    torch.manual_seed(0)
    models = [(own_models_module().build_fp(), ModelSpec(normalize="inside", name="fp-mine", group="0")),
              (TorchSignBNN(), ModelSpec(precision="bnn", normalize="inside", gradcam_layer="conv2", name="sign-bnn",
                                         group="0"))]
    for _ in range(2):  # the first invocation and a continued one
        with pytest.warns(BinsightWarning) as caught:
            run_study(config, tmp_path / "run", models=models)
        flagged = [str(w.message) for w in caught if "its input-gradient maps" in str(w.message)]
        assert len(flagged) == 1 and flagged[0].startswith("model 'sign-bnn' carries no gradient to its input")
        assert "are empty, all zero" in flagged[0] and "straight-through sign" in flagged[0]
    listed = {m["name"]: m for m in json.loads((tmp_path / "run" / "models.json").read_text())}
    assert listed["sign-bnn"]["no_gradient"] is True and "no_gradient" not in listed["fp-mine"]
    table = read_table(tmp_path / "run" / "measurements.csv")
    assert any(r["model"] == "sign-bnn" and r["method"] == "gradient" for r in table)


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
