"""Surrogate gradients for the sign function, kept in a registry of small named functions.

A surrogate is a function ``d(x) -> Tensor`` of the sign's input ``x`` giving the derivative that the
backward pass uses in place of sign's true derivative (zero almost everywhere). The backward pass of
:func:`binsight.nn.sign` returns ``grad_output * d(x)``.
"""

from __future__ import annotations

from typing import Callable

import torch

from binsight._registry import Registry
from binsight.errors import BinsightError

SurrogateFn = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_SURROGATE = "ste"


class SurrogateError(BinsightError):
    """An unknown surrogate name, or a bad registration."""


SURROGATES: Registry[SurrogateFn] = Registry("sign surrogate", SurrogateError)


def register_surrogate(name: str) -> Callable[[SurrogateFn], SurrogateFn]:
    """Decorator: add a surrogate ``fn(x) -> derivative`` (same shape as x) under ``name``; a name is
    registered once."""

    def add(fn: SurrogateFn) -> SurrogateFn:
        if not callable(fn):
            raise SurrogateError(f"surrogate {name!r} must be a function of the sign's input, got {type(fn).__name__}")
        SURROGATES.add(name, fn)
        return fn

    return add


def surrogates() -> list[str]:
    """The registered surrogate names, sorted."""
    return SURROGATES.names()


def get_surrogate(name: str) -> SurrogateFn:
    """The registered surrogate function called ``name`` (an unknown name raises :class:`SurrogateError`)."""
    return SURROGATES.get(name)


@register_surrogate("ste")
def ste(x: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator (clipped identity): 1 where |x| <= 1, else 0."""
    return (x.abs() <= 1).to(x.dtype)


@register_surrogate("approx")
def approx(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real Net's ApproxSign derivative: 2 + 2x on [-1, 0), 2 - 2x on [0, 1), else 0 (Liu et al. 2018)."""
    inside = (x >= -1) & (x < 1)
    return torch.where(inside, 2 - 2 * x.abs(), torch.zeros_like(x))


@register_surrogate("identity")
def identity(x: torch.Tensor) -> torch.Tensor:
    """Plain straight-through: derivative 1 everywhere (the gradient passes unchanged)."""
    return torch.ones_like(x)
