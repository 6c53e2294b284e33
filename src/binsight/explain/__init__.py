"""Explainers: one ``attribute(inputs, target)`` API for every method, found by name in a registry.

Importing the package registers the built-in methods: ``gradient``, ``smoothgrad``, ``gradcam``,
``neuromask``, ``smoothgrad-forward`` and the ``captum`` family (``"captum:ClassName"``).
"""

from binsight.explain import (  # noqa: F401  (register)
    captum_adapter,
    gradcam,
    gradient,
    neuromask,
    smoothgrad,
    smoothgrad_forward,
)
from binsight.explain.base import Attribution, Explainer, ExplainerError, Explanation, preserved_model
from binsight.explain.registry import (
    EXPLAINERS,
    available,
    explainer_class,
    families,
    get_explainer,
    register_explainer,
)

__all__ = [
    "EXPLAINERS",
    "Attribution",
    "Explainer",
    "ExplainerError",
    "Explanation",
    "available",
    "explainer_class",
    "families",
    "get_explainer",
    "preserved_model",
    "register_explainer",
]
