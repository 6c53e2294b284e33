"""The verdicts' records: statuses, parts, verdicts and everything verdicts.json holds, with its JSON.

:class:`StudyVerdicts` is what :func:`~binsight.study.verdicts.compute_verdicts` returns and verdicts.json
holds; ``to_json`` writes strict JSON (statuses as their words, estimates as objects, no NaN) and
``from_json`` reads it back to equal objects.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from binsight.errors import BinsightError
from binsight.study.names import is_variant
from binsight.study.stats import Estimate
from binsight.study.verdicts.settings import VerdictSettings



class VerdictError(BinsightError):
    """Inputs the verdicts cannot use (a model of unknown precision, a name given twice, bad JSON)."""


class Status(str, enum.Enum):
    """The status of a comparison, a part or a verdict."""

    HELD = "held"
    NOT_HELD = "not held"
    PARTLY_HELD = "partly held"
    INCONCLUSIVE = "inconclusive"
    NOT_MEASURED = "not measured"


HELD, NOT_HELD, PARTLY_HELD, INCONCLUSIVE, NOT_MEASURED = (Status.HELD, Status.NOT_HELD, Status.PARTLY_HELD,
                                                         Status.INCONCLUSIVE, Status.NOT_MEASURED)

# the readings of a similarity part (binsight.study.inference.scale_free_similarity) and of the convergence
# check (binsight.study.inference.convergence_reading)
from binsight.study.inference import (ALIKE, CANNOT_TELL, DIFFER, MODEL_PROPERTY, MONTE_CARLO,  # noqa: E402
                                      NOT_REPRODUCIBLE, UNDECIDED)


@dataclass(frozen=True)
class ModelInfo:
    """A model of the study as the table names it.

    precision: "fp" or "bnn". group: its seed or group label. surrogate: the sign surrogate its maps were
    computed with ("" for FP, :data:`~binsight.study.names.FOREIGN_SURROGATE` for a BNN whose sign cannot be switched). A BNN explained with another
    surrogate is a variant named ``f"{base}+{surrogate}"``.
    """

    name: str
    precision: str
    group: str = ""
    surrogate: str = ""

    @property
    def is_variant(self) -> bool:
        """Whether this model is a surrogate variant (:func:`binsight.study.names.is_variant`)."""
        return is_variant(self.name)


@dataclass(frozen=True)
class Part:
    """One tested statement: its status, estimate and bound, in a sentence.

    estimate and bound: the interval and the value it is compared with. A similarity part (which
    combines its ``comparisons``, each with its own bound) gives the FP-vs-BNN mean and no bound; a
    faithfulness part gives its comparison with the closest competitor and the margin. reading: what the
    numbers support, where a part has readings (similarity parts, convergence). levels: the means the
    comparisons are made of (e.g. "FP-vs-BNN", "FP", "BNN": their estimates). comparisons: the
    sub-statements a part combines.
    """

    name: str
    question: str
    status: Status
    estimate: Estimate | None
    bound: float | None
    sentence: str
    reading: str = ""
    levels: dict[str, Estimate] = field(default_factory=dict)
    comparisons: tuple["Part", ...] = ()
    p_value: float | None = None


@dataclass(frozen=True)
class Robustness:
    """A verdict recomputed under one alternative setting; ``changed``: its status differs from the verdict's;
    ``secondary``: the row decides on a secondary measure alone (shown; never makes the verdict fragile)."""

    setting: str
    status: Status
    reading: str
    changed: bool
    secondary: bool = False


@dataclass(frozen=True)
class Verdict:
    """One finding of the paper and what the study found.

    status: from its ``primary`` parts (:func:`combine`; the part of the verdict's primary measure, and
    for verdict 3 also its nonsensical part), then Holm's correction across the four findings: a held
    status whose ``adjusted_p`` exceeds (1 - confidence) / 2 becomes inconclusive. The other parts are
    secondary: shown, not deciding. p_value: the one-sided p-value of the primary test (None where none).
    reading: what the numbers support, in a few words. checks: parts shown with the verdict that do not
    decide its status (chance comparisons, controls, convergence, degenerate maps). robustness: the verdict
    under alternative settings; fragile: a row that keeps the primary measure changed its status.
    """

    id: int
    title: str
    finding: str
    status: Status
    parts: tuple[Part, ...]
    reading: str
    sentence: str
    robustness: tuple[Robustness, ...] = ()
    fragile: bool = False
    checks: tuple[Part, ...] = ()
    primary: tuple[str, ...] = ()
    p_value: float | None = None
    adjusted_p: float | None = None


@dataclass(frozen=True)
class PairValue:
    """The mean of one pair measure over the images of one model pair (kind: "fp-bnn", "fp-fp", "bnn-bnn")."""

    method: str
    measure: str
    model: str
    model_b: str
    kind: str
    mean: float
    n_images: int


@dataclass(frozen=True)
class PairAgreement:
    """The fraction of images on which two models predict the same class."""

    model: str
    model_b: str
    fraction: float
    n_images: int


@dataclass(frozen=True)
class Predictions:
    """How often the models predict the same class: all of them (``all_agree``) and pair by pair;
    ``accuracy``: each model's fraction of correct predictions on the explained images."""

    all_agree: float | None
    n_images: int
    pairs: tuple[PairAgreement, ...]
    accuracy: dict[str, float]


@dataclass(frozen=True)
class UndefinedCount:
    """How many values of one measure were undefined (e.g. a correlation with a constant map)."""

    measure: str
    method: str
    model: str
    model_b: str
    count: int


@dataclass(frozen=True)
class StudyVerdicts:
    """Everything verdicts.json holds. ``to_json`` writes strict JSON; ``from_json`` reads it back."""

    verdicts: tuple[Verdict, ...]
    per_pair: tuple[PairValue, ...]
    predictions: Predictions
    undefined: tuple[UndefinedCount, ...]
    settings: VerdictSettings

    def to_json(self) -> str:
        """Strict JSON (no NaN): statuses as their words, estimates as objects."""
        return json.dumps(_encode(self), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "StudyVerdicts":
        """The object :meth:`to_json` wrote; raises :class:`VerdictError` for text that is not one."""
        try:
            return _decode(cls, json.loads(text))
        except (ValueError, TypeError, KeyError) as e:
            raise VerdictError(f"verdicts.json cannot be read ({e}); recompute it with `binsight study`") from None


def _encode(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj):
        return {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(hint: Any, data: Any) -> Any:
    """An instance of type ``hint`` (dataclass, enum, tuple[X, ...], dict[str, X], X | None, scalar)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        return _decode(next(a for a in args if a is not type(None)), data)
    if dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        return hint(**{f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(hint) if f.name in data})
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(data)
    if origin is tuple:
        return tuple(_decode(args[0], v) for v in data)
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in data.items()}
    if hint is float:
        if data is None:
            return float("nan")
        return float(data)
    if hint in (int, str, bool) and not isinstance(data, hint):
        raise TypeError(f"expected {hint.__name__}, got {type(data).__name__}")
    return data
