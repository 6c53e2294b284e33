"""Foreign BNNs: a Brevitas BNN and a custom-sign BNN, trained briefly, loaded by factory, explained like
binsight's own models (equal to Captum), their sign surrogate reported, switched where it can be, and the
models left untouched."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from captum.attr import LayerAttribution, LayerGradCam, Saliency
from safetensors.torch import save_file
from torch import nn

# brevitas is a test extra (scripts/setup.sh installs it): missing, this module fails, never skips
from brevitas.core.quant.binary import BinaryQuant, ClampedBinaryQuant  # noqa: E402
from brevitas.core.scaling import ConstScaling  # noqa: E402
from brevitas.nn import QuantIdentity  # noqa: E402
from brevitas.quant import SignedBinaryActPerTensorConst  # noqa: E402

from binsight.data import load_dataset  # noqa: E402
from binsight.explain import ExplainerError, get_explainer  # noqa: E402
from binsight.explain.base import find_module  # noqa: E402
from binsight.models import build_model  # noqa: E402
from binsight.models.factory import ModelSpec, load_model, surrogate_label  # noqa: E402
from binsight.nn import SignActivation, SurrogateError  # noqa: E402
from binsight.nn.foreign import (  # noqa: E402
    BREVITAS_CLIPPED,
    BREVITAS_UNCLIPPED,
    OWN,
    SignReport,
    describe_surrogate,
    sign_report,
    use_surrogate_foreign,
)

from support import assert_same_state, model_state  # noqa: E402  (tests/ is on sys.path under pytest)

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

TESTS = Path(__file__).resolve().parents[1]  # tests/: own_models.py
SIZE = (1, 28, 28)
MEAN, STD = (0.2860,), (0.3530,)


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|: the relative error of a against reference b."""
    return float((a.detach() - b.detach()).abs().max() / b.detach().abs().max())


def train_briefly(model: nn.Module, images: torch.Tensor, labels: torch.Tensor, *, mean=None, std=None
                  ) -> tuple[float, float]:
    """15 Adam steps (batch 32) on ``images``; (loss before, loss after) on the whole set, in eval mode."""
    def prepared(x):
        return x if mean is None else (x - mean[0]) / std[0]

    def loss_now():
        model.eval()
        with torch.no_grad():
            return float(F.cross_entropy(model(prepared(images)), labels))

    before = loss_now()
    model.train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(15):
        idx = torch.randint(0, len(images), (32,), generator=gen)
        opt.zero_grad()
        F.cross_entropy(model(prepared(images[idx])), labels[idx]).backward()
        opt.step()
    return before, loss_now()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """The own FP model and the Brevitas BNN, trained on 256 Fashion-MNIST images, saved as safetensors and
    loaded back through the factory: {"fp": wrapped, "bnn": wrapped, "losses": ..., "images": test batch}."""
    with pytest.MonkeyPatch.context() as mp:
        mp.syspath_prepend(str(TESTS))
        import own_models

    data = load_dataset("fashion-mnist", split="train").subset(256, seed=0)
    folder = tmp_path_factory.mktemp("own")
    torch.manual_seed(0)
    fp, bnn = own_models.build_fp(), own_models.build_bnn(width=8)
    losses = {"fp": train_briefly(fp, data.images, data.labels),
              "bnn": train_briefly(bnn, data.images, data.labels, mean=MEAN, std=STD)}
    save_file(fp.state_dict(), str(folder / "fp.safetensors"))
    torch.save(bnn.state_dict(), folder / "bnn.pt")
    specs = {
        "fp": ModelSpec("own_models:build_fp", weights=str(folder / "fp.safetensors"), normalize="inside",
                        input_size=SIZE, num_classes=10, name="own-fp"),
        "bnn": ModelSpec("own_models:build_bnn", kwargs={"width": 8}, weights=str(folder / "bnn.pt"), precision="bnn",
                         mean=MEAN, std=STD, gradcam_layer="bn3", input_size=SIZE, num_classes=10, name="own-bnn"),
    }
    models = {k: load_model(s, search_path=[TESTS]) for k, s in specs.items()}
    test = load_dataset("fashion-mnist", split="test").subset(6, seed=1)
    return {**models, "losses": losses, "images": test.images, "labels": test.labels, "raw_bnn": bnn}


def test_models_trained_and_loaded_with_their_weights(trained):
    for kind in ("fp", "bnn"):
        before, after = trained["losses"][kind]
        assert after < before, kind
    x = trained["images"]
    with torch.no_grad():  # the loaded BNN is the trained one, behind the declared normalisation
        assert torch.equal(trained["bnn"](x), trained["raw_bnn"].eval()((x - MEAN[0]) / STD[0]))
    assert not trained["bnn"].training and not trained["bnn"].model.training


@pytest.mark.parametrize("kind", ["bnn", "fp"])
def test_gradient_equals_captum_saliency(trained, kind):
    model, x, t = trained[kind], trained["images"], trained["labels"]
    ours = get_explainer("gradient", model).explain(x, t)
    ref = Saliency(model).attribute(x, target=t)  # abs=True; one channel
    assert ours.maps.shape == (6, 1, 28, 28) and float(ref.abs().max()) > 0
    assert rel_err(ours.maps, ref) < 1e-5


@pytest.mark.parametrize("kind", ["bnn", "fp"])
def test_gradcam_equals_captum_layer_gradcam(trained, kind):
    model, x, t = trained[kind], trained["images"], trained["labels"]
    exp = get_explainer("gradcam", model).explain(x, t)
    assert exp.params["layer"] == {"bnn": "model.bn3", "fp": "model.features.3"}[kind]
    cam = LayerGradCam(model, find_module(model, exp.params["layer"])).attribute(x, target=t, relu_attributions=True)
    ref = LayerAttribution.interpolate(cam, (28, 28), interpolate_mode="bilinear")
    assert float(ref.detach().max()) > 0
    assert rel_err(exp.maps, ref) < 1e-5


def test_describe_surrogate_is_structural(trained):
    assert describe_surrogate(trained["fp"]) == ""
    report = sign_report(trained["bnn"])
    assert report.surrogate == BREVITAS_CLIPPED == "brevitas-ste" and report.switchable
    assert report.sources == ("3 x Brevitas ClampedBinaryQuant (brevitas-ste)",)  # weight quantisers not counted
    own = load_model(ModelSpec("own_models:build_custom_sign", precision="bnn", normalize="inside", input_size=SIZE),
                     search_path=[TESTS])
    report = sign_report(own)
    assert report.surrogate == OWN == "own (custom autograd.Function, not switchable)" and not report.switchable
    assert "MySign" in report.sources[0]
    assert [surrogate_label(m) for m in (trained["fp"], trained["bnn"], own)] == ["", "brevitas-ste", "own"]
    ours = build_model("small-cnn", "bnn", surrogate="approx")
    assert describe_surrogate(ours, torch.rand(2, *SIZE)) == "approx"
    with pytest.raises(SurrogateError, match="give inputs="):
        describe_surrogate(ours)  # no input_size to make a dummy batch from
    with pytest.raises(SurrogateError, match=r"failed on inputs of shape \(2, 3, 28, 28\) \(.*\); give inputs="):
        describe_surrogate(ours, torch.rand(2, 3, 28, 28))


class SmoothStep(torch.autograd.Function):
    """A custom autograd Function that does not binarize (tanh with its true derivative)."""

    @staticmethod
    def forward(ctx, x):
        y = torch.tanh(x)
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return grad * (1 - y * y)


def test_a_custom_function_that_does_not_binarize_is_not_a_sign():
    class FPWithFunction(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv, self.head = nn.Conv2d(1, 4, 3), nn.Linear(4, 3)

        def forward(self, x):
            return self.head(SmoothStep.apply(self.conv(x)).mean((2, 3)))

    assert sign_report(FPWithFunction(), torch.rand(2, *SIZE)) == SignReport("", False, ())


class ScaledQuant(nn.Module):
    """One Brevitas binary quantiser with scale 0.5, as a model's only binarized activation."""

    def __init__(self, quant: nn.Module):
        super().__init__()
        self.quant = quant

    def forward(self, x):
        return self.quant(x)[0]


X = [-1.5, -0.5, -0.25, 0.0, 0.25, 0.45, 0.9]
# d/dx of 0.5 * sign(x): Brevitas's own clipped form 0.5 * 1{|x| <= 0.5}; binsight's surrogates act on x / 0.5
CLIPPED_GRAD = [0.0, 0.5, 0.5, 0.5, 0.5, 0.5, 0.0]
APPROX_GRAD = [0.0, 0.0, 0.5, 1.0, 0.5, 0.1, 0.0]  # 0.5 * (2 - 2|x / 0.5|) on [-1, 1)
IDENTITY_GRAD = [0.5] * 7


def input_grad(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.detach().clone().requires_grad_(True)
    model(x).sum().backward()
    return x.grad


@pytest.mark.parametrize("quant, own_name, own_grad", [
    (ClampedBinaryQuant(ConstScaling(0.5)), BREVITAS_CLIPPED, CLIPPED_GRAD),
    (BinaryQuant(ConstScaling(0.5)), BREVITAS_UNCLIPPED, IDENTITY_GRAD),
])
def test_adapter_known_answers(quant, own_name, own_grad):
    model = ScaledQuant(quant)
    x = torch.tensor(X)
    assert describe_surrogate(model, x.view(1, 7, 1, 1)) == own_name
    assert input_grad(model, x).tolist() == own_grad
    values = model(x)
    for name, expected in [("ste", CLIPPED_GRAD), ("approx", APPROX_GRAD), ("identity", IDENTITY_GRAD)]:
        with use_surrogate_foreign(model, name):
            assert describe_surrogate(model, x.view(1, 7, 1, 1)) == name
            assert torch.equal(model(x), values)  # same forward values
            assert torch.allclose(input_grad(model, x), torch.tensor(expected), atol=1e-6), name
    assert input_grad(model, x).tolist() == own_grad and "forward" not in vars(quant)


def test_adapter_on_trained_bnn_switches_and_restores(trained):
    model, x, t = trained["bnn"], trained["images"], trained["labels"]
    own = get_explainer("gradient", model).attribute(x, t)
    with use_surrogate_foreign(model, "ste"):  # "ste" is Brevitas's clipped form: same maps
        assert torch.equal(get_explainer("gradient", model).attribute(x, t), own)
    with use_surrogate_foreign(model, "approx"):
        approx = get_explainer("gradient", model).attribute(x, t)
    assert not torch.allclose(approx, own)
    with pytest.raises(RuntimeError, match="inside"), use_surrogate_foreign(model, "identity"):
        raise RuntimeError("inside")
    assert describe_surrogate(model) == BREVITAS_CLIPPED
    assert torch.equal(get_explainer("gradient", model).attribute(x, t), own)


def test_adapter_nested_and_mixed_with_binsight_signs(trained):
    model = trained["bnn"]
    with use_surrogate_foreign(model, "approx"):
        with use_surrogate_foreign(model, "identity"):
            assert describe_surrogate(model) == "identity"
        assert describe_surrogate(model) == "approx"
    assert describe_surrogate(model) == BREVITAS_CLIPPED
    ours = build_model("small-cnn", "bnn")
    with use_surrogate_foreign(ours, "identity"):  # binsight's own signs switch too
        assert describe_surrogate(ours, torch.rand(2, *SIZE)) == "identity"
    assert describe_surrogate(ours, torch.rand(2, *SIZE)) == "ste"
    mixed = nn.Sequential(nn.Conv2d(1, 4, 3), SignActivation("approx"), nn.Conv2d(4, 4, 3),
                          QuantIdentity(act_quant=SignedBinaryActPerTensorConst), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 3))
    report = sign_report(mixed, torch.rand(2, *SIZE))  # a model with two kinds of sign reports both
    assert report.surrogate == "mixed (approx; brevitas-ste)" and report.switchable
    with use_surrogate_foreign(mixed, "identity"):
        assert describe_surrogate(mixed, torch.rand(2, *SIZE)) == "identity"


def test_adapter_refuses_what_it_cannot_switch(trained):
    with pytest.raises(SurrogateError, match="no binsight sign and no Brevitas binary activation quantiser.*sign_rep"):
        with use_surrogate_foreign(trained["fp"], "ste"):
            pass
    with use_surrogate_foreign(trained["fp"], "ste", strict=False):
        assert describe_surrogate(trained["fp"]) == ""
    with pytest.raises(SurrogateError, match="unknown sign surrogate 'aprox'"):
        with use_surrogate_foreign(trained["bnn"], "aprox"):
            pass


@pytest.mark.parametrize("method", ["gradient", "smoothgrad", "gradcam"])
def test_foreign_bnn_left_untouched(trained, method):
    model, x = trained["bnn"], trained["images"][:2]
    model.model.conv1.weight.requires_grad_(False)
    handle = model.model.conv2.register_forward_hook(lambda *a: None)  # a user's own hook stays
    model.model.bn2.train()  # a user's odd mode stays too
    try:
        before = model_state(model)
        kwargs = {"n_samples": 2} if method == "smoothgrad" else {}
        get_explainer(method, model, **kwargs).attribute(x, [0, 1])
        assert_same_state(before, model_state(model))
        with pytest.raises(ExplainerError, match="out of range"):
            get_explainer(method, model, **kwargs).attribute(x, [0, 10])
        assert_same_state(before, model_state(model))
        sign_report(model)
        with use_surrogate_foreign(model, "approx"):
            get_explainer(method, model, **kwargs).attribute(x, [0, 1])
        with pytest.raises(ValueError), use_surrogate_foreign(model, "approx"):
            get_explainer(method, model, **kwargs).attribute(x, [0, 10])
        assert_same_state(before, model_state(model))
    finally:
        handle.remove()
        model.model.conv1.weight.requires_grad_(True)
        model.eval()
