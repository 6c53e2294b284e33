"""A user's own models, as a researcher would write them (imported by the tests as ``own_models:...``).

* ``build_fp``: a plain FP CNN that normalises its [0, 1] input itself (``normalize = "inside"``); its
  classifier flattens 7 x 7 feature maps, so it takes 28 x 28 images only.
* ``build_bnn``: a Brevitas BNN, binary weights and activations, first conv and classifier full precision;
  it expects normalised input (declare mean/std).
* ``build_custom_sign``: a BNN whose sign is its own ``torch.autograd.Function``.
* ``build_bad_output``: a model that returns (N, classes, 1), not logits (N, classes).
"""

from __future__ import annotations

import torch
from brevitas.nn import QuantConv2d, QuantIdentity
from brevitas.quant import SignedBinaryActPerTensorConst, SignedBinaryWeightPerTensorConst
from torch import nn

FASHION_MEAN, FASHION_STD = 0.2860, 0.3530


class OwnFP(nn.Module):
    """(N, 1, 28, 28) [0, 1] pixels -> logits (N, classes); normalises inside."""

    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.register_buffer("mean", torch.tensor(FASHION_MEAN))
        self.register_buffer("std", torch.tensor(FASHION_STD))
        self.features = nn.Sequential(
            nn.Conv2d(1, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        self.head = nn.Linear(2 * width * 7 * 7, classes)
        self.gradcam_layer = "features.3"

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features((x - self.mean) / self.std).flatten(1))


def build_fp(width: int = 8, classes: int = 10) -> OwnFP:
    return OwnFP(width, classes)


def _binary_act() -> QuantIdentity:
    return QuantIdentity(act_quant=SignedBinaryActPerTensorConst)


def _binary_conv(cin: int, cout: int) -> QuantConv2d:
    return QuantConv2d(cin, cout, 3, padding=1, bias=False, weight_quant=SignedBinaryWeightPerTensorConst)


class BrevitasBNN(nn.Module):
    """Normalised (N, 1, H, W) -> logits (N, classes). FP first conv and classifier, binary in between."""

    def __init__(self, width: int = 16, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.act1 = _binary_act()
        self.conv2 = _binary_conv(width, 2 * width)
        self.pool2 = nn.MaxPool2d(2)
        self.bn2 = nn.BatchNorm2d(2 * width)
        self.act2 = _binary_act()
        self.conv3 = _binary_conv(2 * width, 2 * width)
        self.pool3 = nn.MaxPool2d(2)
        self.bn3 = nn.BatchNorm2d(2 * width)
        self.act3 = _binary_act()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(2 * width, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.bn1(self.conv1(x)))
        x = self.act2(self.bn2(self.pool2(self.conv2(x))))
        x = self.act3(self.bn3(self.pool3(self.conv3(x))))
        return self.head(self.pool(x).flatten(1))


def build_bnn(width: int = 16, classes: int = 10) -> BrevitasBNN:
    return BrevitasBNN(width, classes)


class MySign(torch.autograd.Function):
    """sign forward, clipped straight-through backward: the model's own, not switchable by binsight."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return torch.where(x >= 0, 1.0, -1.0).to(x.dtype)

    @staticmethod
    def backward(ctx, grad):
        (x,) = ctx.saved_tensors
        return grad * (x.abs() <= 1).to(grad.dtype)


class CustomSignBNN(nn.Module):
    def __init__(self, width: int = 8, classes: int = 10):
        super().__init__()
        self.conv1 = nn.Conv2d(1, width, 3, padding=1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = nn.Conv2d(width, width, 3, padding=1)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.head = nn.Linear(width, classes)

    def forward(self, x):
        x = MySign.apply(self.bn1(self.conv1(x)))
        return self.head(self.pool(self.conv2(x)).flatten(1))


def build_custom_sign(width: int = 8, classes: int = 10) -> CustomSignBNN:
    return CustomSignBNN(width, classes)


class ThreeDimOutput(OwnFP):
    """Returns logits (N, classes, 1): not a classifier's output."""

    def forward(self, x):
        logits = super().forward(x)
        return logits.unsqueeze(-1)


def build_bad_output() -> ThreeDimOutput:
    return ThreeDimOutput()
