"""Everything the report shows, read once from a run folder (see :mod:`binsight.study.store` for its layout).

:class:`Table` holds ``measurements.csv`` as columns (numpy arrays), so that figures select rows with
vectorised masks instead of looping over row objects. Only the maps of the example images are read (the
first chunk files of each model and method), and each curve file is read once.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from binsight.study.names import UNDEFINED
from binsight.study.records import ImageSet, ModelRecord, Timings
from binsight.study.errors import CorruptUnit, CorruptUnitWarning, RunFolderError
from binsight.study.formats import COLUMNS, Row
from binsight.study.store import RunFolder
from binsight.study.verdicts import StudyVerdicts

__all__ = ["UNDEFINED", "Table", "RunData", "load_run", "read_verdicts", "example_maps", "mean_curves", "stored_methods"]


class Table:
    """The tidy table as columns: measure, method, model, model_b (str arrays), step, image (int), value (float)."""

    def __init__(self, columns: dict[str, np.ndarray]):
        self.columns = columns

    @classmethod
    def from_rows(cls, rows: Sequence[Row]) -> "Table":
        return cls({c: _column(c, [getattr(r, c) for r in rows]) for c in COLUMNS})

    @classmethod
    def empty(cls) -> "Table":
        return cls({c: _column(c, ()) for c in COLUMNS})

    def __len__(self) -> int:
        return int(self.columns["value"].size)

    def __getitem__(self, name: str) -> np.ndarray:
        return self.columns[name]

    def where(self, mask: np.ndarray | None = None, **equal: Any) -> "Table":
        """The rows where ``mask`` holds and every column named in ``equal`` equals its value."""
        keep = np.ones(len(self), dtype=bool) if mask is None else mask.copy()
        for name, value in equal.items():
            keep &= self.columns[name] == value
        return Table({c: v[keep] for c, v in self.columns.items()})

    def unique(self, name: str) -> list:
        return list(dict.fromkeys(self.columns[name].tolist()))

    def split(self, name: str) -> dict[Any, "Table"]:
        """{value: the rows with that value of column ``name``}, values in sorted order."""
        values, inverse = np.unique(self.columns[name], return_inverse=True)
        order = np.argsort(inverse, kind="stable")
        bounds = np.searchsorted(inverse[order], np.arange(values.size + 1))
        return {values[i].item(): Table({c: v[order[bounds[i]:bounds[i + 1]]] for c, v in self.columns.items()})
                for i in range(values.size)}


def _column(name: str, values) -> np.ndarray:
    if name in ("step", "image"):
        return np.asarray(values, dtype=np.int64)
    if name == "value":
        return np.asarray(values, dtype=np.float64)
    return np.asarray(values, dtype=str)


@dataclass
class RunData:
    """A run folder's contents as the report needs them (every field may be empty for a partial run)."""

    folder: RunFolder
    config_text: str
    config: dict[str, Any]
    models: list[ModelRecord]
    images: ImageSet | None
    rows: list[Row]
    table: Table
    timings: Timings | None
    complete: bool
    examples: dict[str, np.ndarray] = field(default_factory=dict)
    sanity_layers: dict[str, list[str]] = field(default_factory=dict)

    @property
    def root(self) -> Path:
        return self.folder.root

    @property
    def base_models(self) -> list[str]:
        """Models of the default set (not the ``base+surrogate`` robustness variants)."""
        return [m.name for m in self.models if not m.is_variant]

    @property
    def precisions(self) -> dict[str, str]:
        return {m.name: m.precision or "?" for m in self.models}

    def model(self, name: str) -> ModelRecord | None:
        """The record of model ``name`` (None where models.json does not list it)."""
        return next((m for m in self.models if m.name == name), None)

    def setting(self, *path: str, default: Any = None) -> Any:
        """A value of config.toml, e.g. ``setting("methods", "neuromask", "iterations")``."""
        node: Any = self.config
        for key in path:
            if not isinstance(node, dict) or key not in node:
                return default
            node = node[key]
        return node


def load_run(folder: RunFolder, *, examples: int) -> RunData:
    """Read what the report needs from ``folder``; ``examples``: how many example images to keep.

    config.toml must be the configuration of the run's results (:meth:`RunFolder.config`, else a
    one-line error); a damaged record is left out with a warning (a partial report).
    """
    folder.config()
    config_text = folder.config_text()
    models = folder.records.read_models() or []
    rows = folder.units.read_table()
    data = RunData(
        folder=folder, config_text=config_text, config=tomllib.loads(config_text), models=models,
        images=folder.records.read_images(), rows=rows, table=Table.from_rows(rows),
        timings=folder.records.read_timings(), complete=folder.files.exists("verdicts.json"),
    )
    data.examples = folder.records.read_examples(examples)
    data.sanity_layers = {m.name: layers for m in models if (layers := folder.records.read_sanity_layers(m.name))}
    return data


def read_verdicts(folder: RunFolder) -> tuple[StudyVerdicts | None, str]:
    """(the verdicts in the folder's verdicts.json, "") or (None, why not); the reason is "" when the file
    does not exist. A damaged file (not UTF-8, not the verdicts' JSON, of another shape) is a reason, given
    as a warning too, not an error; one that is not a regular file is refused (:class:`RunFolderError`)."""
    try:
        text = folder.records.read_verdicts_text()
        if text is None:
            return None, ""
        return StudyVerdicts.from_json(text), ""
    except CorruptUnit as e:
        problem = str(e)
    except RunFolderError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError, RecursionError) as e:  # VerdictError names the problem
        reason = str(e) if isinstance(e, ValueError) else f"not the verdicts' JSON ({type(e).__name__}: {str(e)[:120]})"
        problem = f"{folder.root / 'verdicts.json'}: {reason}; run `binsight study` on this folder again to recompute it"
    warnings.warn(problem, CorruptUnitWarning, stacklevel=2)
    return None, problem


def example_maps(folder: RunFolder, model: str, method: str, indices: list[int]) -> np.ndarray | None:
    """The maps (len(indices), H, W) of ``model`` and ``method`` for the dataset images ``indices``.

    Reads (and verifies) chunk files in order only until every wanted image is found (the example images
    are the study's first images, so usually one file). None when any of them is missing.
    """
    found: dict[int, np.ndarray] = {}
    wanted = set(indices)
    for path in folder.maps.chunk_files(model, method):
        try:
            chunk = folder.maps.read(path)
            pairs = list(zip(chunk["images"].tolist(), chunk["maps"]))
        except (CorruptUnit, KeyError):
            continue
        for image, m in pairs:
            if image in wanted and np.ndim(m) == 3:
                found[image] = m[0]
        if len(found) == len(wanted):
            return np.stack([found[i] for i in indices])
    return None


def mean_curves(folder: RunFolder, model: str, method: str) -> dict[str, np.ndarray]:
    """{"fractions": (S,), kind: mean curve (S,) for each stored kind (deletion, insertion, ...), "n": images}."""
    stored = folder.curves.read_all(model, method)
    kinds = {k: np.asarray(v, dtype=np.float64) for k, v in stored.items() if k != "fractions" and np.ndim(v) == 2}
    if not kinds or "fractions" not in stored:
        return {}
    steps = min(v.shape[1] for v in kinds.values())
    n = min(v.shape[0] for v in kinds.values())
    return {"fractions": np.asarray(stored["fractions"][:steps], dtype=np.float64), "n": np.array(n),
            **{k: v[:, :steps].mean(axis=0) for k, v in kinds.items()}}


def stored_methods(folder: RunFolder) -> list[str]:
    """Method labels that have a maps folder for some model (decoded from their folder names)."""
    return folder.maps.methods()
