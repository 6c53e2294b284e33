"""A model whose backward pass carries no gradient to its input (a BNN binarizing with torch.sign, whose
derivative is zero almost everywhere) is detected by a probe and warned about; binsight's straight-through
BNN, a custom straight-through sign and a full-precision model are not."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

from binsight._utils import BinsightWarning
from binsight.models import build_model
from binsight.models.factory import ModelSpec, load_model, model_from_module
from binsight.nn.foreign import no_input_gradient, warn_if_no_gradient

from support import assert_same_state, model_state  # noqa: E402  (tests/ is on sys.path under pytest)

TESTS = Path(__file__).resolve().parents[1]  # tests/: own_models.py
SIZE = (1, 12, 12)


class TorchSignBNN(nn.Module):
    """Conv -> BN -> torch.sign -> conv -> BN -> torch.sign -> pool -> linear: d logits / d input = 0."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4)
        self.conv2, self.bn2 = nn.Conv2d(4, 8, 3, padding=1), nn.BatchNorm2d(8)
        self.head = nn.Linear(8, 3)

    def forward(self, x):
        x = torch.sign(self.bn1(self.conv1(x)))
        x = torch.sign(self.bn2(self.conv2(x)))
        return self.head(x.mean((2, 3)))


def fp_model() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))


def images(n: int = 4) -> torch.Tensor:
    return torch.rand(n, *SIZE, generator=torch.Generator().manual_seed(0))


def test_a_torch_sign_bnn_carries_no_gradient_and_is_warned_about():
    torch.manual_seed(0)
    model = TorchSignBNN().eval()
    before = model_state(model)
    assert no_input_gradient(model, images())
    with pytest.warns(BinsightWarning, match=r"my-bnn: its backward pass carries no gradient to the input \(the "
                                             r"input gradient of the logits on 4 images is zero everywhere\).*"
                                             r"straight-through sign"):
        assert warn_if_no_gradient(model, images(), name="my-bnn")
    assert_same_state(before, model_state(model))


@pytest.mark.parametrize("make", [lambda: build_model("small-cnn", "bnn", widths=(4, 8, 8), input_size=12),
                                  lambda: build_model("small-cnn", "fp", widths=(4, 8, 8), input_size=12),
                                  fp_model])
def test_straight_through_bnn_and_fp_models_carry_a_gradient(make):
    torch.manual_seed(0)
    model = make().eval()
    assert not no_input_gradient(model, images())
    with warnings.catch_warnings():
        warnings.simplefilter("error", BinsightWarning)
        assert not warn_if_no_gradient(model, images())


def test_inputs_default_to_the_models_input_size():
    torch.manual_seed(0)
    model = TorchSignBNN().eval()
    model.input_size = SIZE
    assert no_input_gradient(model)
    with pytest.raises(Exception, match="input_size"):
        no_input_gradient(fp_model())


def test_loading_an_own_bnn_with_torch_sign_warns(monkeypatch):
    spec = ModelSpec(precision="bnn", normalize="inside", input_size=SIZE, name="sign-bnn")
    with pytest.warns(BinsightWarning, match="model 'sign-bnn': its backward pass carries no gradient"):
        model_from_module(TorchSignBNN(), spec)
    monkeypatch.syspath_prepend(str(TESTS))
    own = ModelSpec("own_models:build_custom_sign", precision="bnn", normalize="inside", input_size=(1, 28, 28))
    with warnings.catch_warnings():
        warnings.simplefilter("error", BinsightWarning)
        load_model(own)  # its own straight-through Function carries a gradient
