"""Everything the report shows, read once from a run folder (see :mod:`binsight.study.store` for its layout).

:class:`Table` holds ``measurements.csv`` as columns (numpy arrays), so that figures select rows with
vectorised masks instead of looping over row objects. Only the maps of the example images are read (the
first chunk files of each model and method), and each curve file is read once.
"""

from __future__ import annotations

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
from binsight.study.errors import CorruptUnit
from binsight.study.formats import COLUMNS, Row
from binsight.study.store import RunFolder, decode_part
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
    """Read what the report needs from ``folder``; ``examples``: how many example images to keep."""
    root = folder.root
    config_text = (root / "config.toml").read_text(encoding="utf-8")
    models = folder.read_models() or []
    rows = folder.read_measurements()
    data = RunData(
        folder=folder, config_text=config_text, config=tomllib.loads(config_text), models=models,
        images=folder.read_images(), rows=rows, table=Table.from_rows(rows), timings=folder.read_timings(),
        complete=(root / "verdicts.json").is_file(),
    )
    data.examples = _read_examples(root, examples)
    data.sanity_layers = {m.name: layers for m in models if (layers := folder.read_sanity_layers(m.name))}
    return data


def read_verdicts(path: Path) -> tuple[StudyVerdicts | None, str]:
    """(the verdicts in ``path``, "") or (None, why not); the reason is "" when the file does not exist."""
    if not path.is_file():
        return None, ""
    try:
        return StudyVerdicts.from_json(path.read_text(encoding="utf-8")), ""
    except ValueError as e:  # VerdictError (a BinsightError): names the problem and what to do
        return None, str(e)


def _read_examples(root: Path, n: int) -> dict[str, np.ndarray]:
    """{"images": (E, C, H, W), "labels": (E,)} from examples.npz; {} when the run has not written it."""
    path = root / "examples.npz"
    if not path.is_file():
        return {}
    with np.load(path, allow_pickle=False) as stored:
        return {"images": stored["images"][:n], "labels": stored["labels"][:n]}


def example_maps(folder: RunFolder, model: str, method: str, indices: list[int]) -> np.ndarray | None:
    """The maps (len(indices), H, W) of ``model`` and ``method`` for the dataset images ``indices``.

    Reads (and verifies) chunk files in order only until every wanted image is found (the example images
    are the study's first images, so usually one file). None when any of them is missing.
    """
    found: dict[int, np.ndarray] = {}
    wanted = set(indices)
    for path in sorted(folder.maps_path(model, method, 0).parent.glob("*.npz")):
        try:
            chunk = folder.load_maps(model, method, int(path.stem))
        except (CorruptUnit, ValueError):
            continue
        for image, m in zip(chunk["images"].tolist(), chunk["maps"]):
            if image in wanted:
                found[image] = m[0]
        if len(found) == len(wanted):
            return np.stack([found[i] for i in indices])
    return None


def mean_curves(folder: RunFolder, model: str, method: str) -> dict[str, np.ndarray]:
    """{"fractions": (S,), kind: mean curve (S,) for each stored kind (deletion, insertion, ...), "n": images}."""
    stored = folder.read_all_curves(model, method)
    kinds = {k: np.asarray(v, dtype=np.float64) for k, v in stored.items() if k != "fractions" and np.ndim(v) == 2}
    if not kinds or "fractions" not in stored:
        return {}
    steps = min(v.shape[1] for v in kinds.values())
    n = min(v.shape[0] for v in kinds.values())
    return {"fractions": np.asarray(stored["fractions"][:steps], dtype=np.float64), "n": np.array(n),
            **{k: v[:, :steps].mean(axis=0) for k, v in kinds.items()}}


def stored_methods(folder: RunFolder) -> list[str]:
    """Method labels that have a maps folder for some model (decoded from their folder names)."""
    top = folder.root / "maps"
    return sorted({decode_part(d.name) for d in top.glob("*/*") if d.is_dir()}) if top.is_dir() else []
