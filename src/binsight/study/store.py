"""The run folder: everything one study writes, resumable after a stop at any point, never corrupted.

Layout of a run folder::

    run.json             the manifest, written first: {"binsight": "study run", "format", "config_hash",
                         "binsight_version", ...}; its hash guards the folder
    config.toml          the resolved configuration (checked against run.json's hash when read)
    .binsight.lock       held (flock) by the process running the study
    models/NAME.safetensors            copies of the checkpoints used; models.json: names, sources, accuracy
    maps/MODEL/METHOD/CHUNK.npz        maps float32 (n, 1, H, W), targets int64 (n,), images int64 (n,)
    curves/MODEL/METHOD/CHUNK.npz      deletion and insertion curves, float64 (n, steps)
    units/KIND/PART/.../PART.csv       the measurement rows of one finished work unit
    corrupt/...          stored files that failed to read or verify, set aside to be recomputed
    measurements.csv     every row of every unit, merged and sorted (see :data:`binsight.study.formats.COLUMNS`);
    measurements.csv.sha256            its checksum (``sha256sum -c`` format)
    verdicts.json, figures/*.png, report.html, timings.json, images.json, examples.npz

A :class:`RunFolder` is the claimed folder (its lock, manifest and configuration) and holds one object
per job, each used where it is needed:

- ``files`` (:class:`~binsight.study.files.RunFiles`): the one guarded reader and writer; every path
  checked to stay inside the folder (links followed only where they stay inside), only regular files read,
  write failures as one-line errors;
- ``maps``, ``curves`` (:class:`~binsight.study.chunks.ChunkStore`): the checksummed ``.npz`` chunks;
- ``units`` (:class:`~binsight.study.units.UnitStore`): the checksummed unit CSVs and measurements.csv;
- ``records`` (:class:`~binsight.study.record_store.RecordStore`): models.json, images.json,
  timings.json, verdicts.json, examples.npz, the model copies.

Names: a model name follows :func:`binsight.study.names.validate_model_name`; ``BASE+SURROGATE`` names a
BNN explained with another surrogate (:func:`binsight.study.names.variant_name`). Other parts of a path
(method labels such as ``captum:IntegratedGradients``) are escaped reversibly by
:func:`~binsight.study.files.encode_part`, one path component each, so two different keys never share a file.

Integrity: every file is written atomically, and every stored unit carries a sha256 of its key and content.
A unit or record that fails to read or verify is reported by path (:class:`CorruptUnitWarning`), set aside
under ``corrupt/`` and recomputed. A run killed at any moment loses at most the units it was writing.

Claiming: :meth:`RunFolder.create` takes a folder that does not exist, is empty, or holds a run of the same
configuration (also one killed before its manifest was complete); any other folder is refused before
anything in it is created, changed or deleted.
"""

from __future__ import annotations

import dataclasses
import fcntl
import io
import os
import platform
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from binsight import __version__
from binsight.errors import BinsightError
from binsight.study.chunks import ChunkStore
from binsight.study.config import ConfigError, StudyConfig, config_hash, load_config, to_toml
from binsight.study.errors import CorruptUnit, CorruptUnitWarning, RunFolderError
from binsight.study.files import RunFiles, decode_part, encode_part, inside
from binsight.study.formats import Row
from binsight.study.record_store import RecordStore
from binsight.study.units import UnitStore

__all__ = ["RunFolder", "FolderLock", "RunFolderError", "CorruptUnit", "CorruptUnitWarning", "Row", "encode_part",
           "decode_part", "inside", "provenance", "FORMAT"]

FORMAT = 3
"""Version of the run folder's layout; a folder of another format is refused (never half-read). 3: the
checksums of stored units cover their keys."""
MARKER = "study run"
LOCK_NAME = ".binsight.lock"
MANIFEST = "run.json"
CONFIG = "config.toml"
AUTO_DEVICES = ("cpu", "cuda")
"""What ``run.device = "auto"`` resolves to (its hash is taken with the resolved device)."""
OWN_DIRS = ("maps", "curves", "units", "models", "figures", "corrupt")
"""The run's own subfolders: the only places (with the folder's top level) where leftovers are cleaned."""

_TEMP = re.compile(r"\..+\.[a-z0-9_]{8}\.part")  # the temporary names of binsight._io.atomic_path


class FolderLock:
    """An exclusive flock on a run folder's ``.binsight.lock`` (the kernel releases it when the process dies)."""

    def __init__(self, root: Path):
        self.root = root
        self._fh: io.TextIOWrapper | None = None

    def acquire(self) -> None:
        """Take the lock, writing this process's id into the file; :class:`RunFolderError` if another holds it."""
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
        self._fh = fh

    @property
    def held(self) -> bool:
        return self._fh is not None

    def release(self) -> None:
        """Release the lock (the lock file stays: removing it would race with a new holder)."""
        if self._fh is not None:
            self._fh.close()
            self._fh = None


class RunFolder:
    """A study's output folder. Claim it with :meth:`create` (rank 0 of a run, holding the lock), join a
    claimed one with :meth:`open_for_rank` (the other ranks), or read one with :meth:`existing`.

    ``files``, ``maps``, ``curves``, ``units`` and ``records``: the folder's parts (see the module docstring).
    """

    def __init__(self, root: str | os.PathLike, *, repair: bool = False):
        self.root = Path(os.path.abspath(root))
        self.lock = FolderLock(self.root)
        self.files = RunFiles(self.root)
        self.maps = ChunkStore(self.files, "maps")
        self.curves = ChunkStore(self.files, "curves")
        self.units = UnitStore(self.files)
        self.records = RecordStore(self.files, repair=repair)

    # -- claiming and opening --------------------------------------------------------------------------
    @classmethod
    def create(cls, root: str | os.PathLike, config: StudyConfig, *, hash_: str | None = None) -> "RunFolder":
        """Claim ``root`` for running ``config`` and hold its lock until :meth:`close` (or the process ends).

        ``root`` may not exist yet, be empty, or hold a run of the very same configuration (finished,
        stopped, or killed while its manifest was being written). Anything else raises
        :class:`RunFolderError` before a file is created, changed or deleted. Once claimed, the temporary
        files of writes cut short by a kill are removed (top level and the run's own subfolders only), and
        a config.toml that is missing or does not match the run's hash (set aside) is written again.
        Damaged records found later are set aside and recomputed.
        """
        folder = cls(root, repair=True)
        want = hash_ or config_hash(config)
        folder._claimable(want)
        folder._make_root()
        folder.lock.acquire()
        try:
            state = folder._claimable(want)  # again, under the lock
            folder._remove_partial_files()
            if state == "damaged":
                folder.files.set_aside(MANIFEST, "not a manifest binsight can read; written again from config.toml")
            if state in ("new", "damaged"):
                folder._write_manifest(want)
            folder._restore_config(config, want)
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
        if folder.root.is_dir() and folder._manifest() is None and folder.files.exists(MANIFEST) \
                and folder.files.exists(CONFIG):
            raise RunFolderError(f"{folder.root / MANIFEST} is damaged; run `binsight study` with the run's "
                                 f"configuration ({folder.root / CONFIG}) on this folder to write it again")
        if not folder.root.is_dir() or folder._manifest() is None or not (folder.root / CONFIG).exists():
            raise RunFolderError(f"{folder.root} is not a study run folder (no run.json and config.toml); "
                                 "run `binsight study --out DIR` first")
        return folder

    def _claimable(self, want: str) -> str:
        """"new" (absent, empty, or only the run's lock and manifest leftovers), "run" (a run of hash
        ``want``) or "damaged" (a run.json binsight cannot read beside the config.toml of hash ``want``: a
        run of this configuration whose manifest is to be written again); raises :class:`RunFolderError`
        for anything else. Reads only."""
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
                    f"rerun with the configuration in {self.root / CONFIG}")
            return "run"
        if MANIFEST in names and CONFIG in names and self._config_hash_is(want):
            return "damaged"
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
        """run.json of a binsight run of this format; None where there is none (or it is not binsight's).
        A run.json that is not a regular file (a FIFO, a folder) raises :class:`RunFolderError` at once."""
        try:
            info = self.files.read_json(MANIFEST)
        except CorruptUnit:
            return None
        if not isinstance(info, dict) or not ("config_hash" in info and "binsight_version" in info):
            return None
        if info.get("binsight") != MARKER or info.get("format") != FORMAT:
            raise RunFolderError(f"{self.root} holds a run of another binsight version (run folder format "
                                 f"{info.get('format', 1)}, this version writes {FORMAT}); use a new --out folder")
        return info

    def _config_hash_is(self, want: str) -> bool:
        """Whether config.toml is a configuration of hash ``want`` (False where it cannot be read)."""
        try:
            return self.files.read_bytes(CONFIG) is not None and want in _hashes(load_config(self.files.path(CONFIG)))
        except (BinsightError, OSError):
            return False

    def _write_manifest(self, config_hash_: str) -> None:
        self.files.write_json(MANIFEST, {"binsight": MARKER, "format": FORMAT, "config_hash": config_hash_,
                                         "binsight_version": __version__})

    def _restore_config(self, config: StudyConfig, want: str) -> None:
        """Write config.toml where it is missing, or (set aside) where it is not the run's configuration."""
        if self.files.exists(CONFIG):
            try:
                self.config()
                return
            except (ConfigError, RunFolderError) as e:
                self.files.set_aside(CONFIG, _one_line(str(e)))
        self.files.write_text(CONFIG, to_toml(config, folder=self.root))

    # -- the lock ---------------------------------------------------------------------------------------
    @property
    def locked(self) -> bool:
        """Whether this process holds the folder's lock."""
        return self.lock.held

    def close(self) -> None:
        """Release the folder's lock, where this process holds it."""
        self.lock.release()

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
                    self.files.remove(folder / name)

    # -- run.json and the configuration -------------------------------------------------------------------
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
        self.files.write_json(MANIFEST, {**info, **fields})

    def record_provenance(self, device: Any) -> dict[str, Any]:
        """Append this invocation's :func:`provenance` to run.json's ``invocations``; returns it."""
        entry = provenance(device)
        invocations = (self.info() or {}).get("invocations", [])
        self.update_info(invocations=(list(invocations) if isinstance(invocations, list) else []) + [entry])
        return entry

    def config_text(self) -> str:
        """The text of config.toml; :class:`CorruptUnit` where it is missing or not UTF-8."""
        data = self.files.read_bytes(CONFIG)
        path = self.files.path(CONFIG)
        if data is None:
            raise CorruptUnit(path, "missing")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise CorruptUnit(path, f"not UTF-8 text ({e.reason})") from None

    def config(self) -> StudyConfig:
        """The run's resolved configuration (config.toml), checked against run.json's configuration hash:
        a config.toml that is not valid, or not the configuration the run's results came from, raises
        :class:`RunFolderError` saying what differs and what to do."""
        path = self.files.path(CONFIG)
        self.config_text()  # a regular file of UTF-8 text (never blocks on a FIFO)
        try:
            config = load_config(path)
        except ConfigError as e:
            raise RunFolderError(f"{path} is not a valid configuration ({_one_line(str(e))}); restore the file, "
                                 "or run `binsight study` with the run's configuration on this folder to write it "
                                 "again") from None
        want = (self.info() or {}).get("config_hash")
        got = config_hash(config)
        if want not in _hashes(config):
            raise RunFolderError(f"{path} was edited: its configuration hash is {got}, the run's results were computed "
                                 f"with {want} (run.json); restore the file, or run `binsight study` with the run's "
                                 "configuration on this folder to write it again")
        return config

    def path(self, *parts: str) -> Path:
        """``root / parts``, checked to lie inside the run folder (see :func:`~binsight.study.files.inside`)."""
        return self.files.path(*parts)


def _hashes(config: StudyConfig) -> set[str]:
    """The hashes ``config`` has on any machine: with ``run.device = "auto"``, the hash of each device
    "auto" may resolve to (a run folder moved to a machine without a GPU keeps its configuration)."""
    if config.run.device != "auto":
        return {config_hash(config)}
    return {config_hash(dataclasses.replace(config, run=dataclasses.replace(config.run, device=device)))
            for device in AUTO_DEVICES} | {config_hash(config)}


def _one_line(text: str) -> str:
    return " ".join(text.split())


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
