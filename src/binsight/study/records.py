"""One typed record per concept of a run folder: the models (models.json), the images (images.json) and the
stage times (timings.json). :class:`binsight.study.store.RunFolder` alone writes and reads them; the
runner, the report and the findings hold these records, never the files' dicts.

Each record's ``to_json`` gives the file's dict with its keys in the order they have always been written
(so the files stay byte for byte as they were), and ``from_json`` reads one back (a key an older run lacks
keeps its default). ``from_json`` checks the shape: a value of the wrong type, a missing required key or a
number that is not finite raises ValueError or TypeError saying which (the store sets such a record aside).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from binsight.study.names import is_variant, split_variant

OWN_KIND = "own"
"""``kind`` of a user's own model (built by its own factory); the others are ``"binsight"`` checkpoints."""
_OWN_ONLY = ("factory", "kwargs", "weights_sha256", "sign", "switchable", "normalisation")
_TYPES: dict[str, tuple[type, ...]] = {
    "name": (str,), "precision": (str,), "group": (str,), "surrogate": (str,), "kind": (str,), "seed": (int, type(None)),
    "arch": (str,), "checkpoint": (str,), "source": (str,), "trained_here": (bool,), "accuracy": (float, int, type(None)),
    "accuracy_images": (int,), "surrogate_trained": (str, type(None)), "first_last_fp": (bool, type(None)),
    "epochs": (int, type(None)), "factory": (str,), "kwargs": (dict,), "sign": (str,), "switchable": (bool,),
    "base": (str,), "weights_sha256": (str,), "no_gradient": (bool,)}
"""The JSON types of models.json's keys (``gradcam_layer`` and ``normalisation`` may be of several shapes)."""
_ORDER = ("name", "precision", "seed", "group", "arch", "kind", "factory", "kwargs", "checkpoint", "weights_sha256",
          "source", "trained_here", "accuracy", "accuracy_images", "surrogate_trained", "surrogate", "sign",
          "switchable", "no_gradient", "gradcam_layer", "normalisation", "first_last_fp", "epochs", "base")


@dataclass(frozen=True)
class ModelRecord:
    """A model of the run's table, as models.json lists it.

    name: its table name (``BASE+SURROGATE`` for a surrogate variant). precision: "fp" or "bnn". seed:
    the training seed (None for a given model). group: its seed or position, as a string. arch: the
    network's name. kind: "binsight" (a binsight checkpoint) or "own" (built by the user's factory).
    checkpoint: its copy in the run folder (relative path). source: where it came from. trained_here:
    trained by this study. accuracy, accuracy_images: top-1 accuracy on that many images of the split.
    surrogate_trained: the sign surrogate it was trained with (None for FP and own models). surrogate: the
    one its maps are computed with ("" for FP). gradcam_layer: the layer GradCAM uses (None: the
    model's default). first_last_fp, epochs: the training recipe (None where not trained by binsight).
    no_gradient: its backward pass carries no gradient to the input (e.g. a BNN binarizing with torch.sign),
    so its Gradient and SmoothGrad maps are all zero (written only when true). Own models only: factory,
    kwargs, weights_sha256 (of the copy in the run folder, checked when a stopped run continues), sign (the
    surrogate its sign uses backward), switchable, normalisation (mean and std, or "inside"). base: the
    base model of a variant ("" otherwise).
    """

    name: str
    precision: str
    group: str
    surrogate: str
    kind: str = "binsight"
    seed: int | None = None
    arch: str = ""
    checkpoint: str = ""
    source: str = ""
    trained_here: bool = False
    accuracy: float | None = None
    accuracy_images: int = 0
    surrogate_trained: str | None = None
    gradcam_layer: Any = None
    first_last_fp: bool | None = None
    epochs: int | None = None
    factory: str = ""
    kwargs: dict[str, Any] = field(default_factory=dict)
    sign: str = ""
    switchable: bool = False
    normalisation: Any = None
    base: str = ""
    weights_sha256: str = ""
    no_gradient: bool = False

    @property
    def is_variant(self) -> bool:
        """Whether this is a BNN explained with another surrogate (not a model of the default set)."""
        return is_variant(self.name)

    @property
    def is_own(self) -> bool:
        return self.kind == OWN_KIND

    def variant(self, name: str, surrogate: str) -> "ModelRecord":
        """The record of this model explained with ``surrogate`` under the table name ``name``."""
        return dataclasses.replace(self, name=name, surrogate=surrogate, base=self.name)

    def to_json(self) -> dict[str, Any]:
        """models.json's entry: the own-model keys only for an own model, ``base`` only for a variant,
        ``no_gradient`` only when true."""
        skip = set() if self.is_own else set(_OWN_ONLY)
        if not self.base:
            skip.add("base")
        if not self.no_gradient:
            skip.add("no_gradient")
        return {key: getattr(self, key) for key in _ORDER if key not in skip}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ModelRecord":
        checked(data, "a model of models.json", _TYPES, required=("name", "precision"))
        split_variant(data["name"])
        known = {f.name for f in dataclasses.fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values.setdefault("group", "")
        values.setdefault("surrogate", "")
        return cls(**values)


@dataclass(frozen=True)
class ImageSet:
    """The explained images, as images.json records them: dataset, split and where it was read from,
    how many, the sha256 of their pixels and labels, whether they have object masks, the class names and
    the images' indices in the split (sorted)."""

    dataset: str
    split: str
    source: str
    n: int
    checksum: str
    has_masks: bool
    classes: tuple[str, ...]
    indices: tuple[int, ...]

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "split": self.split, "source": self.source, "n": self.n,
                "checksum": self.checksum, "has_masks": self.has_masks, "classes": list(self.classes),
                "indices": list(self.indices)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "ImageSet":
        checked(data, "images.json", {"dataset": (str,), "split": (str,), "source": (str,), "n": (int,),
                                      "checksum": (str,), "has_masks": (bool,), "classes": (list,), "indices": (list,)},
                required=("indices",))
        if not all(isinstance(c, str) for c in data.get("classes", [])):
            raise TypeError("images.json: classes must be a list of names")
        if not all(isinstance(i, int) and 0 <= i < 2**63 for i in data["indices"]):
            raise TypeError("images.json: indices must be a list of image indices (integers >= 0)")
        return cls(dataset=data.get("dataset", ""), split=data.get("split", ""), source=data.get("source", ""),
                   n=int(data.get("n", len(data.get("indices", [])))), checksum=data.get("checksum", ""),
                   has_masks=bool(data.get("has_masks", False)), classes=tuple(data.get("classes", ())),
                   indices=tuple(int(i) for i in data.get("indices", ())))


@dataclass
class Timings:
    """timings.json: this invocation's wall seconds per stage (``stages``, of rank 0) and CPU seconds
    (``cpu``, of rank 0's process; ``cpu_by_method``: maps and measures per method), the processes that
    ran it (``ranks``), the earlier invocations' stages (``history``) and this invocation's images through
    the models per stage and kind, over all ranks (``passes``: "forward", "forward_backward")."""

    stages: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)
    ranks: int = 1
    cpu_by_method: dict[str, float] = field(default_factory=dict)
    history: list[dict[str, float]] = field(default_factory=list)
    passes: dict[str, dict[str, float]] = field(default_factory=dict)

    def add_passes(self, name: str, counts: dict[str, float]) -> None:
        """Add a stage's images through the models, kind -> images summed over the ranks
        (:mod:`binsight.study.passes`), to ``passes`` (this invocation's)."""
        into = self.passes.setdefault(name, {})
        for kind, n in counts.items():
            into[kind] = into.get(kind, 0.0) + float(n)

    def add_stage(self, name: str, wall: float, cpu: float) -> None:
        self.stages[name] = self.stages.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu

    def add_method_cpu(self, name: str, cpu: float) -> None:
        self.cpu_by_method[name] = self.cpu_by_method.get(name, 0.0) + cpu

    def continued(self, earlier: "Timings | None") -> "Timings":
        """These timings with ``earlier``'s invocations (its history, then its stages) as history."""
        if earlier is not None:
            self.history = list(earlier.history) + ([earlier.stages] if earlier.stages else [])
        return self

    def to_json(self) -> dict[str, Any]:
        return {"stages": self.stages, "cpu": self.cpu, "ranks": self.ranks, "cpu_by_method": self.cpu_by_method,
                "history": self.history, "passes": self.passes}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "Timings":
        checked(data, "timings.json", {"stages": (dict,), "cpu": (dict,), "ranks": (int,), "cpu_by_method": (dict,),
                                       "history": (list,), "passes": (dict,)}, required=("stages",))
        for key in ("stages", "cpu", "cpu_by_method"):
            seconds(data.get(key, {}), f"timings.json: {key}")
        for entry in data.get("history", []):
            seconds(entry, "timings.json: history")
        return cls(stages=dict(data.get("stages") or {}), cpu=dict(data.get("cpu") or {}),
                   ranks=int(data.get("ranks", 1)), cpu_by_method=dict(data.get("cpu_by_method") or {}),
                   history=list(data.get("history", [])), passes=_passes(data.get("passes", {})))


def model_records(data: Any) -> list[ModelRecord]:
    """The records of models.json's list; TypeError or ValueError for another shape."""
    if not isinstance(data, list):
        raise TypeError(f"models.json: expected a list of models, got {type(data).__name__}")
    return [ModelRecord.from_json(m) for m in data]


def sanity_layers(data: Any) -> list[str]:
    """The layer names of a sanity_layers_MODEL.json; TypeError for another shape."""
    if not isinstance(data, list) or not all(isinstance(name, str) for name in data):
        raise TypeError(f"expected a list of layer names, got {type(data).__name__}")
    return data


def checked(data: Any, what: str, types: dict[str, tuple[type, ...]], required: tuple[str, ...] = ()) -> dict:
    """``data`` if it is a JSON object whose keys in ``types`` have one of their types (a number finite), with
    every ``required`` key; TypeError or ValueError naming ``what`` and the key otherwise."""
    if not isinstance(data, dict):
        raise TypeError(f"{what}: expected an object, got {type(data).__name__}")
    missing = [k for k in required if k not in data]
    if missing:
        raise ValueError(f"{what}: no {missing[0]!r}")
    for key, allowed in types.items():
        if key not in data:
            continue
        value = data[key]
        if not isinstance(value, allowed) or (isinstance(value, bool) and bool not in allowed):
            raise TypeError(f"{what}: {key!r} is {type(value).__name__}, expected {' or '.join(t.__name__ for t in allowed)}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{what}: {key!r} is {value}, not a finite number")
    return data


def seconds(data: Any, what: str) -> None:
    """Check that ``data`` is {name: finite seconds}; TypeError or ValueError naming ``what`` otherwise."""
    if not isinstance(data, dict):
        raise TypeError(f"{what}: expected an object of seconds, got {type(data).__name__}")
    for name, value in data.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ValueError(f"{what}: {name!r} is {str(value)[:40]}, not a number of seconds")


def _passes(data: Any) -> dict[str, dict[str, float]]:
    """timings.json's ``passes``: stage -> {kind: images >= 0}."""
    out = {}
    for stage, counts in data.items():
        if not isinstance(counts, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v >= 0
                                                   for v in counts.values()):
            raise ValueError(f"timings.json: passes of {stage!r} must map each kind of pass to a count of images")
        out[str(stage)] = {str(k): float(v) for k, v in counts.items()}
    return out
