"""The run's records: models.json, images.json, interventions.json (planted data), timings.json,
sanity_layers_MODEL.json, verdicts.json, examples.npz and the model copies under models/, written and read
here alone as the typed records of :mod:`binsight.study.records` (interventions.json: of
:mod:`binsight.metrics.evidence`).

Every record is checked when read: the JSON ones by shape (``from_json`` refuses a wrong type or a
missing key), examples.npz by its checksum. A damaged record never blocks a run: read by the process
that holds the folder (``repair``), it is set aside under ``corrupt/`` with a warning and read as absent,
so the stage that writes it writes it again; read for a report, it is skipped with a warning.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, TypeVar

import numpy as np

from binsight.metrics.evidence import InterventionResult
from binsight.study.errors import CorruptUnit, CorruptUnitWarning
from binsight.study.files import RunFiles, parse_json
from binsight.study.formats import npz_bytes, parse_npz
from binsight.study.names import split_variant, validate_model_name
from binsight.study.records import ImageSet, ModelRecord, Timings, model_records, sanity_layers

T = TypeVar("T")


def intervention_results(value: Any) -> dict[str, InterventionResult]:
    """interventions.json's object as {model name: InterventionResult}; TypeError for another shape."""
    if not isinstance(value, dict):
        raise TypeError("expected an object of model names")
    return {validate_model_name(name): InterventionResult.from_json(record) for name, record in value.items()}
EXAMPLES = "examples.npz"


class RecordStore:
    """The records of a run folder; ``repair``: set a damaged record aside (the folder's lock holder)."""

    def __init__(self, files: RunFiles, *, repair: bool):
        self.files, self.repair = files, repair

    def write_models(self, models: Iterable[ModelRecord]) -> None:
        """models.json: every model of the table, base models first, then the surrogate variants."""
        self.files.write_json("models.json", [m.to_json() for m in models])

    def read_models(self) -> list[ModelRecord] | None:
        """The records of models.json (None where the run has not recorded its models yet, or it is damaged)."""
        return self._read("models.json", model_records)

    def write_images(self, images: ImageSet) -> None:
        self.files.write_json("images.json", images.to_json())

    def read_images(self) -> ImageSet | None:
        return self._read("images.json", ImageSet.from_json)

    def write_timings(self, timings: Timings) -> None:
        self.files.write_json("timings.json", timings.to_json())

    def read_timings(self) -> Timings | None:
        return self._read("timings.json", Timings.from_json)

    def write_interventions(self, results: dict[str, InterventionResult]) -> None:
        """interventions.json: each base model's intervention test on planted data (model name ->
        :class:`binsight.metrics.evidence.InterventionResult`)."""
        self.files.write_json("interventions.json", {name: r.to_json() for name, r in results.items()})

    def read_interventions(self) -> dict[str, InterventionResult] | None:
        """The results of interventions.json by model name (None where absent or damaged)."""
        return self._read("interventions.json", intervention_results)

    def write_sanity_layers(self, model: str, layers: Iterable[str]) -> None:
        """sanity_layers_MODEL.json: the layers the cascading randomisation test randomised, in order."""
        self.files.write_json(f"sanity_layers_{validate_model_name(model)}.json", list(layers))

    def read_sanity_layers(self, model: str) -> list[str] | None:
        split_variant(model)
        return self._read(f"sanity_layers_{model}.json", sanity_layers)

    def write_verdicts(self, verdicts: Any) -> str:
        """verdicts.json: the verdicts (a :class:`binsight.study.verdicts.StudyVerdicts`) as their strict
        JSON; returns the text written."""
        text = verdicts.to_json()
        self.files.write_text("verdicts.json", text)
        return text

    def read_verdicts_text(self) -> str | None:
        """The text of verdicts.json (None where absent); :class:`CorruptUnit` where it is not UTF-8 text."""
        data = self.files.read_bytes("verdicts.json")
        if data is None:
            return None
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorruptUnit(self.files.path("verdicts.json"), f"not UTF-8 text ({e.reason})") from None

    def save_examples(self, images: np.ndarray, labels: np.ndarray, masks: np.ndarray | None = None) -> None:
        """A few explained images (E, C, H, W) and labels (E,), and their masks (E, 1, H, W) where the
        dataset has them (the planted windows of a planted dataset), so the report needs no dataset."""
        arrays = {"images": np.asarray(images, np.float32), "labels": np.asarray(labels, np.int64)}
        if masks is not None:
            arrays["masks"] = np.asarray(masks, bool)
        self.files.write_bytes(EXAMPLES, npz_bytes(EXAMPLES, arrays))

    def read_examples(self, n: int) -> dict[str, np.ndarray]:
        """{"images": (E, C, H, W), "labels": (E,)} and "masks" (E, 1, H, W) where saved, the first ``n``,
        verified; {} where absent or damaged."""
        found = self._read(EXAMPLES, dict, parse=lambda path, data: parse_npz(path, data, EXAMPLES))
        if not found:
            return {}
        images, labels = found.get("images"), found.get("labels")
        if images is None or labels is None or images.ndim != 4 or labels.ndim != 1 or len(images) != len(labels):
            warnings.warn(f"{self.files.path(EXAMPLES)} does not hold images (E, C, H, W) and labels (E,); the "
                          "report shows no example images", CorruptUnitWarning, stacklevel=2)
            return {}
        masks = found.get("masks")
        kept = {"masks": masks[:n]} if masks is not None and masks.shape[0] == len(images) else {}
        return {"images": images[:n], "labels": labels[:n], **kept}

    def model_path(self, name: str) -> Path:
        """Where the run keeps its copy of model ``name``'s checkpoint (models/NAME.safetensors)."""
        return self.files.path("models", f"{validate_model_name(name)}.safetensors")

    def _read(self, name: str, shape: Callable[[Any], T],
              parse: Callable[[Path, bytes], Any] = parse_json) -> T | None:
        """Record ``name`` parsed (JSON by default) and checked by ``shape`` (which raises ValueError or
        TypeError for a wrong shape); None where absent, or damaged (set aside, or skipped, with a warning).
        A FIFO or folder under the record's name is refused (:class:`~binsight.study.errors.RunFolderError`)."""
        path = self.files.path(name)
        try:
            data = self.files.read_bytes(path)
            if data is None:
                return None
            value = parse(path, data)
        except CorruptUnit as e:
            reason = e.reason
        else:
            try:
                return shape(value)
            except (ValueError, TypeError, KeyError) as e:
                reason = f"not the shape binsight writes: {str(e)[:160]}"
        if self.repair:
            self.files.set_aside(path, reason)
        else:
            warnings.warn(f"{path} is damaged ({reason}); left out (run `binsight study` on this folder again to "
                          "recompute it)", CorruptUnitWarning, stacklevel=3)
        return None
