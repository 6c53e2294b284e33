"""binsight._utils: the mechanics explainers and measures share (targets, inputs, substrates, seeds, batches,
the model left as found)."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.ndimage
import torch
from torch import nn

from binsight import _utils
from binsight.errors import BinsightError


class Oops(BinsightError):
    """The error class a caller passes in."""


@pytest.mark.parametrize(
    "target,expected",
    [
        (2, [2, 2, 2]),
        (np.int64(1), [1, 1, 1]),
        (torch.tensor(0), [0, 0, 0]),
        ([0, 1, 2], [0, 1, 2]),
        (np.array([2, 0, 1]), [2, 0, 1]),
        (torch.tensor([1, 1, 0], dtype=torch.int32), [1, 1, 0]),
        ((2, 2, 1), [2, 2, 1]),
    ],
)
def test_accepted_target_forms(target, expected):
    t = _utils.requested_targets(target, 3, error=Oops)
    assert t.dtype == torch.int64 and t.tolist() == expected


def test_none_means_the_predicted_class_and_the_result_is_a_copy():
    assert _utils.requested_targets(None, 4, error=Oops) is None
    given = torch.tensor([0, 1])
    t = _utils.requested_targets(given, 2, error=Oops)
    t[0] = 5
    assert given.tolist() == [0, 1]


@pytest.mark.parametrize(
    "target,match",
    [
        (True, "int class index"),
        (np.bool_(True), "int class index"),
        (1.0, "integer class indices"),
        ([0.0, 1.0, 2.0], "integer class indices"),
        (torch.tensor([True, False, True]), "integer class indices"),
        ([0, 1], "2 entries for 3 images"),
        (torch.zeros(3, 1, dtype=torch.long), "1-D"),
        ([0, -1, 2], "target -1 is out of range"),
        ("cat", "class indices"),
        ([[0], [1, 2]], "class indices"),
    ],
)
def test_refused_target_forms_raise_the_callers_error(target, match):
    with pytest.raises(Oops, match=match):
        _utils.requested_targets(target, 3, error=Oops)


def test_target_range_needs_the_logits():
    assert _utils.check_target_range(torch.tensor([0, 4]), 5, error=Oops).tolist() == [0, 4]
    with pytest.raises(Oops, match=r"target 5 is out of range: the model has 5 classes \(0..4\)"):
        _utils.check_target_range(torch.tensor([0, 5]), 5, error=Oops)


@pytest.mark.parametrize("bad", [0, -2, 1.5, "4", True, 2.0])
def test_batch_size_must_be_a_positive_int(bad):
    with pytest.raises(Oops, match="batch_size must be a positive integer"):
        _utils.check_batch_size(bad, error=Oops)


def test_batch_size_none_only_where_optional():
    assert _utils.check_batch_size(None, error=Oops) is None
    assert _utils.check_batch_size(np.int64(3), error=Oops) == 3
    with pytest.raises(Oops):
        _utils.check_batch_size(None, optional=False, error=Oops)


def test_check_images():
    x = torch.rand(2, 1, 4, 4, requires_grad=True)
    out = _utils.check_images(x, error=Oops)
    assert not out.requires_grad and torch.equal(out, x.detach())
    for bad, match in [(x[0], "4 dimensions"), (x[:0], "empty"), ((x * 255).long(), "floating point"),
                       (x.detach().numpy(), "torch.Tensor")]:
        with pytest.raises(Oops, match=match):
            _utils.check_images(bad, error=Oops)
    nan = x.detach().clone()
    nan[1, 0, 2, 2] = float("inf")
    with pytest.raises(Oops, match=r"NaN or infinite pixels \(images \[1\]\)"):
        _utils.check_images(nan, error=Oops)
    with pytest.raises(Oops, match="2 images for 3 maps"):
        _utils.check_images(x, n=3, error=Oops)


def test_call_model_checks_the_logits():
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.LazyLinear(4))
    assert _utils.call_model(model, torch.rand(2, 3, 5, 5), error=Oops).shape == (2, 4)
    with pytest.raises(Oops, match="first convolution takes 3 channels, the inputs have 1"):
        _utils.call_model(model, torch.rand(2, 1, 5, 5), error=Oops)
    with pytest.raises(Oops, match="returned shape"):
        _utils.call_model(nn.Flatten(0), torch.rand(2, 3, 5, 5), error=Oops)
    with pytest.raises(Oops, match="returned tuple"):
        _utils.call_model(lambda_module(lambda x: (x, x)), torch.rand(2, 3, 5, 5), error=Oops)


@pytest.mark.parametrize("dtype", [torch.int64, torch.int32, torch.bool, torch.complex64])
def test_call_model_refuses_logits_that_are_not_floating_point(dtype):
    model = lambda_module(lambda x: x.flatten(1)[:, :3].to(dtype))
    with pytest.raises(Oops, match=rf"the model returned logits of dtype {dtype}; binsight needs floating-point "
                                   "logits"):
        _utils.call_model(model, torch.rand(2, 3, 5, 5), error=Oops)


def test_float64_logits_are_float32_with_their_gradient():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 2, 3), nn.Flatten(), nn.Linear(18, 4))
    double = lambda_module(lambda x: model(x).double())
    x = torch.rand(2, 3, 5, 5, requires_grad=True)
    logits = _utils.call_model(double, x, error=Oops)
    assert logits.dtype == torch.float32 and torch.allclose(logits, model(x))
    (grad,) = torch.autograd.grad(logits[:, 1].sum(), x)
    (want,) = torch.autograd.grad(model(x)[:, 1].sum(), x)
    assert grad.dtype == torch.float32 and torch.allclose(grad, want)


def lambda_module(fn):
    class Wrap(nn.Module):
        def forward(self, x):
            return fn(x)

    return Wrap()


def test_substrates_are_built_per_image():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 2, 9, 9, generator=g)
    assert torch.equal(_utils.make_substrate(x, "black", error=Oops), torch.zeros_like(x))
    mean = _utils.make_substrate(x, "mean", error=Oops)
    assert torch.allclose(mean[1, 0], x[1, 0].mean().expand(9, 9))
    assert torch.allclose(_utils.make_substrate(x[1:2], "mean", error=Oops), mean[1:2])  # other images don't matter
    given = _utils.make_substrate(x, "mean", mean=[0.25, 0.75], error=Oops)
    assert given[:, 0].eq(0.25).all() and given[:, 1].eq(0.75).all()
    blur = _utils.make_substrate(x, "blur", blur_sigma=1.5, error=Oops)
    expected = scipy.ndimage.gaussian_filter(x.double().numpy(), (0, 0, 1.5, 1.5), mode="reflect")
    np.testing.assert_allclose(blur.numpy(), expected, rtol=1e-5, atol=1e-6)
    default = _utils.make_substrate(x, "blur", error=Oops)  # sigma = min(H, W) / 14
    expected = scipy.ndimage.gaussian_filter(x.double().numpy(), (0, 0, 9 / 14, 9 / 14), mode="reflect")
    np.testing.assert_allclose(default.numpy(), expected, rtol=1e-5, atol=1e-6)
    assert torch.equal(_utils.make_substrate(x, torch.tensor(0.5), error=Oops), torch.full_like(x, 0.5))


@pytest.mark.parametrize("kind,kwargs,match", [
    ("grey", {}, "unknown substrate 'grey'"),
    ("blur", {"blur_sigma": 0}, "blur_sigma"),
    ("mean", {"mean": [0.1, 0.2, 0.3]}, "3 values for 2 channels"),
    (torch.zeros(4, 1, 1, 1), {}, "broadcast"),
])
def test_bad_substrates(kind, kwargs, match):
    with pytest.raises(Oops, match=match):
        _utils.make_substrate(torch.rand(3, 2, 5, 5), kind, error=Oops, **kwargs)


def test_per_image_generators_are_repeatable_and_distinct():
    draw = lambda seed, index: torch.rand(5, generator=_utils.image_generator(seed, index))  # noqa: E731
    assert torch.equal(draw(0, 3), draw(0, 3))
    assert not torch.equal(draw(0, 3), draw(0, 4))
    assert not torch.equal(draw(0, 3), draw(1, 3))
    assert not torch.equal(draw(0, 1), draw(1, 0))  # (seed, index) is hashed, not added
    assert 0 <= _utils.derived_seed(7, 2) < 2**64


@pytest.mark.parametrize("total,size,expected", [
    (10, 4, [(0, 4), (4, 8), (8, 10)]),
    (10, None, [(0, 10)]),
    (3, 5, [(0, 3)]),
    (4, 1, [(0, 1), (1, 2), (2, 3), (3, 4)]),
    (0, 3, []),
])
def test_batch_slices(total, size, expected):
    assert [(s.start, s.stop) for s in _utils.batch_slices(total, size)] == expected


@pytest.mark.parametrize("fail", [False, True])
def test_preserved_model_removes_attributes_hooks_and_restores_state(fail):
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU()).train()
    model[0].user_note = "kept"
    before = {k: v.clone() for k, v in model.state_dict().items()}
    try:
        with _utils.preserved_model(model):
            assert not model.training and not model[0].weight.requires_grad
            model[1].input = torch.zeros(1)  # as Captum's DeepLift stores inputs on modules
            model[0].user_note = "changed"
            model[0].register_forward_hook(lambda *a: None)
            with torch.no_grad():
                model[0].weight.add_(1)
            if fail:
                raise RuntimeError("inside")
    except RuntimeError:
        assert fail
    assert not hasattr(model[1], "input")
    assert model[0].user_note == "changed"  # an attribute the user had stays (only new ones go)
    assert not model[0]._forward_hooks
    assert model.training and model[0].weight.requires_grad
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_flat_maps_known_answers():
    """One flatness rule for the measures' degeneracy and NeuroMask's masks: range vs magnitude (or span)."""
    from binsight._utils import flat_maps

    offset = torch.full((1, 1, 4, 4), 4.5e-5)
    noisy = offset + 1e-12 * torch.arange(16.0).view(1, 1, 4, 4)  # sigmoid(-10) everywhere, float noise on top
    ramp = torch.linspace(0, 1, 16).view(1, 1, 4, 4)
    small = 1e-4 * ramp  # a small map that ranks its pixels: not flat on its own magnitude...
    assert flat_maps(torch.cat([offset, noisy, ramp, small])).tolist() == [True, True, False, False]
    assert flat_maps(small, span=1.0).tolist() == [True]  # ...but flat for a method whose values span [0, 1]
