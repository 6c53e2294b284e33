"""What several test files share: a user's plain classifier, and the check that a model is left as found."""

from __future__ import annotations

import torch
from torch import nn


class TinyNet(nn.Module):
    """A user's plain FP classifier: 3 channels, no binsight attributes."""

    def __init__(self, channels: int = 3, classes: int = 5):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(channels, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, padding=1), nn.Tanh()
        )
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(2), nn.Flatten(), nn.Linear(32, classes))

    def forward(self, x):
        return self.head(self.features(x))


def model_state(model: nn.Module) -> dict:
    """Everything an explainer must leave as it found it."""
    hooks = sum(len(d) for m in model.modules() for d in (m._forward_hooks, m._forward_pre_hooks, m._backward_hooks))
    return {
        "modes": [m.training for m in model.modules()],
        "grads": [p.requires_grad for p in model.parameters()],
        "state": {k: v.clone() for k, v in model.state_dict().items()},
        "hooks": hooks,
        "attributes": [sorted(vars(m)) for m in model.modules()],
    }


def assert_same_state(before: dict, after: dict) -> None:
    assert before["modes"] == after["modes"]
    assert before["grads"] == after["grads"]
    assert before["hooks"] == after["hooks"]
    assert before["attributes"] == after["attributes"]
    assert before["state"].keys() == after["state"].keys()
    for k, v in before["state"].items():
        assert torch.equal(v, after["state"][k]), k
