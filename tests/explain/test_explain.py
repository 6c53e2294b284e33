"""Built-in explainers (gradient, smoothgrad, gradcam): equal to Captum, batch-size independent, BNN-aware,
leave the model untouched, and reject bad input clearly."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from captum.attr import LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
from torch import nn

from binsight.explain import (
    EXPLAINERS,
    Attribution,
    Explainer,
    ExplainerError,
    available,
    explainer_class,
    families,
    get_explainer,
    register_explainer,
)
from binsight.explain.base import find_module
from binsight.explain.captum_adapter import CaptumExplainer
from binsight.explain.gradcam import GradCAM
from binsight.explain.gradient import Gradient
from binsight.explain.neuromask import NeuroMask
from binsight._utils import BinsightWarning
from binsight.explain.smoothgrad import RELIABLE, SmoothGrad, split_half_reliability
from binsight.models import build_model
from support import TinyNet, assert_same_state, model_state  # noqa: F401  (tests/ is on sys.path)

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the relative error of a against reference b."""
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max())


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return TinyNet().eval(), torch.rand(4, 3, 12, 12)


@pytest.fixture(scope="module", params=["fp", "bnn"])
def small_cnn(request):
    torch.manual_seed(1)
    model = build_model("small-cnn", request.param).eval()
    return model, torch.rand(3, 1, 28, 28)


BUILTINS = ["gradcam", "gradient", "neuromask", "smoothgrad"]  # other tests may register more


def test_registry_lists_builtins():
    assert set(BUILTINS) <= set(available()) and available() == sorted(available())
    assert "captum" in families() and "captum" not in available()
    assert isinstance(get_explainer("gradcam", TinyNet()), GradCAM)
    assert explainer_class("captum:Saliency") is CaptumExplainer


def test_class_attributes_say_what_a_generic_caller_needs():
    assert [explainer_class(n).seeded for n in BUILTINS] == [False, False, True, True]
    assert not any(explainer_class(n).signed for n in BUILTINS)  # magnitudes by default
    model = TinyNet()
    assert get_explainer("gradient", model, signed=True).signed and not get_explainer("gradient", model).signed
    assert get_explainer("captum:Saliency", model, signed=True).signed
    for name in BUILTINS:
        cls = explainer_class(name)
        assert cls.name == name and cls.member_option is None
        kwargs = {"seed": 3} if cls.seeded else {}
        explainer = get_explainer(name, model, surrogate=None, batch_size=2, **kwargs)  # every method takes these
        assert explainer.params().get("seed", 3) == 3


@pytest.fixture
def private_registry(monkeypatch):
    """The explainer registry with the built-ins only, restored after the test."""
    monkeypatch.setattr(EXPLAINERS, "_items", dict(EXPLAINERS._items))
    return EXPLAINERS


def test_a_toy_method_through_the_registry_only(private_registry, tiny):
    @register_explainer
    class Brightness(Explainer):
        """The image itself, summed over channels: a map that needs no gradient."""

        name = "brightness"
        seeded = False

        def _explain(self, inputs, wanted):
            return Attribution(inputs.sum(1, keepdim=True), self.resolve_targets(inputs, wanted), {"note": 1})

    model, x = tiny
    assert "brightness" in available()
    ex = get_explainer("brightness", model, batch_size=3).explain(x, np.array([0, 1, 2, 3]))
    assert torch.equal(ex.maps, x.sum(1, keepdim=True)) and ex.targets.tolist() == [0, 1, 2, 3]
    assert ex.method == "brightness" and ex.extras == {"note": 1} and ex.params == {"batch_size": 3}
    with pytest.raises(ExplainerError, match="'brightness' is already registered"):
        register_explainer(Brightness)
    with pytest.raises(ExplainerError, match="'gradient' is already registered"):
        register_explainer(type("Other", (Gradient,), {"name": "gradient"}))
    with pytest.raises(ExplainerError, match="non-empty name"):
        register_explainer(type("Nameless", (Explainer,), {}))
    with pytest.raises(ExplainerError, match="only Explainer subclasses"):
        register_explainer(str)


def test_registry_name_errors(tiny):
    model, _ = tiny
    with pytest.raises(ExplainerError, match="unknown explainer 'gradcm'.*did you mean 'gradcam'"):
        get_explainer("gradcm", model)
    with pytest.raises(ExplainerError, match="single method"):
        get_explainer("gradient:Saliency", model)
    with pytest.raises(ExplainerError, match="family of methods"):
        get_explainer("captum", model)
    with pytest.raises(ExplainerError, match="name a member"):
        get_explainer("captum:", model)
    with pytest.raises(ExplainerError, match="keyword"):
        get_explainer("gradient", model, reduction="max", n_steps=3)  # binds no parameter: bad parameters


def test_options_are_keyword_only(tiny):
    model, _ = tiny
    for cls in (Gradient, SmoothGrad, GradCAM, NeuroMask, CaptumExplainer):
        with pytest.raises(TypeError):
            cls(model, "max")


@pytest.mark.parametrize("target", [2, np.int64(2), torch.tensor(2), [2, 2, 2, 2], np.array([2, 2, 2, 2]),
                                    torch.tensor([2, 2, 2, 2])])
def test_every_target_form_gives_the_same_maps(tiny, target):
    model, x = tiny
    ex = Gradient(model).explain(x, target)
    assert ex.targets.tolist() == [2, 2, 2, 2]
    assert torch.equal(ex.maps, Gradient(model).attribute(x, [2, 2, 2, 2]))


@pytest.mark.parametrize("batch_size", [0, -1, 1.5, "2", True])
def test_bad_batch_size(tiny, batch_size):
    model, _ = tiny
    for name in BUILTINS:
        with pytest.raises(ExplainerError, match="batch_size must be a positive integer"):
            get_explainer(name, model, batch_size=batch_size)


# -- gradient -----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("reduction", ["max", "mean"])
def test_gradient_equals_captum_saliency_tiny(tiny, reduction):
    model, x = tiny
    t = torch.tensor([0, 1, 0, 4])
    ours = Gradient(model, reduction=reduction).attribute(x, t)
    ref = Saliency(model).attribute(x, target=t)  # abs=True
    ref = ref.amax(1, keepdim=True) if reduction == "max" else ref.mean(1, keepdim=True)
    assert ours.shape == (4, 1, 12, 12) and ours.dtype == torch.float32
    assert rel_err(ours, ref) < 1e-5


def test_gradient_equals_captum_saliency_binsight_models(small_cnn):
    model, x = small_cnn
    exp = get_explainer("gradient", model).explain(x, 0)  # class 0 for every image
    ref = Saliency(model).attribute(x, target=0).amax(1, keepdim=True)
    assert rel_err(exp.maps, ref) < 1e-5
    assert exp.targets.tolist() == [0, 0, 0]
    is_bnn = model.gradcam_binary_layer is not None
    assert exp.surrogate == ("ste" if is_bnn else None)


def test_gradient_signed_and_none(tiny):
    model, x = tiny
    t = torch.tensor([2, 2, 3, 1])
    raw = Saliency(model).attribute(x, target=t, abs=False)
    none = Gradient(model, reduction="none", signed=True).attribute(x, t)
    assert none.shape == x.shape and rel_err(none, raw) < 1e-5
    signed_max = Gradient(model, signed=True).attribute(x, t)
    magnitude = Gradient(model).attribute(x, t)
    assert (signed_max < 0).any() and torch.allclose(signed_max.abs(), magnitude)
    # the kept value is one of the channel values
    assert (raw == signed_max).any(1).all()
    signed_mean = Gradient(model, reduction="mean", signed=True).attribute(x, t)
    assert rel_err(signed_mean, raw.mean(1, keepdim=True)) < 1e-5


def test_default_target_is_predicted_class(tiny):
    model, x = tiny
    exp = Gradient(model).explain(x)
    assert exp.targets.tolist() == model(x).argmax(1).tolist()
    assert torch.equal(exp.maps, Gradient(model).attribute(x, exp.targets))


# -- gradcam ------------------------------------------------------------------------------------------------
def captum_gradcam(model, layer_name, x, target):
    cam = LayerGradCam(model, find_module(model, layer_name)).attribute(x, target=target, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")


def test_gradcam_equals_captum_tiny_last_conv(tiny):
    model, x = tiny
    t = torch.tensor([0, 3, 1, 0])
    exp = GradCAM(model).explain(x, t)
    assert exp.params["layer"] == "features.2" and "last nn.Conv2d" in exp.params["layer_choice"]
    ref = captum_gradcam(model, "features.2", x, t)
    assert exp.maps.shape == (4, 1, 12, 12) and rel_err(exp.maps, ref) < 1e-5
    named = GradCAM(model, layer="features.3").attribute(x, t)
    assert rel_err(named, captum_gradcam(model, "features.3", x, t)) < 1e-5


def test_gradcam_equals_captum_binsight_models(small_cnn):
    model, x = small_cnn
    t = torch.tensor([0, 5, 9])
    exp = get_explainer("gradcam", model).explain(x, t)
    assert exp.params["layer"] == model.gradcam_layer
    assert rel_err(exp.maps, captum_gradcam(model, model.gradcam_layer, x, t)) < 1e-5
    if model.gradcam_binary_layer is None:
        with pytest.raises(ExplainerError, match="gradcam_binary_layer"):
            GradCAM(model, use_binary=True)
    else:
        binary = GradCAM(model, use_binary=True).explain(x, t)
        assert binary.params["layer"] == model.gradcam_binary_layer
        assert rel_err(binary.maps, captum_gradcam(model, model.gradcam_binary_layer, x, t)) < 1e-5
        assert not torch.allclose(binary.maps, exp.maps)


def vgg_like(inplace: bool) -> nn.Module:
    """Conv / ReLU blocks as in VGG and AlexNet, with the ReLUs in place or not (same weights either way)."""
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=inplace),
        nn.Conv2d(4, 6, 3, padding=1), nn.ReLU(inplace=inplace),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(6, 5),
    )


@pytest.mark.parametrize("layer", ["0", "2", None])
def test_gradcam_survives_inplace_activation_after_the_layer(layer):
    x = torch.rand(3, 3, 8, 8)
    t = torch.tensor([0, 2, 4])
    out_of_place = GradCAM(vgg_like(False), layer=layer).attribute(x, t)
    model = vgg_like(True)
    before = model_state(model)
    in_place = GradCAM(model, layer=layer).attribute(x, t)
    assert torch.allclose(in_place, out_of_place, rtol=1e-6, atol=1e-7) and in_place.abs().sum() > 0
    assert_same_state(before, model_state(model))


def test_gradcam_rejects_bad_layers(tiny):
    model, _ = tiny
    with pytest.raises(ExplainerError, match=r"no layer called 'features\.9'.*features\.2"):
        GradCAM(model, layer="features.9")
    with pytest.raises(ExplainerError, match="no layer called ''"):
        GradCAM(model, layer="")
    with pytest.raises(ExplainerError, match="needs feature maps"):
        GradCAM(model, layer="head.2").attribute(torch.rand(2, 3, 12, 12))
    with pytest.raises(ExplainerError, match="use_binary"):
        GradCAM(model, use_binary=True)


def test_gradcam_rejects_layer_running_twice_and_removes_hook():
    class Twice(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(1, 1, 3, padding=1)
            self.fc = nn.Linear(16, 2)

        def forward(self, x):
            return self.fc(self.conv(self.conv(x)).flatten(1))

    model = Twice()
    before = model_state(model)
    with pytest.raises(ExplainerError, match="ran 2 times"):
        GradCAM(model).attribute(torch.rand(2, 1, 4, 4), 0)
    assert_same_state(before, model_state(model))


# -- smoothgrad ---------------------------------------------------------------------------------------------
def reference_smoothgrad(model, x, targets, explainer: SmoothGrad) -> torch.Tensor:
    """The plain definition, one copy at a time, with the explainer's own noise: signed (N, C, H, W)."""
    means = []
    for i in range(x.shape[0]):
        noise = explainer.noise(x, i)
        grads = []
        for e in noise:
            xi = (x[i] + e).unsqueeze(0).requires_grad_(True)
            (g,) = torch.autograd.grad(model(xi)[0, targets[i]], xi)
            grads.append(g[0])
        grads = torch.stack(grads)
        means.append({"smoothgrad": grads.mean(0), "squared": grads.square().mean(0), "vargrad": grads.var(0, unbiased=False)}[explainer.variant])
    return torch.stack(means)


@pytest.mark.parametrize("variant", ["smoothgrad", "squared", "vargrad"])
def test_smoothgrad_equals_reference_loop(tiny, variant):
    model, x = tiny
    t = torch.tensor([1, 0, 2, 4])
    sg = SmoothGrad(model, n_samples=6, variant=variant, reduction="none", signed=True, seed=3)
    ours = sg.attribute(x, t)
    ref = reference_smoothgrad(model, x, t, sg)
    assert rel_err(ours, ref) < 1e-5
    reduced = SmoothGrad(model, n_samples=6, variant=variant, seed=3).attribute(x, t)
    assert rel_err(reduced, ref.abs().amax(1, keepdim=True)) < 1e-5


def test_smoothgrad_noise_scale_and_seed(tiny):
    model, x = tiny
    x = x.clone()
    x[1] *= 0.5  # image 1 spans half the range of image 0
    sg = SmoothGrad(model, n_samples=400, noise_level=0.2)
    for i in range(2):
        span = float(x[i].max() - x[i].min())
        assert abs(float(sg.noise(x, i).std()) / (0.2 * span) - 1) < 0.05
    assert abs(float(SmoothGrad(model, n_samples=400, noise_std=0.3).noise(x, 1).std()) / 0.3 - 1) < 0.05
    assert torch.equal(sg.noise(x, 0), sg.noise(x, 0))
    assert not torch.equal(sg.noise(x, 0), SmoothGrad(model, n_samples=400, noise_level=0.2, seed=1).noise(x, 0))


class Wiggly(nn.Module):
    """logit_k = sum_p w_kp sin(40 x_p): at noise std 0.15 a copy's gradient is almost pure noise."""

    def __init__(self):
        super().__init__()
        self.head = nn.Linear(3 * 12 * 12, 5)

    def forward(self, x):
        return self.head(torch.sin(40 * x).flatten(1))


def test_smoothgrad_split_half_check_both_sides(tiny):
    model, x = tiny
    linear = nn.Sequential(nn.Flatten(), nn.Linear(3 * 12 * 12, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BinsightWarning)
        steady = SmoothGrad(linear, n_samples=2).explain(x)  # a constant gradient: both halves agree exactly
    assert torch.allclose(steady.extras["split_half_reliability"], torch.ones(4, dtype=torch.float64))
    assert not steady.extras["unconverged"].any()
    torch.manual_seed(0)
    with pytest.warns(BinsightWarning, match=r"SmoothGrad maps are not converged at n_samples=20 \(split-half "
                                             r"reliability below 0.7: .*\); raise n_samples"):
        noisy = SmoothGrad(Wiggly(), n_samples=20).explain(x)
    assert noisy.extras["unconverged"].all() and (noisy.extras["split_half_reliability"] < 0.5).all()
    single = SmoothGrad(linear, n_samples=1).explain(x)  # nothing to split: not measured
    assert torch.isnan(single.extras["split_half_reliability"]).all() and not single.extras["unconverged"].any()


@pytest.mark.parametrize("r, reliability", [(1.0, 1.0), (0.5, 2 / 3), (0.6, 0.75), (0.0, 0.0)])
def test_split_half_reliability_is_spearman_brown(r, reliability):
    g = torch.Generator().manual_seed(0)
    a = torch.randn(1, 4000, generator=g, dtype=torch.float64)
    noise = torch.randn(1, 4000, generator=g, dtype=torch.float64)
    noise = noise - (noise * a).sum() / (a * a).sum() * a  # orthogonal to a: the correlation is exactly r
    b = r * a / a.std() + (1 - r * r) ** 0.5 * noise / noise.std() if r < 1 else a
    got = split_half_reliability(a, b)
    assert got.item() == pytest.approx(reliability, abs=0.02)
    assert bool(got < RELIABLE) is (reliability < RELIABLE)


def test_smoothgrad_agrees_with_noise_tunnel_in_expectation(tiny):
    """Both are unbiased Monte-Carlo estimates of E_e[grad(x + e)], e ~ N(0, sigma^2), with n copies each.

    Per pixel their difference d has variance 2 s^2 / n, where s^2 is the variance of the gradient over the
    noise (VarGrad estimates it). So R = sum d^2 / sum (2 s^2 / n) has expectation 1 whatever the
    correlation between pixels; with n = 1000 copies and a few hundred pixels, R stays well inside [0.4, 2.5]
    (pixel correlations widen its spread, hence the generous bounds). The same statistic against
    NoiseTunnel run with half the noise is far above the bound, so the test can fail.
    """
    model, x = tiny
    x, t, n, std = x[:2], torch.tensor([1, 3]), 1000, 0.2
    ours = SmoothGrad(model, n_samples=n, noise_std=std, reduction="none", signed=True).attribute(x, t)
    var = SmoothGrad(model, n_samples=n, noise_std=std, variant="vargrad", reduction="none").attribute(x, t)
    torch.manual_seed(0)
    nt = NoiseTunnel(Saliency(model))
    theirs = nt.attribute(x, nt_type="smoothgrad", nt_samples=n, stdevs=std, target=t, abs=False)
    expected = float(2 * var.sum() / n)
    ratio = float((ours - theirs).square().sum()) / expected
    assert 0.4 < ratio < 2.5, ratio
    other = nt.attribute(x, nt_type="smoothgrad", nt_samples=n, stdevs=std / 2, target=t, abs=False)
    assert float((ours - other).square().sum()) / expected > 5


@pytest.mark.parametrize("name,kwargs", [
    ("smoothgrad", {"n_samples": 5}),
    ("smoothgrad", {"n_samples": 5, "variant": "vargrad"}),
    ("gradient", {}),
    ("gradcam", {}),
])
def test_maps_do_not_depend_on_batch_size(tiny, name, kwargs):
    model, x = tiny
    full = get_explainer(name, model, **kwargs).attribute(x, 1)
    # SmoothGrad's batch_size counts noisy copies: 3 and 7 split images' 5 copies across chunks
    for batch_size in (3, 7) if name == "smoothgrad" else (1, 3):
        chunked = get_explainer(name, model, batch_size=batch_size, **kwargs).attribute(x, 1)
        assert torch.allclose(chunked, full, rtol=1e-5, atol=1e-7 * float(full.abs().max())), batch_size


def test_smoothgrad_bnn_records_and_switches_surrogate():
    torch.manual_seed(2)
    model = build_model("small-cnn", "bnn").eval()
    x = torch.rand(2, 1, 28, 28)
    ste = SmoothGrad(model, n_samples=4).explain(x, 0)
    ident = SmoothGrad(model, n_samples=4, surrogate="identity").explain(x, 0)
    assert (ste.surrogate, ident.surrogate) == ("ste", "identity")
    assert not torch.allclose(ste.maps, ident.maps)
    from binsight.nn import surrogate_of

    assert surrogate_of(model) == "ste"


# -- the model is left as found --------------------------------------------------------------------------
@pytest.mark.parametrize("name,kwargs", [
    ("gradient", {}),
    ("smoothgrad", {"n_samples": 3, "batch_size": 4}),
    ("gradcam", {}),
    ("gradcam", {"use_binary": True}),
    ("captum:IntegratedGradients", {"n_steps": 4}),
])
def test_model_untouched_after_success_and_error(name, kwargs):
    torch.manual_seed(3)
    model = build_model("small-cnn", "bnn")
    model.train()
    model.net.classifier.weight.requires_grad_(False)
    handle = model.net.features[0].register_forward_hook(lambda *a: None)  # a user's own hook stays
    x = torch.rand(2, 1, 28, 28)
    before = model_state(model)
    maps = get_explainer(name, model, **kwargs).attribute(x, [0, 9])
    assert maps.shape == (2, 1, 28, 28) and torch.isfinite(maps).all()
    assert_same_state(before, model_state(model))
    with pytest.raises(ExplainerError, match="out of range"):
        get_explainer(name, model, **kwargs).attribute(x, [0, 10])
    assert_same_state(before, model_state(model))
    handle.remove()


def test_error_inside_attribution_restores_model():
    class Fails(TinyNet):
        calls = 0

        def forward(self, x):
            Fails.calls += 1
            out = super().forward(x)  # the layers ran (and GradCAM's hook fired), then the model fails
            raise RuntimeError("boom")

    model = Fails().train()
    before = model_state(model)
    with pytest.raises(ExplainerError, match="boom"):  # the model's own error, named and chained
        GradCAM(model).attribute(torch.rand(2, 3, 12, 12), 0)
    assert_same_state(before, model_state(model))


# -- bad input ----------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["gradient", "smoothgrad", "gradcam"])
def test_bad_inputs(tiny, name):
    model, x = tiny
    explainer = get_explainer(name, model)
    with pytest.raises(ExplainerError, match="4 dimensions"):
        explainer.attribute(x[0])
    with pytest.raises(ExplainerError, match="first convolution takes 3 channels, the inputs have 1"):
        explainer.attribute(x[:, :1])
    bad = x.clone()
    bad[2, 0, 0, 0] = float("nan")
    with pytest.raises(ExplainerError, match=r"NaN or infinite pixels \(images \[2\]\)"):
        explainer.attribute(bad)
    with pytest.raises(ExplainerError, match="target 5 is out of range.*5 classes"):
        explainer.attribute(x, 5)
    with pytest.raises(ExplainerError, match="target -1 is out of range"):
        explainer.attribute(x, [0, 1, -1, 2])
    with pytest.raises(ExplainerError, match="3 entries for 4 images"):
        explainer.attribute(x, [0, 1, 2])


def test_model_returning_non_logits():
    class Tuple(TinyNet):
        def forward(self, x):
            return super().forward(x), x

    with pytest.raises(ExplainerError, match="returned tuple"):
        Gradient(Tuple()).attribute(torch.rand(1, 3, 12, 12))


def test_bad_parameters(tiny):
    model, _ = tiny
    with pytest.raises(ExplainerError, match="unknown explainer 'gradcm'"):
        get_explainer("gradcm", model)
    with pytest.raises(ExplainerError, match="unknown channel reduction 'min'"):
        Gradient(model, reduction="min")
    with pytest.raises(ExplainerError, match="unknown SmoothGrad variant"):
        SmoothGrad(model, variant="smooth")
    with pytest.raises(ExplainerError, match="n_samples"):
        SmoothGrad(model, n_samples=0)
    with pytest.raises(ExplainerError, match="noise_std"):
        SmoothGrad(model, noise_std=-1.0)
    with pytest.raises(ExplainerError, match="noise_level"):
        SmoothGrad(model, noise_level="0.1")
    with pytest.raises(ExplainerError, match="seed"):
        SmoothGrad(model, seed=1.5)
    with pytest.raises(ExplainerError, match="bad parameters for explainer 'gradient'.*n_samples"):
        get_explainer("gradient", model, n_samples=3)
    with pytest.raises(ExplainerError, match="either layer= or use_binary"):
        GradCAM(model, layer="features.0", use_binary=True)


@pytest.mark.parametrize("fail", [False, True])
def test_weights_written_during_explanation_are_restored(fail):
    class Tampering(Gradient):
        def _explain(self, inputs, wanted):
            with torch.no_grad():
                self.model.features[0].weight.add_(1.0)  # an in-place write, as a buggy method might do
                self.model.head[2].bias.zero_()
            if fail:
                raise RuntimeError("failed after writing")
            return super()._explain(inputs, wanted)

    torch.manual_seed(4)
    model = TinyNet()
    model.features[0].weight.grad = torch.ones_like(model.features[0].weight)  # a user's pending gradient
    before = model_state(model)
    if fail:
        with pytest.raises(RuntimeError, match="failed after writing"):
            Tampering(model).attribute(torch.rand(1, 3, 12, 12), 0)
    else:
        Tampering(model).attribute(torch.rand(1, 3, 12, 12), 0)
    assert_same_state(before, model_state(model))
    assert torch.equal(model.features[0].weight.grad, torch.ones_like(model.features[0].weight))
