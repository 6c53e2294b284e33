"""The error of the models layer."""

from __future__ import annotations

from binsight.errors import BinsightError


class ModelError(BinsightError):
    """A model that cannot be built or run as asked: unknown name, bad precision, sizes, options or inputs."""
