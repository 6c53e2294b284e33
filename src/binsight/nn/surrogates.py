"""Surrogate gradients for the sign function, kept in a registry of small named functions (larq style).

A surrogate is a function ``d(x) -> Tensor`` of the sign's input ``x`` giving the derivative that the
backward pass uses in place of sign's true derivative (zero almost everywhere). The backward pass of
:func:`binsight.nn.sign` returns ``grad_output * d(x)``.
"""

from __future__ import annotations

from typing import Callable

import torch

SurrogateFn = Callable[[torch.Tensor], torch.Tensor]

DEFAULT_SURROGATE = "ste"


class SurrogateError(ValueError):
    """An unknown surrogate name, or a bad registration."""


def ste(x: torch.Tensor) -> torch.Tensor:
    """Straight-through estimator (clipped identity): 1 where |x| <= 1, else 0."""
    return (x.abs() <= 1).to(x.dtype)


def approx(x: torch.Tensor) -> torch.Tensor:
    """Bi-Real Net's ApproxSign derivative: 2 + 2x on [-1, 0), 2 - 2x on [0, 1), else 0 (Liu et al. 2018)."""
    inside = (x >= -1) & (x < 1)
    return torch.where(inside, 2 - 2 * x.abs(), torch.zeros_like(x))


def identity(x: torch.Tensor) -> torch.Tensor:
    """Plain straight-through: derivative 1 everywhere (the gradient passes unchanged)."""
    return torch.ones_like(x)


SURROGATES: dict[str, SurrogateFn] = {"ste": ste, "approx": approx, "identity": identity}


def register_surrogate(name: str, fn: SurrogateFn) -> None:
    """Add a surrogate ``fn(x) -> derivative`` (same shape as x) under ``name``; refuses to overwrite."""
    if not isinstance(name, str) or not name:
        raise SurrogateError(f"a surrogate name must be a non-empty string, got {name!r}")
    if name in SURROGATES:
        raise SurrogateError(f"surrogate {name!r} is already registered; choose another name")
    if not callable(fn):
        raise SurrogateError(f"surrogate {name!r} must be a function of the sign's input, got {type(fn).__name__}")
    SURROGATES[name] = fn


def get_surrogate(name: str) -> SurrogateFn:
    """The registered surrogate function called ``name``."""
    try:
        return SURROGATES[name]
    except (KeyError, TypeError):
        raise SurrogateError(
            f"unknown sign surrogate {name!r}; available: {', '.join(sorted(SURROGATES))} "
            "(add one with binsight.nn.register_surrogate)"
        ) from None
