"""Cheap model preservation, devices, surrogates of foreign BNNs, and the opt-in fast paths (on the CPU:
their fallbacks), each leaving the model untouched."""

from __future__ import annotations

import warnings

import pytest
import torch
from torch import nn

from binsight import _utils
from binsight._utils import BinsightWarning, preserved_model, resolve_device
from binsight.errors import BinsightError
from binsight.explain import ExplainerError
from binsight.explain import fast as fastpath
from binsight.explain.gradcam import GradCAM
from binsight.explain.gradient import Gradient
from binsight.explain.neuromask import NeuroMask
from binsight.explain.smoothgrad import SmoothGrad
from binsight.models import build_model
from binsight.nn.foreign import OWN

from support import TinyNet, assert_same_state, model_state


# -- preserved_model: copies kept per model, made again only when a tensor changed -------------------
def test_values_are_copied_once_per_model_state():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU())
    with preserved_model(model):
        pass
    first = dict(_utils._SAVED[model])
    with preserved_model(model):
        pass
    assert all(_utils._SAVED[model][k] is v for k, v in first.items())  # nothing copied again
    with torch.no_grad():
        model[0].weight.mul_(2)  # a training step between calls
    with preserved_model(model):
        pass
    assert _utils._SAVED[model][id(model[0].weight)] is not first[id(model[0].weight)]
    assert _utils._SAVED[model][id(model[0].bias)] is first[id(model[0].bias)]


@pytest.mark.parametrize("fail", [False, True])
def test_write_inside_restores_the_values_of_this_call_not_an_older_copy(fail):
    model = nn.Sequential(nn.Linear(3, 3))
    with preserved_model(model):
        pass
    model.load_state_dict({"0.weight": torch.ones(3, 3), "0.bias": torch.zeros(3)})  # after the first copy
    try:
        with preserved_model(model):
            with torch.no_grad():
                model[0].weight.add_(5)
            if fail:
                raise RuntimeError("inside")
    except RuntimeError:
        assert fail
    assert torch.equal(model[0].weight, torch.ones(3, 3))


def test_replaced_added_and_removed_tensors_are_put_back():
    model = nn.Sequential(nn.Linear(3, 3), nn.BatchNorm1d(3))
    weight, mean = model[0].weight, model[1].running_mean
    before = model_state(model)
    with preserved_model(model):
        model[0].weight = nn.Parameter(torch.zeros(3, 3))
        model[0].register_parameter("extra", nn.Parameter(torch.ones(1)))
        del model[1].running_mean
        model[1].register_buffer("running_mean", torch.full((3,), 7.0))
        model.add_module("new", nn.ReLU())
    assert model[0].weight is weight and model[1].running_mean is mean
    assert "extra" not in model[0]._parameters and len(model) == 2
    assert_same_state(before, model_state(model))


# -- devices ---------------------------------------------------------------------------------------
def test_resolve_device(monkeypatch):
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("auto") == torch.device("cpu")
    with pytest.raises(BinsightError, match="no CUDA GPU.*use 'auto' or 'cpu'"):
        resolve_device("cuda:0")
    with pytest.raises(BinsightError, match="unknown device 'gpu0'; use one of auto, cpu, cuda, cuda:N, mps"):
        resolve_device("gpu0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(BinsightError, match="there are 2 CUDA GPU.*cuda:0 .. cuda:1"):
        resolve_device("cuda:2")


def test_resolve_device_mps_missing(monkeypatch):
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    with pytest.raises(BinsightError, match="MPS .* not available"):
        resolve_device("mps")


# -- surrogates: binsight, foreign and full precision ----------------------------------------------
class _OwnSign(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x):
        return torch.where(x >= 0, 1.0, -1.0)

    @staticmethod
    def backward(ctx, grad):
        return grad


class CustomSignNet(TinyNet):
    def forward(self, x):
        return self.head(_OwnSign.apply(self.features(x)))


def test_surrogate_recorded_for_binsight_custom_and_fp_models():
    x = torch.rand(2, 1, 28, 28)
    bnn = build_model("small-cnn", "bnn")
    assert Gradient(bnn, surrogate="approx").explain(x, 0).surrogate == "approx"
    assert Gradient(bnn).explain(x, 0).surrogate == "ste"
    custom = CustomSignNet()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert Gradient(custom, surrogate="approx").explain(torch.rand(2, 3, 12, 12), 0).surrogate == OWN
    fp, xf = TinyNet(), torch.rand(2, 3, 12, 12)
    with pytest.warns(BinsightWarning, match="surrogate 'ste' does not apply.*full precision"):
        exp = Gradient(fp, surrogate="ste").explain(xf, 0)
    assert exp.surrogate is None
    assert torch.equal(exp.maps, Gradient(fp).attribute(xf, 0))


def test_brevitas_surrogate_switched_and_recorded():
    from own_models import build_bnn

    torch.manual_seed(0)
    model = build_bnn().eval()
    x = torch.rand(2, 1, 28, 28)
    before = model_state(model)
    own = Gradient(model).explain(x, 0)
    ste = Gradient(model, surrogate="ste").explain(x, 0)
    ident = Gradient(model, surrogate="identity").explain(x, 0)
    assert (own.surrogate, ste.surrogate, ident.surrogate) == ("brevitas-ste", "ste", "identity")
    assert torch.allclose(own.maps, ste.maps, atol=1e-6)  # "ste" reproduces Brevitas's clipped quantiser
    assert not torch.allclose(own.maps, ident.maps)
    assert_same_state(before, model_state(model))


# -- fast paths ------------------------------------------------------------------------------------
def _explainers(fast: str | bool, precision: str = "fp32"):
    return {
        "smoothgrad": lambda m: SmoothGrad(m, n_samples=3, batch_size=4, fast=fast, precision=precision),
        "neuromask": lambda m: NeuroMask(m, iterations=5, batch_size=2, fast=fast, precision=precision),
    }


@pytest.mark.parametrize("name", ["smoothgrad", "neuromask"])
def test_graph_falls_back_to_eager_on_cpu_with_equal_maps(name):
    torch.manual_seed(5)
    model = build_model("small-cnn", "bnn").train()
    x = torch.rand(3, 1, 28, 28)
    before = model_state(model)
    eager = _explainers(False)[name](model).explain(x, [0, 3, 9])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no fallback warning on the CPU
        warnings.filterwarnings("ignore", "NeuroMask masks are still near", BinsightWarning)  # 5 iterations
        warnings.filterwarnings("ignore", "SmoothGrad maps are not converged", BinsightWarning)  # 3 samples
        fast = _explainers("graph")[name](model).explain(x, [0, 3, 9])
    assert torch.equal(eager.maps, fast.maps)
    assert fast.params["fast"] == "graph"
    assert_same_state(before, model_state(model))
    with pytest.raises(ExplainerError, match="out of range"):
        _explainers("graph")[name](model).explain(x, [0, 3, 10])
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("name", ["smoothgrad", "neuromask"])
def test_compile_that_fails_runs_eager_with_a_warning(name, monkeypatch):
    def no_compiler(model, *args, **kwargs):
        raise RuntimeError("no C++ compiler")

    monkeypatch.setattr(torch, "compile", no_compiler)
    torch.manual_seed(6)
    model = TinyNet()
    x = torch.rand(3, 3, 12, 12)
    before = model_state(model)
    eager = _explainers(False)[name](model).attribute(x, 1)
    with pytest.warns(BinsightWarning, match="torch.compile failed.*no C\\+\\+ compiler.*running eager"):
        compiled = _explainers("compile")[name](model).attribute(x, 1)
    assert torch.equal(eager, compiled)
    assert_same_state(before, model_state(model))


def test_compile_path_calls_the_compiled_model(monkeypatch):
    calls = []

    def fake_compile(model, *args, **kwargs):  # stands in for torch.compile: the same function, counted
        def run(x):
            calls.append(x.shape[0])
            return model(x)
        return run

    monkeypatch.setattr(torch, "compile", fake_compile)
    model = TinyNet()
    x = torch.rand(2, 3, 12, 12)
    assert torch.equal(NeuroMask(model, iterations=4, fast="compile").attribute(x, 0),
                       NeuroMask(model, iterations=4).attribute(x, 0))
    assert calls == [2, 2, 2, 2]  # every step went through the compiled model; the final pass runs eager


@pytest.mark.parametrize("name", ["smoothgrad", "neuromask"])
@pytest.mark.parametrize("fast", [False, "graph"])
def test_an_explainer_is_freed_when_dropped_without_waiting_for_the_cycle_collector(name, fast):
    """No reference cycle explainer -> StepRunner -> bound step -> explainer: dropping an explainer frees it
    (and, on CUDA, its captured graphs' memory) at once, not at Python's next cyclic collection."""
    import gc
    import weakref

    model = TinyNet()
    explainer = _explainers(fast)[name](model)
    explainer.attribute(torch.rand(2, 3, 12, 12), 0)
    gone = weakref.ref(explainer)
    gc.disable()
    try:
        del explainer
        assert gone() is None
    finally:
        gc.enable()


def test_bf16_on_cpu_is_ignored_with_a_warning():
    model = TinyNet()
    x = torch.rand(2, 3, 12, 12)
    for name, make in _explainers(False, "bf16").items():
        with pytest.warns(BinsightWarning, match="bf16' applies on CUDA only"):
            maps = make(model).attribute(x, 0)
        assert torch.equal(maps, _explainers(False)[name](model).attribute(x, 0))


def test_bad_fast_and_precision():
    model = TinyNet()
    with pytest.raises(ExplainerError, match="fast must be False, 'graph' or 'compile', got 'cuda'"):
        SmoothGrad(model, fast="cuda")
    with pytest.raises(ExplainerError, match="precision must be one of fp32, bf16, got 'fp16'"):
        NeuroMask(model, precision="fp16")
    assert fastpath.check_fast(None) is False


def test_model_failing_inside_a_fast_step_is_restored():
    class Fails(TinyNet):
        def forward(self, x):
            super().forward(x)
            raise RuntimeError("boom")

    model = Fails().train()
    before = model_state(model)
    for make in _explainers("graph").values():
        with pytest.raises(ExplainerError, match="boom"):
            make(model).attribute(torch.rand(2, 3, 12, 12), 0)
        assert_same_state(before, model_state(model))


def test_gradcam_and_gradient_unchanged_by_cheaper_preservation():
    torch.manual_seed(7)
    model = build_model("small-cnn", "fp")
    x = torch.rand(4, 1, 28, 28)
    first = (Gradient(model).attribute(x, 2), GradCAM(model).attribute(x, 2))
    with torch.no_grad():
        model.net.classifier.weight.mul_(2)  # changed between calls: the next call must see it
    second = (Gradient(model).attribute(x, 2), GradCAM(model).attribute(x, 2))
    assert not torch.equal(first[0], second[0])
    with torch.no_grad():
        model.net.classifier.weight.mul_(0.5)
    assert all(torch.equal(a, b) for a, b in zip(first, (Gradient(model).attribute(x, 2), GradCAM(model).attribute(x, 2))))
