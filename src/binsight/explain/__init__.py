"""Explainers: one ``attribute(inputs, target)`` API for every method, found by name in a registry."""

from binsight.explain.base import Explanation, Explainer, ExplainerError, preserved_model
from binsight.explain.registry import available, get_explainer, register

__all__ = [
    "Explanation",
    "Explainer",
    "ExplainerError",
    "available",
    "get_explainer",
    "preserved_model",
    "register",
]
