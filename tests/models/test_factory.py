"""Models by factory: a user's own model built, loaded, checked and wrapped in one call; every failure a
one-line error naming what to fix; pickles refused unread."""

from __future__ import annotations

import pickle
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

from binsight.errors import BinsightError
from binsight.explain import get_explainer
from binsight.models import ModelError
from binsight.models.factory import (
    SPEC_KEYS,
    FactoryError,
    ModelSpec,
    Normalized,
    declared_gradcam_layer,
    load_model,
    model_from_module,
)

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

TESTS = Path(__file__).resolve().parents[1]  # tests/: own_models.py
SIZE = (1, 28, 28)


@pytest.fixture(autouse=True)
def own_models_importable(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))


def fp_spec(**changes) -> ModelSpec:
    values = dict(factory="own_models:build_fp", normalize="inside", input_size=SIZE, num_classes=10)
    return ModelSpec(**{**values, **changes})


def error_of(spec: ModelSpec, **kwargs) -> str:
    """The message of the FactoryError that loading ``spec`` raises, checked to be one line."""
    with pytest.raises(FactoryError) as info:
        load_model(spec, **kwargs)
    message = str(info.value)
    assert "\n" not in message and isinstance(info.value, ModelError) and isinstance(info.value, BinsightError)
    return message


def reference_fp(seed: int = 0) -> nn.Module:
    import own_models

    torch.manual_seed(seed)
    return own_models.build_fp().eval()


# -- building and loading ------------------------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_weights_load_from_safetensors_and_state_dict(tmp_path, suffix):
    source = reference_fp(seed=1)
    path = tmp_path / f"w{suffix}"
    if suffix == ".safetensors":
        save_file(source.state_dict(), str(path))
    else:
        torch.save(source.state_dict(), path)
    model = load_model(fp_spec(weights=str(path)))
    x = torch.rand(3, *SIZE)
    assert isinstance(model, Normalized) and not model.training and not model.model.training
    with torch.no_grad():
        assert torch.equal(model(x), source(x))
    assert list(model.state_dict()) == [f"model.{k}" for k in source.state_dict()]  # no wrapper buffers


def test_declared_normalisation_is_applied_and_inside_passes_pixels():
    import own_models

    torch.manual_seed(0)
    bnn = own_models.build_bnn(width=4)
    spec = ModelSpec(bnn.__class__, kwargs={"width": 4}, precision="bnn", mean=(0.5,), std=(0.25,),
                     gradcam_layer="bn3", input_size=SIZE)
    wrapped = model_from_module(bnn, spec)
    x = torch.rand(2, *SIZE)
    with torch.no_grad():
        assert torch.allclose(wrapped(x), bnn((x - 0.5) / 0.25))
    assert wrapped.gradcam_layer == "model.bn3" and declared_gradcam_layer(wrapped) == "model.bn3"
    assert wrapped.model is bnn and not bnn.training  # the caller's module, in eval mode
    inside = load_model(fp_spec())
    with torch.no_grad():
        assert torch.equal(inside(x), inside.model(x))
    assert inside.gradcam_layer == "model.features.3"  # the model's own attribute, prefixed
    assert "normalize='inside'" in repr(inside) and "mean=[0.5], std=[0.25]" in repr(wrapped)


def test_callable_factory_and_default_name():
    import own_models

    model = load_model(ModelSpec(own_models.build_fp, normalize="inside", input_size=SIZE))
    assert model.spec.display_name() == "build_fp"
    assert fp_spec(name="mine").display_name() == "mine"
    assert ModelSpec(lambda: None).display_name() == "lambda" and ModelSpec("m:_").display_name() == "model"


def test_search_path_imports_from_a_folder_and_leaves_sys_path(tmp_path):
    (tmp_path / "lab_models_x1.py").write_text(
        "from torch import nn\n"
        "def make(classes=4):\n"
        "    return nn.Sequential(nn.Conv2d(3, 2, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2, classes))\n"
    )
    before = list(sys.path)
    spec = ModelSpec("lab_models_x1:make", kwargs={"classes": 4}, normalize="inside", input_size=(3, 8, 8),
                     gradcam_layer="0")
    model = load_model(spec, search_path=[tmp_path])
    assert sys.path == before and model(torch.rand(1, 3, 8, 8)).shape == (1, 4)


def test_specs_from_toml_tables(tmp_path):
    text = """
[[models.own]]
factory = "own_models:build_fp"
kwargs = { width = 8 }
weights = "weights/fp-0.safetensors"
precision = "fp"
name = "my-fp"
group = "0"
normalize = "inside"
input_size = [1, 28, 28]

[[models.own]]
factory = "own_models:build_bnn"
weights = "/abs/bnn-0.pt"
precision = "bnn"
name = "my-bnn"
group = "0"
gradcam_layer = "bn3"
mean = [0.286]
std = [0.353]
input_size = [1, 28, 28]
"""
    tables = tomllib.loads(text)["models"]["own"]
    fp, bnn = (ModelSpec.from_dict(t, base_dir=tmp_path) for t in tables)
    assert fp.weights == str(tmp_path / "weights" / "fp-0.safetensors") and fp.kwargs == {"width": 8}
    assert bnn.weights == "/abs/bnn-0.pt" and bnn.mean == (0.286,) and bnn.input_size == (1, 28, 28)
    assert set(tables[0]) | set(tables[1]) <= set(SPEC_KEYS)
    assert ModelSpec.from_dict({"factory": "m:f", "group": 2}).group == "2"
    unknown = r"unknown key 'gradcam' in a model table \(did you mean 'gradcam_layer'\?\)"
    with pytest.raises(FactoryError, match=unknown):
        ModelSpec.from_dict({**tables[1], "gradcam": "bn3"})


# -- security ------------------------------------------------------------------------------------------


class Payload:
    """Unpickling this object creates the file ``marker``: a stand-in for any code a pickle may run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


@pytest.mark.filterwarnings("ignore:Detected pickle protocol")
def test_pickled_object_in_a_state_dict_file_is_refused_not_run(tmp_path):
    live, marker = tmp_path / "live", tmp_path / "marker"
    pickle.loads(pickle.dumps(Payload(live)))  # the payload works when unpickled
    assert live.exists()
    path = tmp_path / "evil.pt"
    torch.save({"features.0.weight": torch.zeros(1), "extra": Payload(marker)}, path)
    message = error_of(fp_spec(weights=str(path)))
    assert "holds pickled objects other than tensors" in message and "refused unread" in message
    assert "(it asks for getattr)" in message and "safetensors" in message  # the global the pickle wanted
    raw = tmp_path / "raw.pth"  # a bare pickle, not written by torch.save
    raw.write_bytes(pickle.dumps({"features.0.weight": Payload(marker)}))
    assert "is not a state_dict file torch can read safely (Unsupported operand" in error_of(fp_spec(weights=str(raw)))
    assert not marker.exists()


# -- errors, each naming what to fix -------------------------------------------------------------------


def test_factory_import_errors():
    assert "cannot import module 'own_modelz' (no module named 'own_modelz'); put the folder that holds it on " \
           "PYTHONPATH" in error_of(fp_spec(factory="own_modelz:build_fp"))
    message = error_of(fp_spec(factory="own_models:build_fpp"))
    assert "own_models has no attribute 'build_fpp' (did you mean build_fp" in message
    assert 'must look like "package.module:function"' in error_of(fp_spec(factory="own_models.build_fp"))
    assert "is a float, not a function or class" in error_of(fp_spec(factory="own_models:FASHION_MEAN"))
    assert "has no factory" in error_of(fp_spec(factory=""))


def test_errors_inside_the_users_module(tmp_path):
    (tmp_path / "lab_needs_x2.py").write_text("import not_installed_lib_x2\n")
    (tmp_path / "lab_raises_x2.py").write_text("raise RuntimeError('config file missing')\n")
    message = error_of(fp_spec(factory="lab_needs_x2:make"), search_path=[tmp_path])
    assert "importing 'lab_needs_x2' failed: it needs module 'not_installed_lib_x2'; install it" in message
    message = error_of(fp_spec(factory="lab_raises_x2:make"), search_path=[tmp_path])
    assert "importing 'lab_raises_x2' failed: RuntimeError: config file missing" in message


def test_factory_call_errors():
    message = error_of(fp_spec(kwargs={"widht": 4}))
    assert "factory 'own_models:build_fp' cannot take kwargs {'widht': 4}" in message
    assert "unexpected keyword argument 'widht'" in message and "its signature is build_fp(width" in message

    def broken(width=2):
        raise RuntimeError("CUDA out of memory\nsecond line")

    assert "factory test_factory_call_errors.<locals>.broken failed with kwargs {}: RuntimeError: CUDA out of memory" \
        in error_of(fp_spec(factory=broken))
    assert "returned a dict, not a torch.nn.Module" in error_of(fp_spec(factory=lambda: {}))


def test_weights_errors(tmp_path):
    assert "not found" in error_of(fp_spec(weights=str(tmp_path / "none.pt")))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a torch file")
    assert "is not a state_dict file torch can read" in error_of(fp_spec(weights=str(garbage)))
    bad_st = tmp_path / "bad.safetensors"
    bad_st.write_bytes(b"\x00" * 20)
    assert "is not a readable safetensors file" in error_of(fp_spec(weights=str(bad_st)))
    wrapped = tmp_path / "wrapped.pt"
    torch.save({"state_dict": reference_fp().state_dict(), "epoch": 3}, wrapped)
    assert "entries state_dict, epoch are not tensors; save model.state_dict() itself" in error_of(
        fp_spec(weights=str(wrapped)))


def test_weights_that_do_not_fit_name_keys(tmp_path):
    import own_models

    state = own_models.build_fp(width=4).state_dict()  # other shapes
    state.pop("head.bias")
    for k in "abcd":
        state[f"extra.{k}"] = torch.zeros(1)
    path = tmp_path / "other.safetensors"
    save_file(state, str(path))
    message = error_of(fp_spec(weights=str(path), name="mine"))
    assert f"weights file {path} does not fit model 'mine'" in message
    assert "missing keys head.bias;" in message
    assert "unexpected keys extra.a, extra.b, extra.c (and 1 more)" in message
    assert "shape mismatch features.0.weight (4, 1, 3, 3) in the file, (8, 1, 3, 3) in the model" in message
    assert "build the model with the kwargs it was saved with" in message
    parallel = {f"module.{k}": v for k, v in reference_fp().state_dict().items()}
    save_file(parallel, str(path))
    assert "keys start with 'module.', as saved from DataParallel: strip that prefix" in error_of(
        fp_spec(weights=str(path)))


def test_output_and_input_size_errors():
    assert "model 'build_bad_output' returned (2, 10, 1) for a batch of shape (2, 1, 28, 28); a classifier must " \
           "return logits (N, classes)" in error_of(fp_spec(factory="own_models:build_bad_output"))
    assert "returned 10 logits per image, the data have 7 classes" in error_of(fp_spec(num_classes=7))
    message = error_of(fp_spec(input_size=(1, 32, 32)))
    assert "model 'build_fp' fails on a batch of shape (2, 1, 32, 32) (RuntimeError: mat1 and mat2" in message
    assert "set input_size [C, H, W] to the image size the model takes" in message


def test_gradcam_layer_errors():
    assert "has no layer 'feature.3' for gradcam_layer; close names: features.3" in error_of(
        fp_spec(gradcam_layer="feature.3"))
    assert "gradcam_layer 'head' outputs (2, 10); GradCAM needs feature maps (N, K, h, w)" in error_of(
        fp_spec(gradcam_layer="head"))
    own = load_model(ModelSpec("own_models:build_custom_sign", precision="bnn", normalize="inside", input_size=SIZE))
    assert declared_gradcam_layer(own) is None
    with pytest.raises(FactoryError, match="model 'build_custom_sign' declares no GradCAM layer; set gradcam_layer"):
        get_explainer("gradcam", own)  # never a guessed layer
    assert get_explainer("gradient", own).attribute(torch.rand(1, *SIZE)).shape == (1, 1, 28, 28)


def test_spec_errors():
    assert 'declares no input normalisation; give mean and std (one per channel) or normalize = "inside"' in error_of(
        fp_spec(normalize=""))
    assert 'declares both mean/std and normalize = "inside"; keep one' in error_of(fp_spec(mean=(0.5,), std=(0.2,)))
    assert "mean must be 1 finite numbers (one per channel of input_size), got (0.5, 0.5)" in error_of(
        fp_spec(normalize="", mean=(0.5, 0.5), std=(0.2,)))
    assert "std must be positive for every channel" in error_of(fp_spec(normalize="", mean=(0.5,), std=(0.0,)))
    assert 'normalize must be "inside"' in error_of(fp_spec(normalize="imagenet"))
    assert "needs input_size = [C, H, W]" in error_of(fp_spec(input_size=None))
    assert "input_size must be three positive integers" in error_of(fp_spec(input_size=(28, 28)))
    assert "precision must be one of fp, bnn, got 'binary'" in error_of(fp_spec(precision="binary"))
    assert "model name 'fp+ste' is not allowed" in error_of(fp_spec(name="fp+ste"))
    assert "group must be a non-empty string" in error_of(fp_spec(group=""))
    assert "gradcam_layer must be a string, got int 3" in error_of(fp_spec(gradcam_layer=3))
    assert "name must be a string, got int 7" in error_of(fp_spec(name=7))
    assert "num_classes must be an integer >= 2" in error_of(fp_spec(num_classes=1))
    assert "num_classes must be an integer >= 2 and at most 1,048,576" in error_of(fp_spec(num_classes=10**9))


@pytest.mark.parametrize("size, words", [
    ((100_000_000, 28, 28), "input_size has 100000000 channels, more than binsight takes (4,096)"),
    ((3, 100_000, 100_000), "input_size of 100000x100000 = 10,000,000,000 pixels is more than binsight takes"),
])
def test_declared_sizes_are_bounded_before_the_factory_runs(size, words):
    called = []
    message = error_of(fp_spec(factory=lambda: called.append(1), input_size=size))
    assert words in message and not called
    with pytest.raises(FactoryError, match="is a str, not a torch.nn.Module"):
        model_from_module("model", fp_spec(factory=""))


def test_integer_logits_are_refused_when_the_model_is_loaded():
    message = error_of(fp_spec(factory=lambda: nn.Sequential(nn.Flatten(), nn.Linear(784, 10), Rounded())))
    assert "returned logits of dtype torch.int64; binsight needs floating-point logits" in message


class Rounded(nn.Module):
    def forward(self, x):
        return (100 * x).long()


def test_a_float64_model_is_explained_as_its_float32_copy():
    model = reference_fp()
    double = model_from_module(reference_fp().double(), fp_spec(factory=""))
    x = torch.rand(3, *SIZE, generator=torch.Generator().manual_seed(1))
    for method in ("gradient", "gradcam"):
        want = get_explainer(method, model).explain(x)
        got = get_explainer(method, double).explain(x)
        assert got.maps.dtype == torch.float32 and torch.equal(got.targets, want.targets)
        assert torch.allclose(got.maps, want.maps, rtol=1e-4, atol=1e-6)


# -- the same two through binsight explain --factory -------------------------------------------------

ODD_MODELS = '''
import torch
from torch import nn


def body():
    return nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(4, 10))


class Rounded(nn.Module):
    def __init__(self):
        super().__init__()
        self.net = body()

    def forward(self, x):
        return (100 * self.net(x)).long()


def build_rounded():
    return Rounded()


def build_double():
    torch.manual_seed(0)
    return body().double()
'''


def test_explain_factory_with_integer_or_float64_logits(tmp_path, monkeypatch, capsys):
    """binsight explain --factory: integer logits are a one-line error before any map; a float64 model is
    explained (its maps float32) like its float32 copy."""
    import numpy as np
    from PIL import Image

    from binsight.cli import main

    (tmp_path / "odd_models.py").write_text(ODD_MODELS)
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(tmp_path / "shoe.png")
    monkeypatch.chdir(tmp_path)
    common = ["shoe.png", "--normalize", "inside", "--input-size", "1,28,28", "--method", "gradient"]
    assert main(["explain", *common, "--factory", "odd_models:build_rounded", "--out", "rounded"]) == 2
    err = capsys.readouterr().err
    assert err == ("binsight explain: error: model 'build_rounded' returned logits of dtype torch.int64; binsight "
                   "needs floating-point logits (their gradient is what is explained): return the scores before any "
                   "rounding, argmax or cast\n")
    assert not (tmp_path / "rounded").exists()
    assert main(["explain", *common, "--method", "smoothgrad", "--param", "smoothgrad.n_samples=4", "--factory",
                 "odd_models:build_double", "--out", "double"]) == 0
    maps = {m: np.load(tmp_path / "double" / f"shoe.{m}.npy") for m in ("gradient", "smoothgrad")}
    assert all(v.dtype == np.float32 and v.shape == (28, 28) and np.isfinite(v).all() for v in maps.values())
    assert np.abs(maps["gradient"]).max() > 0
    sys.modules.pop("odd_models", None)
