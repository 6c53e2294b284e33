"""Explainers by name: ``get_explainer("smoothgrad", model, n_samples=50)``.

Built-in names are registered by their modules; ``captum:ClassName`` wraps any Captum attribution class.
"""

from __future__ import annotations

import importlib
from typing import Any

from torch import nn

from binsight.explain.base import Explainer, ExplainerError

_REGISTRY: dict[str, type[Explainer]] = {}
_BUILTIN_MODULES = ("gradient", "smoothgrad", "gradcam", "neuromask")


def register(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__name__} has no name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtins() -> None:
    for mod in _BUILTIN_MODULES:
        try:
            importlib.import_module(f"binsight.explain.{mod}")
        except ModuleNotFoundError as e:  # a method not written yet
            if e.name != f"binsight.explain.{mod}":
                raise


def available() -> list[str]:
    """Names of the registered methods (Captum's are reached as ``captum:ClassName``)."""
    _load_builtins()
    return sorted(_REGISTRY)


def get_explainer(name: str, model: nn.Module, **kwargs: Any) -> Explainer:
    """Build the explainer called ``name`` for ``model`` with the method's keyword arguments."""
    if name.startswith("captum:"):
        from binsight.explain.captum_adapter import CaptumExplainer

        return CaptumExplainer(model, name.split(":", 1)[1], **kwargs)
    _load_builtins()
    if name not in _REGISTRY:
        raise ExplainerError(
            f"unknown explainer {name!r}; available: {', '.join(sorted(_REGISTRY))}, or 'captum:ClassName'"
        )
    try:
        return _REGISTRY[name](model, **kwargs)
    except TypeError as e:
        raise ExplainerError(f"bad parameters for explainer {name!r}: {e}") from None
