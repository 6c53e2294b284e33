"""Architectures defined once and built full precision ("fp") or binarized ("bnn") by name."""

from binsight.models import plain, resnet  # noqa: F401  (register the architectures)
from binsight.models.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from binsight.models.factory import FactoryError, ModelSpec, Normalized, load_model, model_from_module, surrogate_label
from binsight.models.kit import PRECISIONS, LayerKit
from binsight.models.normalize import DEFAULT_STATS, Normalize
from binsight.models.registry import (
    ARCHITECTURES,
    DEFAULT_MODEL,
    Classifier,
    ModelError,
    available,
    build_from_spec,
    build_model,
    register_model,
)

__all__ = [
    "ARCHITECTURES",
    "CheckpointError",
    "Classifier",
    "DEFAULT_MODEL",
    "DEFAULT_STATS",
    "FactoryError",
    "LayerKit",
    "ModelError",
    "ModelSpec",
    "Normalize",
    "Normalized",
    "PRECISIONS",
    "available",
    "build_from_spec",
    "build_model",
    "load_checkpoint",
    "load_model",
    "model_from_module",
    "register_model",
    "save_checkpoint",
    "surrogate_label",
]
