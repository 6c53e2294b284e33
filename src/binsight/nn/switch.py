"""Choose the sign surrogate of a trained binarized model without retraining."""

from __future__ import annotations

import contextlib
from typing import Iterator

from torch import nn

from binsight.nn.layers import SignActivation
from binsight.nn.surrogates import get_surrogate

MIXED = "mixed"


def sign_activations(model: nn.Module) -> list[SignActivation]:
    """Every :class:`SignActivation` in ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, SignActivation)]


def surrogate_of(model: nn.Module) -> str | None:
    """The surrogate name every SignActivation of ``model`` uses.

    None when the model has no SignActivation (a full-precision model, or a user's model), and
    ``"mixed"`` when its signs use different surrogates.
    """
    names = {m.surrogate for m in sign_activations(model)}
    if not names:
        return None
    return names.pop() if len(names) == 1 else MIXED


@contextlib.contextmanager
def use_surrogate(model: nn.Module, name: str) -> Iterator[nn.Module]:
    """Make every SignActivation in ``model`` use surrogate ``name`` inside the ``with`` block.

    Each one's own surrogate is restored on exit, also when the block raises. A model without
    SignActivation is left as it is (:func:`surrogate_of` then reports None). Weight binarization keeps
    its straight-through estimator: it has no effect on gradients with respect to the input.
    """
    get_surrogate(name)
    signs = sign_activations(model)
    before = [m.surrogate for m in signs]
    try:
        for m in signs:
            m.surrogate = name
        yield model
    finally:
        for m, old in zip(signs, before):
            m.surrogate = old
