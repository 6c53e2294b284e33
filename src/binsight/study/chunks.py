"""The run's ``.npz`` chunks: maps/MODEL/METHOD/CHUNK.npz and curves/MODEL/METHOD/CHUNK.npz.

One :class:`ChunkStore` per area. A chunk holds the arrays of one model x method x chunk of images
(maps: ``maps`` float32 (n, 1, H, W), ``targets`` int64 (n,), ``images`` int64 (n,), the images' indices
in the dataset; curves: ``fractions`` (S,) and float64 (n, S) curves per kind). Its checksum covers its key
(the file's place: model, method and chunk) and its arrays (:func:`binsight.study.formats.npz_bytes`), so
a chunk copied to another chunk's place fails to verify; where the caller knows the images a chunk must
hold, they are compared too. A chunk that fails is set aside and recomputed (:meth:`ChunkStore.done`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from binsight.study.errors import CorruptUnit
from binsight.study.files import RunFiles, decode_part, encode_part
from binsight.study.formats import npz_bytes, parse_npz, try_read
from binsight.study.names import split_variant


class ChunkStore:
    """The chunks of one area (``"maps"`` or ``"curves"``) of a run folder."""

    def __init__(self, files: RunFiles, area: str):
        self.files, self.area = files, area

    def path(self, model: str, method: str, chunk: int) -> Path:
        """AREA/MODEL/METHOD/CHUNK.npz, each part escaped (:func:`~binsight.study.files.encode_part`); checked
        to stay inside the run folder when it is read or written."""
        split_variant(model)
        return self.files.root.joinpath(self.area, model, encode_part(method), f"{encode_part(int(chunk))}.npz")

    def save(self, model: str, method: str, chunk: int, **arrays: np.ndarray) -> None:
        """Write one chunk's arrays, with the checksum of its key and content."""
        path = self.path(model, method, chunk)
        self.files.write_bytes(path, npz_bytes(self.files.key(path), arrays))

    def read(self, path: Path) -> dict[str, np.ndarray]:
        """The verified arrays of the chunk file ``path``; :class:`CorruptUnit` naming it otherwise."""
        return parse_npz(path, self.files.read_bytes(path), self.files.key(path))

    def load(self, model: str, method: str, chunk: int, *, images: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """One chunk (maps: {"maps", "targets", "images"}); raises :class:`CorruptUnit` if it fails to verify
        or (with ``images``: the dataset indices (n,) the chunk must hold) holds other images."""
        path = self.path(model, method, chunk)
        arrays = self.read(path)
        if images is not None and not np.array_equal(arrays.get("images"), np.asarray(images)):
            raise CorruptUnit(path, "it holds other images than this chunk's (a chunk of another run or place)")
        return arrays

    def done(self, model: str, method: str, chunk: int, *, images: np.ndarray | None = None) -> bool:
        """Whether the chunk is stored and verifies (see :meth:`load`); one that does not is reported, set
        aside and counts as not done."""
        path = self.path(model, method, chunk)
        return self.files.verified(path, lambda _: self.load(model, method, chunk, images=images))

    def chunk_files(self, model: str, method: str) -> list[Path]:
        """The stored chunk files of ``model`` and ``method``, in chunk order."""
        return self.files.listing(self.path(model, method, 0).parent, "*.npz")

    def read_all(self, model: str, method: str) -> dict[str, np.ndarray]:
        """Every verified chunk of ``model`` and ``method``, concatenated in chunk order ({} if none);
        corrupt chunks are skipped with a :class:`~binsight.study.errors.CorruptUnitWarning`."""
        parts = [p for p in (try_read(self.read, f) for f in self.chunk_files(model, method)) if p is not None]
        if not parts:
            return {}
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}

    def methods(self) -> list[str]:
        """Method labels that have a folder for some model (decoded from their folder names)."""
        return sorted({decode_part(d.name) for d in self.files.listing(self.area, "*/*") if d.is_dir()})
