"""binsight.nn: sign, surrogate gradients, binary layers, surrogate switching."""

import pytest
import torch
from torch import nn

from binsight.nn.surrogates import get_surrogate
from binsight.nn import (
    SURROGATES,
    BinaryConv2d,
    BinaryLinear,
    SignActivation,
    SurrogateError,
    binarize_weight,
    clip_latent_weights,
    register_surrogate,
    surrogates,
    sign,
    surrogate_of,
    use_surrogate,
)

GRID = torch.linspace(-2.5, 2.5, 101, dtype=torch.float64)  # includes -1, 0 and 1 exactly (step 0.05)


def surrogate_gradient(name: str, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(sign(x, name).sum(), x)
    return grad


def test_sign_is_exactly_plus_minus_one_with_sign_of_zero_plus_one():
    x = torch.tensor([-3.0, -1e-8, -0.0, 0.0, 1e-8, 2.0])
    out = sign(x)
    assert out.tolist() == [-1.0, -1.0, 1.0, 1.0, 1.0, 1.0]
    assert out.dtype == x.dtype and out.shape == x.shape


def test_sign_activation_output_is_binary():
    out = SignActivation()(torch.randn(4, 3, 5, 5))
    assert set(out.unique().tolist()) == {-1.0, 1.0}


def test_ste_gradient_is_clipped_identity():
    expected = (GRID.abs() <= 1).double()
    assert torch.equal(surrogate_gradient("ste", GRID), expected)


def test_approx_gradient_is_bireal_polynomial():
    x = GRID
    expected = torch.where((x >= -1) & (x < 0), 2 + 2 * x, torch.where((x >= 0) & (x < 1), 2 - 2 * x, 0 * x))
    assert torch.allclose(surrogate_gradient("approx", x), expected, atol=1e-12)
    assert surrogate_gradient("approx", torch.tensor([0.0]).double()).item() == 2.0


def test_identity_gradient_is_one():
    assert torch.equal(surrogate_gradient("identity", GRID), torch.ones_like(GRID))


def test_surrogate_scales_the_incoming_gradient():
    x = torch.tensor([0.5, 3.0], requires_grad=True)
    (grad,) = torch.autograd.grad((sign(x, "ste") * torch.tensor([3.0, 3.0])).sum(), x)
    assert grad.tolist() == [3.0, 0.0]


@pytest.mark.parametrize("surrogate", ["ste", "approx", "identity"])
def test_sign_gradient_keeps_its_inputs_layout_and_values(surrogate):
    """A channels-first incoming gradient of a channels-last input leaves sign's backward channels-last (the
    layer before it, a batch norm, is then not pushed onto a slow mixed-layout path), with the same values."""
    x = torch.randn(4, 3, 5, 5).to(memory_format=torch.channels_last).requires_grad_(True)
    upstream = torch.randn(4, 3, 5, 5)  # channels-first, as a flatten's backward gives it
    (grad,) = torch.autograd.grad(sign(x, surrogate), x, upstream)
    assert grad.is_contiguous(memory_format=torch.channels_last) and not grad.is_contiguous()
    assert torch.equal(grad, upstream * get_surrogate(surrogate)(x.detach()))
    plain = torch.randn(4, 3, 5, 5, requires_grad=True)
    (grad,) = torch.autograd.grad(sign(plain, surrogate), plain, upstream)
    assert grad.is_contiguous() and torch.equal(grad, upstream * get_surrogate(surrogate)(plain.detach()))


def test_register_surrogate_and_unknown_name():
    name = "test-double"
    if name not in SURROGATES:
        register_surrogate(name)(lambda x: 2 * torch.ones_like(x))
    assert torch.equal(surrogate_gradient(name, GRID), 2 * torch.ones_like(GRID))
    assert name in surrogates() and {"ste", "approx", "identity"} <= set(surrogates())
    with pytest.raises(SurrogateError, match="already registered"):
        register_surrogate(name)(lambda x: x)
    with pytest.raises(SurrogateError, match="must be a function"):
        register_surrogate("not-a-function")(3)
    with pytest.raises(SurrogateError, match="unknown sign surrogate 'nope'"):
        sign(torch.zeros(2), "nope")
    with pytest.raises(SurrogateError):
        SignActivation("nope")


def test_binary_layers_use_binarized_weights():
    torch.manual_seed(0)
    conv = BinaryConv2d(3, 4, 3, padding=1, bias=False)
    x = torch.randn(2, 3, 6, 6)
    expected = nn.functional.conv2d(x, torch.where(conv.weight >= 0, 1.0, -1.0), padding=1)
    assert torch.allclose(conv(x), expected, atol=1e-5)
    lin = BinaryLinear(5, 2, bias=False)
    v = torch.randn(3, 5)
    assert torch.allclose(lin(v), v @ torch.where(lin.weight >= 0, 1.0, -1.0).T, atol=1e-5)


def test_scaling_is_mean_absolute_weight_per_output_channel():
    w = torch.tensor([[0.5, -0.25], [-1.0, 0.0]])
    assert torch.equal(binarize_weight(w, scaling=True), torch.tensor([[0.375, -0.375], [-0.5, 0.5]]))


def test_latent_weights_get_gradients_and_clip():
    conv = BinaryConv2d(2, 2, 3, bias=False)
    conv(torch.randn(1, 2, 5, 5)).sum().backward()
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0
    with torch.no_grad():
        conv.weight.mul_(10)
    model = nn.Sequential(conv, nn.Conv2d(2, 2, 1))
    with torch.no_grad():
        model[1].weight.fill_(5.0)
    plain_before = model[1].weight.clone()
    clip_latent_weights(model)
    assert conv.weight.abs().max() <= 1.0
    assert torch.equal(model[1].weight, plain_before)  # full-precision layers are left alone


def tiny_bnn() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), SignActivation(),
        BinaryConv2d(4, 4, 3, padding=1), nn.BatchNorm2d(4), SignActivation(),
        nn.Flatten(), nn.Linear(4 * 6 * 6, 3),
    ).eval()


def input_gradient(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(model(x)[:, 0].sum(), x)
    return grad


def test_use_surrogate_changes_input_gradient_and_restores():
    model, x = tiny_bnn(), torch.randn(2, 1, 6, 6) * 3
    before = input_gradient(model, x)
    assert surrogate_of(model) == "ste"
    with use_surrogate(model, "identity") as same:
        assert same is model and surrogate_of(model) == "identity"
        switched = input_gradient(model, x)
    assert not torch.allclose(before, switched)
    assert surrogate_of(model) == "ste"
    assert torch.equal(input_gradient(model, x), before)


def test_use_surrogate_restores_after_an_error():
    model = tiny_bnn()
    with pytest.raises(RuntimeError, match="boom"):
        with use_surrogate(model, "approx"):
            assert surrogate_of(model) == "approx"
            raise RuntimeError("boom")
    assert surrogate_of(model) == "ste"


def test_use_surrogate_unknown_name_changes_nothing():
    model = tiny_bnn()
    with pytest.raises(SurrogateError):
        with use_surrogate(model, "nope"):
            pass
    assert surrogate_of(model) == "ste"


def test_surrogate_of_fp_and_mixed_models():
    assert surrogate_of(nn.Sequential(nn.Linear(2, 2), nn.ReLU())) is None
    model = tiny_bnn()
    model[5].surrogate = "approx"
    assert surrogate_of(model) == "mixed"
    with use_surrogate(nn.Linear(2, 2), "approx") as fp:  # no binarized layer: nothing to switch
        assert surrogate_of(fp) is None
