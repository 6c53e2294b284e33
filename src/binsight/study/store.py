"""The run folder: everything one study writes, resumable after a stop at any point.

Layout of a run folder::

    config.toml          the resolved configuration (its hash, in run.json, guards the folder)
    run.json             {"config_hash", "binsight_version", "images": [dataset indices explained]}
    models/              copies of the checkpoints used; models.json: names, sources, test accuracy
    maps/MODEL/METHOD/CHUNK.npz        maps float32 (n, 1, H, W), targets int64 (n,), images int64 (n,)
    curves/MODEL/METHOD/CHUNK.npz      deletion and insertion curves, float64 (n, steps)
    units/KIND/KEY.csv   the measurement rows of one finished work unit
    measurements.csv     every row of every unit, merged and sorted (see :data:`COLUMNS`)
    verdicts.json, figures/*.png, report.html, timings.json

A work unit (the maps of one model and method on one chunk of images, their measures, one pair of
models' similarities, one sanity check) counts as done only once its file exists, and every file is
written atomically (:func:`binsight._io.atomic_path`): a run killed at any moment loses at most the unit
it was computing, and a rerun skips every unit whose file exists. ``measurements.csv`` is rebuilt from
the unit files, sorted, so it never holds a row twice and does not depend on the order units finished.
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Iterator

import numpy as np

from binsight import __version__
from binsight._io import atomic_path, atomic_write_text
from binsight.study.config import StudyConfig, config_hash, load_config, to_toml

COLUMNS = ("image", "model", "model_b", "method", "measure", "step", "value")
"""Columns of the tidy table. One row per image x model x method x measure.

image: index of the image in the dataset split. model: the model's name (e.g. "fp-0"). model_b: the
second model of a similarity pair ("" otherwise). method: explanation method or baseline map. measure:
e.g. "spearman", "deletion_auc". step: for curves (sanity), the number of layers randomised (1, 2, ...);
0 otherwise. value: float.
"""


class RunFolderError(ValueError):
    """A run folder that cannot be used as asked (another configuration, another run holding it, ...)."""


@dataclass(frozen=True, order=True)
class Row:
    """One measurement; see :data:`COLUMNS`. Field order = sort order of ``measurements.csv``."""

    measure: str
    method: str
    model: str
    model_b: str
    step: int
    image: int
    value: float

    def as_csv(self) -> list[str]:
        fields = {"image": str(self.image), "model": self.model, "model_b": self.model_b, "method": self.method,
                  "measure": self.measure, "step": str(self.step), "value": repr(float(self.value))}
        return [fields[c] for c in COLUMNS]


class RunFolder:
    """A study's output folder. Open it with :meth:`create` (for a run) or :meth:`existing` (to read)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._lock_fh: io.TextIOWrapper | None = None

    # -- opening ------------------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, config: StudyConfig) -> "RunFolder":
        """Open ``root`` for running ``config``: new, or an earlier run of the very same configuration.

        Raises :class:`RunFolderError` when the folder holds another configuration, is a non-empty folder
        that is not a study run, or is being written by another process right now.
        """
        folder = cls(root)
        folder.root.mkdir(parents=True, exist_ok=True)
        folder._lock()
        folder._remove_partial_files()
        want = config_hash(config)
        info = folder.info()
        if info is None:
            others = [p.name for p in folder.root.iterdir() if p.name != ".lock"]
            if others:
                raise RunFolderError(
                    f"{folder.root} is not empty and holds no study run ({', '.join(sorted(others)[:3])}, ...); "
                    "give an empty or new folder with --out"
                )
            atomic_write_text(folder.root / "config.toml", to_toml(config))
            folder.write_json("run.json", {"config_hash": want, "binsight_version": __version__})
        elif info.get("config_hash") != want:
            raise RunFolderError(
                f"{folder.root} holds a run of another configuration (hash {info.get('config_hash')}, "
                f"this one is {want}); results of different configurations are never mixed. Use another "
                f"--out folder, or rerun with the configuration in {folder.root / 'config.toml'}"
            )
        return folder

    @classmethod
    def existing(cls, root: str | os.PathLike) -> "RunFolder":
        """An existing run folder, for reading (e.g. to build its report)."""
        folder = cls(root)
        if not (folder.root / "config.toml").is_file():
            raise RunFolderError(f"{folder.root} is not a study run folder (no config.toml); run `binsight study --out DIR` first")
        return folder

    def _lock(self) -> None:
        """Hold an exclusive lock on the folder for this process's lifetime (released when it exits)."""
        fh = open(self.root / ".lock", "a")
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.close()
            raise RunFolderError(f"{self.root} is in use by another running study; wait for it or use another --out") from None
        self._lock_fh = fh

    def _remove_partial_files(self) -> None:
        """Delete the temporary ``.*.part`` files of writes cut short by a kill (we hold the lock)."""
        for path in self.root.rglob(".*.part"):
            path.unlink(missing_ok=True)

    def close(self) -> None:
        """Release the folder's lock."""
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def info(self) -> dict[str, Any] | None:
        """Contents of run.json, None for a folder that holds no run yet."""
        return self.read_json("run.json")

    def config(self) -> StudyConfig:
        """The run's resolved configuration (config.toml)."""
        return load_config(self.root / "config.toml")

    # -- small JSON files ------------------------------------------------------------------------------
    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.root / name, json.dumps(data, indent=2, sort_keys=False) + "\n")

    def read_json(self, name: str) -> Any:
        path = self.root / name
        return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None

    # -- maps --------------------------------------------------------------------------------------------
    def maps_path(self, model: str, method: str, chunk: int) -> Path:
        return self.root / "maps" / model / method / f"{chunk:04d}.npz"

    def save_maps(self, model: str, method: str, chunk: int, maps: np.ndarray, targets: np.ndarray, images: np.ndarray) -> None:
        """Write one chunk of maps (n, 1, H, W) with their targets (n,) and dataset indices (n,)."""
        _save_npz(self.maps_path(model, method, chunk), maps=maps.astype(np.float32),
                  targets=targets.astype(np.int64), images=images.astype(np.int64))

    def load_maps(self, model: str, method: str, chunk: int) -> dict[str, np.ndarray]:
        """One chunk: {"maps", "targets", "images"}."""
        return _load_npz(self.maps_path(model, method, chunk))

    def read_all_maps(self, model: str, method: str) -> dict[str, np.ndarray]:
        """Every stored chunk of ``model`` and ``method``, concatenated in chunk order ({} if none)."""
        files = sorted((self.root / "maps" / model / method).glob("*.npz"))
        parts = [_load_npz(f) for f in files]
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def save_examples(self, images: np.ndarray, labels: np.ndarray) -> None:
        """A few explained images (E, C, H, W) and labels (E,), so the report needs no dataset."""
        _save_npz(self.root / "examples.npz", images=images.astype(np.float32), labels=labels.astype(np.int64))

    # -- curves ------------------------------------------------------------------------------------------
    def curves_path(self, model: str, method: str, chunk: int) -> Path:
        return self.root / "curves" / model / method / f"{chunk:04d}.npz"

    def save_curves(self, model: str, method: str, chunk: int, **curves: np.ndarray) -> None:
        _save_npz(self.curves_path(model, method, chunk), **curves)

    def read_all_curves(self, model: str, method: str) -> dict[str, np.ndarray]:
        files = sorted((self.root / "curves" / model / method).glob("*.npz"))
        parts = [_load_npz(f) for f in files]
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    # -- work units and the tidy table --------------------------------------------------------------
    def unit_path(self, kind: str, key: str) -> Path:
        return self.root / "units" / kind / f"{key}.csv"

    def unit_done(self, kind: str, key: str) -> bool:
        return self.unit_path(kind, key).is_file()

    def save_unit(self, kind: str, key: str, rows: Iterable[Row]) -> None:
        """Record a finished unit with its rows (possibly none): the unit is done once this returns."""
        atomic_write_text(self.unit_path(kind, key), _rows_to_csv(rows))

    def read_rows(self) -> list[Row]:
        """Every row of every finished unit, sorted (what measurements.csv holds)."""
        rows: list[Row] = []
        for path in sorted((self.root / "units").glob("*/*.csv")):
            rows.extend(_rows_from_csv(path.read_text(encoding="utf-8")))
        return sorted(rows)

    def merge_measurements(self) -> list[Row]:
        """Rebuild measurements.csv from the unit files; returns its rows."""
        rows = self.read_rows()
        atomic_write_text(self.root / "measurements.csv", _rows_to_csv(rows))
        return rows

    def read_measurements(self) -> list[Row]:
        """Rows of measurements.csv, or of the finished units where it has not been merged yet."""
        path = self.root / "measurements.csv"
        return _rows_from_csv(path.read_text(encoding="utf-8")) if path.is_file() else self.read_rows()


def _rows_to_csv(rows: Iterable[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(r.as_csv() for r in rows)
    return buf.getvalue()


def _rows_from_csv(text: str) -> list[Row]:
    reader = csv.DictReader(io.StringIO(text))
    return [Row(measure=d["measure"], method=d["method"], model=d["model"], model_b=d["model_b"],
                step=int(d["step"]), image=int(d["image"]), value=float(d["value"])) for d in reader]


def _save_npz(path: Path, **arrays: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.savez(fh, **arrays)


def _load_npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def iter_chunks(n: int, size: int) -> Iterator[tuple[int, slice]]:
    """(chunk index, slice of positions) covering range(n) in pieces of ``size``."""
    for c, start in enumerate(range(0, n, size)):
        yield c, slice(start, min(start + size, n))
