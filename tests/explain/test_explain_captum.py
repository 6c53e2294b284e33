"""The Captum adapter: any ``captum:ClassName`` through binsight's API and registry."""

from __future__ import annotations

import pytest
import torch
from captum.attr import IntegratedGradients, Occlusion
from torch import nn

from binsight.explain import ExplainerError, get_explainer
from binsight.explain.captum_adapter import CaptumExplainer, captum_classes
from binsight.models import build_model

pytestmark = [
    pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients"),
    pytest.mark.filterwarnings("ignore:Setting forward, backward hooks and attributes on non-linear"),
]


class TinyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(2)
        self.fc = nn.Linear(16, 3)

    def forward(self, x):
        return self.fc(self.pool(torch.relu(self.conv(x))).flatten(1))


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyNet().eval(), torch.rand(3, 3, 8, 8)


def test_integrated_gradients_through_registry(tiny):
    model, x = tiny
    exp = get_explainer("captum:IntegratedGradients", model, n_steps=8, baselines=0.0).explain(x, [0, 1, 2])
    ref = IntegratedGradients(model).attribute(x, baselines=0.0, target=[0, 1, 2], n_steps=8)
    assert exp.method == "captum:IntegratedGradients"
    assert exp.params["n_steps"] == 8 and exp.params["class_name"] == "IntegratedGradients"
    assert exp.maps.shape == (3, 1, 8, 8)
    assert torch.allclose(exp.maps, ref.abs().amax(1, keepdim=True), rtol=1e-5, atol=1e-8)
    signed = CaptumExplainer(model, class_name="IntegratedGradients", reduction="none", signed=True, n_steps=8).attribute(x, 1)
    assert torch.allclose(signed, IntegratedGradients(model).attribute(x, target=1, n_steps=8), rtol=1e-5, atol=1e-8)


def test_saliency_and_layer_gradcam_match_builtins():
    torch.manual_seed(0)
    model = build_model("small-cnn", "bnn").eval()
    x = torch.rand(2, 1, 28, 28)
    for captum_name, builtin, kwargs in [
        ("captum:Saliency", "gradient", {}),
        ("captum:LayerGradCam", "gradcam", {"relu_attributions": True}),
    ]:
        theirs = get_explainer(captum_name, model, **kwargs).explain(x, [3, 0])
        ours = get_explainer(builtin, model).explain(x, [3, 0])
        assert theirs.maps.shape == ours.maps.shape == (2, 1, 28, 28)
        assert torch.allclose(theirs.maps, ours.maps, rtol=1e-5, atol=1e-8 * float(ours.maps.abs().max()))
        assert theirs.surrogate == "ste"


def test_perturbation_method_and_per_image_baselines_batched(tiny):
    model, x = tiny
    occ = get_explainer("captum:Occlusion", model, sliding_window_shapes=(3, 2, 2), strides=(3, 2, 2)).attribute(x, 0)
    ref = Occlusion(model).attribute(x, sliding_window_shapes=(3, 2, 2), strides=(3, 2, 2), target=0)
    assert torch.allclose(occ, ref.abs().amax(1, keepdim=True), rtol=1e-5, atol=1e-7)
    baselines = torch.rand_like(x)
    full = get_explainer("captum:IntegratedGradients", model, n_steps=4, baselines=baselines).attribute(x, 1)
    batched = get_explainer("captum:IntegratedGradients", model, n_steps=4, baselines=baselines, batch_size=2).attribute(x, 1)
    assert torch.allclose(full, batched, rtol=1e-5, atol=1e-8)


def test_layer_method_needs_spatial_layer(tiny):
    model, x = tiny
    maps = get_explainer("captum:LayerGradientXActivation", model, layer="conv").attribute(x, 0)
    assert maps.shape == (3, 1, 8, 8)
    with pytest.raises(ExplainerError, match=r"returned \(3, 3\).*convolutional layer"):
        get_explainer("captum:LayerGradientXActivation", model, layer="fc").attribute(x, 0)
    with pytest.raises(ExplainerError, match="needs layer="):
        get_explainer("captum:LayerGradCam", model)
    with pytest.raises(ExplainerError, match="no layer called 'con'.*conv"):
        get_explainer("captum:LayerGradCam", model, layer="con")


def test_bad_names_and_arguments(tiny):
    model, _ = tiny
    with pytest.raises(ExplainerError, match="unknown or unsupported Captum.*'IntegratedGradient'.*IntegratedGradients"):
        get_explainer("captum:IntegratedGradient", model)
    with pytest.raises(ExplainerError, match="for example: Saliency"):
        get_explainer("captum:Zzzzz", model)
    with pytest.raises(ExplainerError, match="NoiseTunnel wraps another method"):
        get_explainer("captum:NoiseTunnel", model)
    with pytest.raises(ExplainerError, match="takes no argument 'n_step'.*n_steps"):
        get_explainer("captum:IntegratedGradients", model, n_step=4)
    with pytest.raises(ExplainerError, match="takes no layer="):
        get_explainer("captum:Saliency", model, layer="conv")
    assert {"Saliency", "IntegratedGradients", "LayerGradCam", "Occlusion"} <= set(captum_classes())
    assert "NoiseTunnel" not in captum_classes() and "Attribution" not in captum_classes()


def test_a_missing_required_option_is_named_with_the_methods_required_options(tiny):
    model, _ = tiny
    with pytest.raises(ExplainerError, match=r"captum:Occlusion needs 'sliding_window_shapes' \(its required options: "
                                             r"sliding_window_shapes; all: .*strides"):
        get_explainer("captum:Occlusion", model)
    with pytest.raises(ExplainerError, match="captum:LayerDeepLiftShap needs 'baselines'"):
        get_explainer("captum:LayerDeepLiftShap", model, layer="conv")


def attributes(model):
    return [sorted(vars(m)) for m in model.modules()]


@pytest.mark.parametrize("precision", ["fp", "bnn"])
def test_layer_deeplift_works_and_leaves_no_attribute_on_any_module(precision):
    torch.manual_seed(0)
    model = build_model("small-cnn", precision, widths=(4, 8, 8)).eval()
    x = torch.rand(2, 1, 28, 28)
    before = attributes(model)
    maps = get_explainer("captum:LayerDeepLift", model).attribute(x, [1, 2])
    assert maps.shape == (2, 1, 28, 28) and torch.isfinite(maps).all() and maps.abs().sum() > 0
    assert attributes(model) == before
    assert not any(p.requires_grad is False for p in model.parameters())


def test_no_attribute_is_left_behind_when_captum_fails():
    """DeepLift stores the input of each nn.ReLU on the module; a model that fails after its ReLU ran (here:
    only on inputs that require grad, i.e. inside Captum's own pass) must not keep that attribute."""

    class FailsInsideCaptum(TinyNet):
        def __init__(self):
            super().__init__()
            self.relu = nn.ReLU()

        def forward(self, x):
            out = self.fc(self.pool(self.relu(self.conv(x))).flatten(1))
            if x.requires_grad:
                raise RuntimeError("failed after the ReLU")
            return out

    model = FailsInsideCaptum().eval()
    before = attributes(model)
    with pytest.raises(ExplainerError, match="captum:DeepLift failed on this model.*failed after the ReLU") as info:
        get_explainer("captum:DeepLift", model).attribute(torch.rand(2, 3, 8, 8), 0)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert attributes(model) == before


def test_a_method_that_does_not_suit_the_model_is_a_clean_error():
    """LRP has no rule for binsight's Normalize module: one ExplainerError naming the class, model untouched."""
    model = build_model("small-cnn", "fp", widths=(4, 8, 8)).eval()
    before = attributes(model)
    with pytest.raises(ExplainerError, match="captum:LRP failed on this model with these options: .*no rule"):
        get_explainer("captum:LRP", model).attribute(torch.rand(2, 1, 28, 28), 0)
    assert attributes(model) == before
