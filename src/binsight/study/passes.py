"""How many images each stage of a study puts through its models: the stage's floor is what those bare
passes cost (``benchmarks/bench_study.py --only floor --run DIR``).

:class:`PassCounter` counts the images of every outermost module call while it is active (a module called
from inside another module's forward is part of that pass, not a pass of its own), split into calls with
gradients off (``forward``: the measures, the predictions) and on (``forward_backward``: the explainers and
training, whose passes are followed by a backward pass). It uses torch's global module hooks, so it counts
any model, the user's too, and changes none. Calls replayed from a captured CUDA graph (NeuroMask's
``fast="graph"``) do not go through a module call and are not counted.
"""

from __future__ import annotations

import torch
from torch.nn.modules import module as _module

KINDS = ("forward", "forward_backward")
"""The two kinds of pass counted: gradients off, gradients on."""


class PassCounter:
    """``with PassCounter() as counter:`` -- :attr:`counts` (kind -> images) of the outermost module calls
    made inside the block (the length of each call's first tensor argument)."""

    def __init__(self):
        self.counts = dict.fromkeys(KINDS, 0)
        self._depth, self._handles = 0, []

    def __enter__(self) -> "PassCounter":
        self._handles = [_module.register_module_forward_pre_hook(self._enter),
                         _module.register_module_forward_hook(self._leave, always_call=True)]
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _enter(self, module, args) -> None:
        if self._depth == 0 and args and isinstance(args[0], torch.Tensor) and args[0].dim() > 0:
            self.counts[KINDS[torch.is_grad_enabled()]] += int(args[0].shape[0])
        self._depth += 1

    def _leave(self, module, args, output) -> None:
        self._depth = max(0, self._depth - 1)
