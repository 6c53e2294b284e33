"""Counting the images a stage puts through its models (binsight.study.passes)."""

import pytest
import torch
from torch import nn

from binsight.study.passes import PassCounter
from binsight.study.records import Timings


class Outer(nn.Module):
    def __init__(self):
        super().__init__()
        self.inner = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))

    def forward(self, x):
        if x.shape[0] == 0:
            raise ValueError("empty")
        return self.inner(x)


def test_outermost_calls_are_counted_by_kind_and_inner_modules_are_not():
    model, x = Outer(), torch.rand(5, 1, 2, 2)
    with PassCounter() as counter:
        with torch.no_grad():
            model(x)
            model(x[:3])
        model(x.requires_grad_()).sum().backward()
        model.inner(x)  # a module called on its own is a pass of its own
    assert counter.counts == {"forward": 8, "forward_backward": 10}
    model(x)  # after the block: not counted
    assert counter.counts == {"forward": 8, "forward_backward": 10}


def test_a_call_that_raises_leaves_the_count_right_for_the_next_ones():
    model = Outer()
    with PassCounter() as counter:
        with pytest.raises(ValueError):
            model(torch.rand(0, 1, 2, 2))
        with torch.no_grad():
            model(torch.rand(2, 1, 2, 2))
    assert counter.counts == {"forward": 2, "forward_backward": 0}


def test_passes_go_to_timings_json_and_bad_ones_are_refused():
    timings = Timings()
    timings.add_passes("measures", {"forward": 10, "forward_backward": 0})
    timings.add_passes("measures", {"forward": 5, "forward_backward": 2})
    again = Timings.from_json(timings.to_json())
    assert again.passes == {"measures": {"forward": 15.0, "forward_backward": 2.0}}
    assert Timings.from_json({"stages": {"maps": 1.0}}).passes == {}  # timings.json of earlier versions
    with pytest.raises(ValueError, match="passes"):
        Timings.from_json({"stages": {}, "passes": {"maps": {"forward": -1}}})
