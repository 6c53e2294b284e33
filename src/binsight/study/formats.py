"""The run folder's file formats: the tidy rows and the checksummed unit CSV and ``.npz`` files.

Every stored unit carries a sha256 of its key and its content: an ``_sha256`` member of each ``.npz``
(:func:`npz_bytes`), a ``# binsight unit sha256=...`` first line of each unit CSV (:func:`unit_text`). The
key is the file's place in the run folder (``maps/fp-0/gradient/0001.npz``: model, method and chunk), so
a valid file copied to another unit's place fails to verify. A file that fails to read or verify raises
:class:`CorruptUnit` naming it. Where the files live, and claiming and locking a folder, is
:mod:`binsight.study.store`'s job; reading and writing them, :mod:`binsight.study.files`'.
"""

from __future__ import annotations

import csv
import hashlib
import io
import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from binsight.study.errors import CorruptUnit, CorruptUnitWarning
from binsight.study.names import UNDEFINED

COLUMNS = ("image", "model", "model_b", "method", "measure", "step", "value")
"""Columns of the tidy table. One row per image x model x method x measure.

image: index of the image in the dataset split. model: the model's name (e.g. "fp-0"). model_b: the
second model of a similarity pair ("" otherwise). method: explanation method or baseline map. measure:
e.g. "spearman", "deletion_auc". step: for curves (sanity), the number of layers randomised (1, 2, ...);
0 otherwise. value: a finite float.
"""

SUM_KEY = "_sha256"
UNIT_HEADER = re.compile(r"# binsight unit sha256=([0-9a-f]{64})")


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


def sha256_text(text: str | bytes) -> str:
    return hashlib.sha256(text.encode("utf-8") if isinstance(text, str) else text).hexdigest()


def arrays_digest(arrays: dict[str, np.ndarray], key: str) -> str:
    """sha256 of the unit's ``key`` and of the arrays' names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256(f"binsight unit {key}\0".encode("utf-8"))
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}\0{a.dtype.str}\0{a.shape}\0".encode("utf-8"))
        digest.update(a.tobytes())
    return digest.hexdigest()


def npz_bytes(key: str, arrays: dict[str, np.ndarray]) -> bytes:
    """A stored ``.npz`` of ``arrays`` with the ``_sha256`` of its ``key`` and content."""
    arrays = {k: np.asarray(v) for k, v in arrays.items()}
    buffer = io.BytesIO()
    np.savez(buffer, **arrays, **{SUM_KEY: np.array(arrays_digest(arrays, key))})
    return buffer.getvalue()


def parse_npz(path: Path, data: bytes | None, key: str) -> dict[str, np.ndarray]:
    """The arrays of the stored .npz ``data`` (read from ``path``), verified against its checksum of
    ``key`` and content; :class:`CorruptUnit` naming ``path`` otherwise (also where ``data`` is None: absent)."""
    if data is None:
        raise CorruptUnit(path, "missing")
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as stored:
            arrays = {k: stored[k] for k in stored.files}
    except Exception as e:  # noqa: BLE001 - whatever the bytes are, a file that does not load is corrupt
        raise CorruptUnit(path, f"unreadable: {type(e).__name__}: {str(e)[:120]}") from None
    stored_sum = arrays.pop(SUM_KEY, None)
    if stored_sum is None or stored_sum.shape != () or stored_sum.dtype.kind != "U":
        raise CorruptUnit(path, "no checksum")
    if str(stored_sum) != arrays_digest(arrays, key):
        raise CorruptUnit(path, f"content does not match its checksum (of {key} and its arrays)")
    return arrays


def parse_unit(path: Path, data: bytes | None, key: str) -> list[Row]:
    """Rows of the unit CSV ``data`` (read from ``path``), verified against its ``# binsight unit sha256=``
    line (of ``key`` and the rows)."""
    if data is None:
        raise CorruptUnit(path, "missing")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptUnit(path, f"not UTF-8 text ({e.reason})") from None
    first, _, body = text.partition("\n")
    found = UNIT_HEADER.fullmatch(first)
    if found is None:
        raise CorruptUnit(path, "no checksum line")
    if found.group(1) != _unit_sum(key, body):
        raise CorruptUnit(path, f"content does not match its checksum (of {key} and its rows)")
    return parse_rows(path, body)


def parse_measurements(path: Path, data: bytes | None, side: bytes | None) -> list[Row]:
    """Rows of measurements.csv ``data`` (from ``path``), verified against its ``.sha256`` file ``side``."""
    if data is None:
        raise CorruptUnit(path, "missing")
    try:
        recorded = (side or b"").decode("utf-8").split()[0]
    except (UnicodeDecodeError, IndexError):
        raise CorruptUnit(path, f"no readable checksum in {path.name}.sha256") from None
    if recorded != sha256_text(data):
        raise CorruptUnit(path, f"content does not match its checksum in {path.name}.sha256")
    try:
        return parse_rows(path, data.decode("utf-8"))
    except UnicodeDecodeError as e:
        raise CorruptUnit(path, f"not UTF-8 text ({e.reason})") from None


def try_read(read, path: Path):
    """``read(path)``, or None with a :class:`CorruptUnitWarning` naming the file if it is corrupt."""
    try:
        return read(path)
    except CorruptUnit as e:
        warnings.warn(f"{path} is corrupt ({e.reason}); skipped", CorruptUnitWarning, stacklevel=3)
        return None


def rows_to_csv(rows: Iterable[Row]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(r.as_csv() for r in rows)
    return buf.getvalue()


def parse_rows(path: Path, text: str) -> list[Row]:
    """Rows of a tidy-table CSV; :class:`CorruptUnit` naming ``path`` for a wrong header, a short row or
    a value that is not a finite number."""
    reader = csv.reader(io.StringIO(text))
    if tuple(next(reader, ())) != COLUMNS:
        raise CorruptUnit(path, f"the header is not {','.join(COLUMNS)}")
    rows = []
    for line, fields in enumerate(reader, start=2):
        try:
            d = dict(zip(COLUMNS, fields, strict=True))
            row = Row(measure=d["measure"], method=d["method"], model=d["model"], model_b=d["model_b"],
                      step=int(d["step"]), image=int(d["image"]), value=float(d["value"]))
        except ValueError as e:
            raise CorruptUnit(path, f"line {line}: {e}") from None
        if not math.isfinite(row.value):
            raise CorruptUnit(path, f"line {line}: value {row.value} is not finite")
        rows.append(row)
    return rows


def unit_text(rows: Iterable[Row], key: str) -> str:
    """A unit CSV: the ``# binsight unit sha256=`` line of ``key`` and the rows' CSV, then that CSV."""
    body = rows_to_csv(rows)
    return f"# binsight unit sha256={_unit_sum(key, body)}\n{body}"


def _unit_sum(key: str, body: str) -> str:
    return sha256_text(f"binsight unit {key}\n{body}")


def to_rows(values: dict[str, np.ndarray], images: Sequence[int], *, method: str, model: str, model_b: str = "",
            step: int = 0, omit_undefined: bool = False) -> list[Row]:
    """Rows of ``values`` (measure -> (N,) per image); a non-finite value becomes ``"MEASURE:undefined"`` = 1
    (or no row, with ``omit_undefined``: measures that do not apply to a map, such as the chance test of a
    degenerate one)."""
    rows = []
    for measure, vals in values.items():
        for image, v in zip(images, np.asarray(vals, dtype=np.float64)):
            if omit_undefined and not np.isfinite(v):
                continue
            name, value = (measure, float(v)) if np.isfinite(v) else (f"{measure}{UNDEFINED}", 1.0)
            rows.append(Row(measure=name, method=method, model=model, model_b=model_b, step=step, image=int(image),
                            value=value))
    return rows


def iter_chunks(n: int, size: int) -> Iterator[tuple[int, slice]]:
    """(chunk index, slice of positions) covering range(n) in pieces of ``size``."""
    for c, start in enumerate(range(0, n, size)):
        yield c, slice(start, min(start + size, n))
