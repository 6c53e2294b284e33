"""The run folder: everything one study writes, resumable after a stop at any point, never corrupted.

Layout of a run folder::

    run.json             the manifest, written first: {"binsight": "study run", "format", "config_hash",
                         "binsight_version", ...}; its hash guards the folder
    config.toml          the resolved configuration
    .binsight.lock       held (flock) by the process running the study
    models/NAME.safetensors            copies of the checkpoints used; models.json: names, sources, accuracy
    maps/MODEL/METHOD/CHUNK.npz        maps float32 (n, 1, H, W), targets int64 (n,), images int64 (n,)
    curves/MODEL/METHOD/CHUNK.npz      deletion and insertion curves, float64 (n, steps)
    units/KIND/PART/.../PART.csv       the measurement rows of one finished work unit
    corrupt/...          stored units that failed to read or verify, set aside to be recomputed
    measurements.csv     every row of every unit, merged and sorted (see :data:`binsight.study.formats.COLUMNS`);
    measurements.csv.sha256            its checksum (``sha256sum -c`` format)
    verdicts.json, figures/*.png, report.html, timings.json

Records: models.json, images.json and timings.json are written and read here alone, as the typed records
of :mod:`binsight.study.records` (:meth:`RunFolder.write_models` / :meth:`RunFolder.read_models`, ...);
verdicts.json as the verdicts' own JSON (:meth:`RunFolder.write_verdicts`). The rows' and units' file
formats are :mod:`binsight.study.formats`.

Names: a model name follows :func:`binsight.study.names.validate_model_name`; ``BASE+SURROGATE`` names a
BNN explained with another surrogate (:func:`binsight.study.names.variant_name`). Other parts of a path (method labels such as ``captum:IntegratedGradients``) are
escaped reversibly by :func:`encode_part`, one path component each, so two different keys never share a
file. Every path written is checked to lie inside the run folder (:func:`inside`).

Integrity: every file is written atomically (:func:`binsight._io.atomic_path`), and every stored unit
carries a sha256 of its content (an ``_sha256`` member of each ``.npz``; a ``# binsight unit sha256=...``
first line of each unit CSV). A unit that fails to read or verify counts as not done: the runner's
``*_done`` check warns (:class:`CorruptUnitWarning`, naming the file), sets the file aside under
``corrupt/`` and the unit is recomputed. A run killed at any moment loses at most the units it was
writing. ``measurements.csv`` is rebuilt from the verified unit files, sorted, so it never holds a row
twice and does not depend on the order units finished.

Claiming: :meth:`RunFolder.create` takes a folder that does not exist, is empty, or holds a run of the same
configuration (also one killed before its manifest was complete); any other folder is refused before
anything in it is created, changed or deleted.
"""

from __future__ import annotations

import fcntl
import io
import json
import math
import os
import platform
import re
import warnings
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import torch

from binsight import __version__
from binsight._io import atomic_path, atomic_write_text
from binsight.study.config import StudyConfig, config_hash, load_config, to_toml
from binsight.study.errors import CorruptUnit, CorruptUnitWarning, RunFolderError
from binsight.study.formats import (Row, load_npz, read_measurements_file, read_unit, rows_to_csv, save_npz, sha256_text,
                                    try_read, unit_text)
from binsight.study.names import split_variant, validate_model_name
from binsight.study.records import ImageSet, ModelRecord, Timings

FORMAT = 2
"""Version of the run folder's layout; a folder of another format is refused (never half-read)."""
MARKER = "study run"
LOCK_NAME = ".binsight.lock"
MANIFEST = "run.json"
OWN_DIRS = ("maps", "curves", "units", "models", "figures", "corrupt")
"""The run's own subfolders: the only places (with the folder's top level) where leftovers are cleaned."""

_KIND = re.compile(r"[a-z][a-z0-9_-]*")
_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-+")
_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.part")  # the temporary names of binsight._io.atomic_path


# ------------------------------------------------------------------------------------------------------
# names and paths


def encode_part(part: str | int) -> str:
    """One path component for a key part: safe characters kept, anything else (and a leading '.') as
    ``%XX`` of its UTF-8 bytes; an int ``i >= 0`` as ``%04d``. :func:`decode_part` inverts it."""
    if isinstance(part, bool) or not isinstance(part, (str, int)):
        raise TypeError(f"a key part is a str or an int, not {type(part).__name__}")
    if isinstance(part, int):
        if part < 0:
            raise ValueError(f"a key part that is an int must be >= 0, got {part}")
        return f"{part:04d}"
    if not part:
        raise ValueError("a key part must not be empty")
    out = "".join(c if c in _SAFE_CHARS else "".join(f"%{b:02X}" for b in c.encode("utf-8")) for c in part)
    out = "%2E" + out[1:] if out.startswith(".") else out
    if len(out) > 200:
        raise RunFolderError(f"key part {part[:40]!r}...: too long for a file name (at most 200 bytes escaped)")
    return out


def decode_part(text: str) -> str:
    """The key part that :func:`encode_part` wrote as ``text``."""
    return re.sub(r"(?:%[0-9A-F]{2})+", lambda m: bytes.fromhex(m.group().replace("%", "")).decode("utf-8"), text)


def inside(root: str | os.PathLike, *parts: str) -> Path:
    """``root / parts``, after checking that the resolved path (symbolic links followed) lies strictly
    inside the resolved ``root``; raises :class:`RunFolderError` otherwise."""
    base = Path(root)
    path = base.joinpath(*parts)
    real_root, real = base.resolve(), path.resolve()
    if real == real_root or not real.is_relative_to(real_root):
        raise RunFolderError(f"refusing to write {path}: it resolves to {real}, outside the run folder {real_root}")
    return path


# ------------------------------------------------------------------------------------------------------
# the run folder


class RunFolder:
    """A study's output folder. Claim it with :meth:`create` (rank 0 of a run, holding the lock), join a
    claimed one with :meth:`open_for_rank` (the other ranks), or read one with :meth:`existing`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(os.path.abspath(root))
        self._lock_fh: io.TextIOWrapper | None = None

    # -- claiming and opening --------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, config: StudyConfig, *, hash_: str | None = None) -> "RunFolder":
        """Claim ``root`` for running ``config`` and hold its lock until :meth:`close` (or the process ends).

        ``root`` may not exist yet, be empty, or hold a run of the very same configuration (finished,
        stopped, or killed while its manifest was being written). Anything else raises
        :class:`RunFolderError` before a file is created, changed or deleted. Once claimed, the temporary
        files of writes cut short by a kill are removed (top level and the run's own subfolders only).
        """
        folder = cls(root)
        want = hash_ or config_hash(config)
        folder._claimable(want)
        folder._make_root()
        folder._lock()
        try:
            state = folder._claimable(want)  # again, under the lock
            folder._remove_partial_files()
            if state == "new":
                folder._write_manifest(want)
            if not (folder.root / "config.toml").is_file():
                atomic_write_text(folder.path("config.toml"), to_toml(config))
        except BaseException:
            folder.close()
            raise
        return folder

    @classmethod
    def open_for_rank(cls, root: str | os.PathLike, config: StudyConfig, *, hash_: str | None = None) -> "RunFolder":
        """Join a folder that another process (rank 0 of the same job) has claimed with :meth:`create`:
        write units without taking the lock or cleaning anything. Call it after rank 0's create.
        ``hash_``: the configuration's hash where the caller has it (else computed)."""
        folder = cls(root)
        info = folder._manifest()
        if info is None or info.get("config_hash") != (hash_ or config_hash(config)):
            raise RunFolderError(f"{folder.root} has not been claimed for this configuration by rank 0; "
                                 "call RunFolder.create on rank 0 before the other ranks open it")
        return folder

    @classmethod
    def existing(cls, root: str | os.PathLike) -> "RunFolder":
        """An existing run folder, for reading (e.g. to build its report)."""
        folder = cls(root)
        if not folder.root.is_dir() or folder._manifest() is None or not (folder.root / "config.toml").is_file():
            raise RunFolderError(f"{folder.root} is not a study run folder (no run.json and config.toml); "
                                 "run `binsight study --out DIR` first")
        return folder

    def _claimable(self, want: str) -> str:
        """"new" (absent, empty, or only the run's lock and manifest leftovers) or "run" (a run of hash
        ``want``); raises :class:`RunFolderError` for anything else. Reads only."""
        if not self.root.exists():
            self._check_parent()
            return "new"
        if not self.root.is_dir():
            raise RunFolderError(f"--out {self.root} is a file, not a folder; give a new or empty folder")
        if not os.access(self.root, os.R_OK | os.W_OK | os.X_OK):
            raise RunFolderError(f"cannot write to {self.root} (permission denied); give a folder you can write to")
        try:
            names = os.listdir(self.root)
        except OSError as e:
            raise RunFolderError(f"cannot list {self.root} ({e.strerror}); give a new or empty folder") from None
        info = self._manifest() if MANIFEST in names else None
        if info is not None:
            if info.get("config_hash") != want:
                raise RunFolderError(
                    f"{self.root} holds a run of another configuration (hash {info.get('config_hash')}, this one is "
                    f"{want}); results of different configurations are never mixed. Use another --out folder, or "
                    f"rerun with the configuration in {self.root / 'config.toml'}")
            return "run"
        if all(n == LOCK_NAME or _TEMP.fullmatch(n) for n in names) and (not names or LOCK_NAME in names):
            return "new"
        raise RunFolderError(f"{self.root} is not empty and holds no study run ({', '.join(sorted(names)[:3])}, ...); "
                             "give an empty or new folder with --out")

    def _check_parent(self) -> None:
        parent = self.root.parent
        while not parent.exists():
            parent = parent.parent
        if not parent.is_dir():
            raise RunFolderError(f"cannot create {self.root}: {parent} is a file, not a folder")
        if not os.access(parent, os.W_OK | os.X_OK):
            raise RunFolderError(f"cannot create {self.root}: {parent} is not writable; give a folder you can write to")

    def _make_root(self) -> None:
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot create {self.root} ({e.strerror}); give a folder you can write to") from None

    def _manifest(self) -> dict[str, Any] | None:
        """run.json of a binsight run of this format; None where there is none (or it is not binsight's)."""
        try:
            info = json.loads((self.root / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return None
        if not isinstance(info, dict) or not ("config_hash" in info and "binsight_version" in info):
            return None
        if info.get("binsight") != MARKER or info.get("format") != FORMAT:
            raise RunFolderError(f"{self.root} holds a run of another binsight version (run folder format "
                                 f"{info.get('format', 1)}, this version writes {FORMAT}); use a new --out folder")
        return info

    def _write_manifest(self, config_hash_: str) -> None:
        self.write_json(MANIFEST, {"binsight": MARKER, "format": FORMAT, "config_hash": config_hash_,
                                   "binsight_version": __version__})

    # -- the lock ---------------------------------------------------------------------------------------
    def _lock(self) -> None:
        """Hold an exclusive flock on ``.binsight.lock`` (the kernel releases it when the process dies)."""
        try:
            fh = open(self.root / LOCK_NAME, "a+", encoding="utf-8")
        except OSError as e:
            raise RunFolderError(f"cannot write to {self.root} ({e.strerror}); give a folder you can write to") from None
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            fh.seek(0)
            holder = fh.read().strip()
            fh.close()
            raise RunFolderError(f"{self.root} is in use by another running study ({holder or 'unknown process'}); "
                                 "wait for it or use another --out") from None
        fh.truncate(0)
        fh.write(f"pid {os.getpid()} on {platform.node()}\n")
        fh.flush()
        self._lock_fh = fh

    @property
    def locked(self) -> bool:
        """Whether this process holds the folder's lock."""
        return self._lock_fh is not None

    def close(self) -> None:
        """Release the folder's lock (the lock file stays: removing it would race with a new holder)."""
        if self._lock_fh is not None:
            self._lock_fh.close()
            self._lock_fh = None

    def __enter__(self) -> "RunFolder":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _remove_partial_files(self) -> None:
        """Delete the temporary files of writes cut short by a kill: at the top level and inside the run's
        own subfolders (never following a link out of them). Only with the lock held."""
        assert self.locked, "temporary files are removed only by the lock holder"
        tops = [(self.root, [e.name for e in os.scandir(self.root) if e.is_file(follow_symlinks=False)])]
        walks = (os.walk(self.root / d) for d in OWN_DIRS if (self.root / d).is_dir() and not (self.root / d).is_symlink())
        for folder, names in tops + [(Path(top), files) for walk in walks for top, _, files in walk]:
            for name in names:
                if _TEMP.fullmatch(name):
                    (folder / name).unlink(missing_ok=True)

    # -- run.json, config, small JSON files ----------------------------------------------------------------
    def info(self) -> dict[str, Any] | None:
        """Contents of run.json, None for a folder that holds no run yet."""
        return self._manifest()

    def update_info(self, **fields: Any) -> None:
        """Add or replace keys of run.json (e.g. ``provenance=...``); its identity keys stay as they are."""
        info = self._manifest()
        if info is None:
            raise RunFolderError(f"{self.root} holds no run.json; claim the folder with RunFolder.create first")
        fixed = {"binsight", "format", "config_hash", "binsight_version"} & fields.keys()
        if fixed:
            raise ValueError(f"run.json keys {sorted(fixed)} identify the run and are never changed")
        self.write_json(MANIFEST, {**info, **fields})

    def record_provenance(self, device: Any) -> dict[str, Any]:
        """Append this invocation's :func:`provenance` to run.json's ``invocations``; returns it."""
        entry = provenance(device)
        self.update_info(invocations=list((self.info() or {}).get("invocations", [])) + [entry])
        return entry

    def config(self) -> StudyConfig:
        """The run's resolved configuration (config.toml)."""
        return load_config(self.root / "config.toml")

    def path(self, *parts: str) -> Path:
        """``root / parts``, checked to lie inside the run folder (see :func:`inside`)."""
        return inside(self.root, *parts)

    def write_json(self, name: str, data: Any) -> None:
        atomic_write_text(self.path(name), json.dumps(data, indent=2, sort_keys=False) + "\n")

    def read_json(self, name: str) -> Any:
        """The JSON file ``name`` of the run (None where absent); raises :class:`CorruptUnit` if unreadable."""
        path = self.path(name)
        if not path.is_file():
            return None
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise CorruptUnit(path, f"not valid JSON: {e}") from None

    # -- the records: models, images, timings, verdicts ------------------------------------------------------
    def write_models(self, models: Iterable[ModelRecord]) -> None:
        """models.json: every model of the table, base models first, then the surrogate variants."""
        self.write_json("models.json", [m.to_json() for m in models])

    def read_models(self) -> list[ModelRecord] | None:
        """The records of models.json (None where the run has not recorded its models yet)."""
        listed = self.read_json("models.json")
        return None if listed is None else [ModelRecord.from_json(m) for m in listed]

    def write_images(self, images: ImageSet) -> None:
        self.write_json("images.json", images.to_json())

    def read_images(self) -> ImageSet | None:
        recorded = self.read_json("images.json")
        return None if recorded is None else ImageSet.from_json(recorded)

    def write_timings(self, timings: Timings) -> None:
        self.write_json("timings.json", timings.to_json())

    def read_timings(self) -> Timings | None:
        recorded = self.read_json("timings.json")
        return None if recorded is None else Timings.from_json(recorded)

    def write_sanity_layers(self, model: str, layers: Iterable[str]) -> None:
        """sanity_layers_MODEL.json: the layers the cascading randomisation test randomised, in order."""
        self.write_json(f"sanity_layers_{validate_model_name(model)}.json", list(layers))

    def read_sanity_layers(self, model: str) -> list[str] | None:
        return self.read_json(f"sanity_layers_{model}.json")

    def write_verdicts(self, verdicts: Any) -> str:
        """verdicts.json: the verdicts (a :class:`binsight.study.verdicts.StudyVerdicts`) as their strict
        JSON; returns the text written."""
        text = verdicts.to_json()
        atomic_write_text(self.path("verdicts.json"), text)
        return text

    def model_path(self, name: str) -> Path:
        """Where the run keeps its copy of model ``name``'s checkpoint (models/NAME.safetensors)."""
        return self.path("models", f"{validate_model_name(name)}.safetensors")

    # -- maps and curves ------------------------------------------------------------------------------------
    def maps_path(self, model: str, method: str, chunk: int) -> Path:
        return self._chunk_path("maps", model, method, chunk)

    def curves_path(self, model: str, method: str, chunk: int) -> Path:
        return self._chunk_path("curves", model, method, chunk)

    def _chunk_path(self, area: str, model: str, method: str, chunk: int) -> Path:
        split_variant(model)
        return self.path(area, model, encode_part(method), f"{encode_part(int(chunk))}.npz")

    def save_maps(self, model: str, method: str, chunk: int, maps: np.ndarray, targets: np.ndarray, images: np.ndarray) -> None:
        """Write one chunk of maps (n, 1, H, W) with their targets (n,) and dataset indices (n,)."""
        save_npz(self.maps_path(model, method, chunk), maps=np.asarray(maps, np.float32),
                  targets=np.asarray(targets, np.int64), images=np.asarray(images, np.int64))

    def save_curves(self, model: str, method: str, chunk: int, **curves: np.ndarray) -> None:
        save_npz(self.curves_path(model, method, chunk), **curves)

    def maps_done(self, model: str, method: str, chunk: int) -> bool:
        """Whether the chunk is stored and verifies; a corrupt one is reported, set aside and counts as not done."""
        return self._verified(self.maps_path(model, method, chunk), load_npz)

    def curves_done(self, model: str, method: str, chunk: int) -> bool:
        """Like :meth:`maps_done`, for the chunk's deletion / insertion curves."""
        return self._verified(self.curves_path(model, method, chunk), load_npz)

    def load_maps(self, model: str, method: str, chunk: int) -> dict[str, np.ndarray]:
        """One chunk: {"maps", "targets", "images"}; raises :class:`CorruptUnit` if it fails to verify."""
        return load_npz(self.maps_path(model, method, chunk))

    def read_all_maps(self, model: str, method: str) -> dict[str, np.ndarray]:
        """Every verified chunk of ``model`` and ``method``, concatenated in chunk order ({} if none);
        corrupt chunks are skipped with a :class:`CorruptUnitWarning`."""
        return self._read_all("maps", model, method)

    def read_all_curves(self, model: str, method: str) -> dict[str, np.ndarray]:
        """Like :meth:`read_all_maps`, for the curves."""
        return self._read_all("curves", model, method)

    def _read_all(self, area: str, model: str, method: str) -> dict[str, np.ndarray]:
        folder = self._chunk_path(area, model, method, 0).parent
        parts = [p for p in (try_read(load_npz, f) for f in sorted(folder.glob("*.npz"))) if p is not None]
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def save_examples(self, images: np.ndarray, labels: np.ndarray) -> None:
        """A few explained images (E, C, H, W) and labels (E,), so the report needs no dataset."""
        save_npz(self.path("examples.npz"), images=np.asarray(images, np.float32), labels=np.asarray(labels, np.int64))

    # -- work units and the tidy table ----------------------------------------------------------------------
    def unit_path(self, kind: str, parts: tuple[str | int, ...] | str) -> Path:
        """units/KIND/P1/.../PN.csv, each part escaped by :func:`encode_part` (chunks as ints)."""
        if not _KIND.fullmatch(kind):
            raise ValueError(f"unit kind {kind!r}: expected lower-case letters, digits, '_' and '-'")
        names = [encode_part(p) for p in ((parts,) if isinstance(parts, str) else tuple(parts))]
        if not names:
            raise ValueError("a unit key needs at least one part")
        return self.path("units", kind, *names[:-1], f"{names[-1]}.csv")

    def unit_done(self, kind: str, parts: tuple[str | int, ...] | str) -> bool:
        """Whether the unit is stored and verifies; a corrupt one is reported, set aside, and not done."""
        return self._verified(self.unit_path(kind, parts), read_unit)

    def save_unit(self, kind: str, parts: tuple[str | int, ...] | str, rows: Iterable[Row]) -> None:
        """Record a finished unit with its rows (possibly none): the unit is done once this returns.

        Raises RuntimeError (a bug of the caller, nothing written) for a non-finite value: an undefined
        value is written as a ``MEASURE:undefined`` row of value 1.0 instead.
        """
        rows = list(rows)
        bad = next((r for r in rows if not math.isfinite(r.value)), None)
        if bad is not None:
            raise RuntimeError(f"non-finite value in unit {kind} {parts}: {bad}; write a '{bad.measure}:undefined' "
                               "row of value 1.0 instead")
        atomic_write_text(self.unit_path(kind, parts), unit_text(rows))

    def read_rows(self, *, strict: bool = False) -> list[Row]:
        """Every row of every verified unit, sorted (what measurements.csv holds). A corrupt unit raises
        :class:`CorruptUnit` when ``strict``, else it is skipped with a :class:`CorruptUnitWarning`."""
        rows: list[Row] = []
        for path in self._unit_files():
            got = read_unit(path) if strict else try_read(read_unit, path)
            rows.extend(got or [])
        return sorted(rows)

    def _unit_files(self) -> list[Path]:
        top = self.root / "units"
        if not top.is_dir() or top.is_symlink():
            return []
        return sorted(Path(d) / f for d, _, files in os.walk(top) for f in files if f.endswith(".csv") and not f.startswith("."))

    def merge_measurements(self) -> list[Row]:
        """Rebuild measurements.csv (and its .sha256) from the unit files, all verified; returns its rows."""
        rows = self.read_rows(strict=True)
        text = rows_to_csv(rows)
        atomic_write_text(self.path("measurements.csv"), text)
        atomic_write_text(self.path("measurements.csv.sha256"), f"{sha256_text(text)}  measurements.csv\n")
        return rows

    def read_measurements(self) -> list[Row]:
        """Rows of measurements.csv if it verifies against its .sha256; else (not merged yet, cut short,
        edited) the rows of the verified units, with a warning where the file was there but unusable."""
        path = self.root / "measurements.csv"
        if not path.is_file():
            return self.read_rows()
        try:
            return read_measurements_file(path)
        except CorruptUnit as e:
            if not self._unit_files():
                raise
            warnings.warn(f"{path}: {e.reason}; using the rows of the run's units instead", CorruptUnitWarning, stacklevel=2)
            return self.read_rows()

    # -- verification ---------------------------------------------------------------------------------------
    def _verified(self, path: Path, read) -> bool:
        if not path.exists():
            return False
        try:
            read(path)
        except CorruptUnit as e:
            where = self._set_aside(path)
            warnings.warn(f"{path} is corrupt ({e.reason}); moved to {where}, it will be recomputed",
                          CorruptUnitWarning, stacklevel=3)
            return False
        return True

    def _set_aside(self, path: Path) -> Path:
        """Move a corrupt unit (the run's own file) to corrupt/ under its relative path; returns the new place."""
        target = self.path("corrupt", *path.relative_to(self.root).parts)
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
            return target
        except OSError:
            _remove(path)
            return Path("(deleted)")


# ------------------------------------------------------------------------------------------------------
# files


def provenance(device: Any) -> dict[str, Any]:
    """What ran a study: Python, torch, numpy and binsight versions, platform, device (and its name on
    CUDA), torch's intra-op thread count, CUDA and cuDNN versions where present."""
    dev = torch.device(device)
    out: dict[str, Any] = {
        "binsight": __version__, "python": platform.python_version(), "torch": torch.__version__,
        "numpy": np.__version__, "platform": platform.platform(), "device": str(dev),
        "threads": torch.get_num_threads(),
    }
    if dev.type == "cuda" and torch.cuda.is_available():
        out["device_name"] = torch.cuda.get_device_name(dev)
        out["cuda"] = torch.version.cuda
        out["cudnn"] = torch.backends.cudnn.version()
    return out


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        return
    path.unlink(missing_ok=True)
