"""The run's measurement units and its tidy table: units/KIND/P1/.../PN.csv and measurements.csv.

A unit is the rows of one finished piece of work (a model's predictions, a chunk's measures, a pair of
models' similarities); its CSV carries a checksum of its key (its place) and rows
(:func:`binsight.study.formats.unit_text`). ``measurements.csv`` is rebuilt from the verified units,
sorted, so it never holds a row twice and does not depend on the order units finished; its checksum is
``measurements.csv.sha256`` (``sha256sum -c`` format).
"""

from __future__ import annotations

import math
import os
import re
import warnings
from pathlib import Path
from typing import Iterable

from binsight.study.errors import CorruptUnit, CorruptUnitWarning
from binsight.study.files import RunFiles, encode_part
from binsight.study.formats import Row, parse_measurements, parse_unit, rows_to_csv, sha256_text, try_read, unit_text

_KIND = re.compile(r"[a-z][a-z0-9_-]*")
TABLE = "measurements.csv"

Key = tuple[str | int, ...] | str
"""A unit's key: its parts (model names, method labels, chunk indices), or one part."""


class UnitStore:
    """The units of a run folder and the table merged from them."""

    def __init__(self, files: RunFiles):
        self.files = files

    def path(self, kind: str, parts: Key) -> Path:
        """units/KIND/P1/.../PN.csv, each part escaped by :func:`~binsight.study.files.encode_part` (chunks as
        ints); checked to stay inside the run folder when it is read or written."""
        if not _KIND.fullmatch(kind):
            raise ValueError(f"unit kind {kind!r}: expected lower-case letters, digits, '_' and '-'")
        names = [encode_part(p) for p in ((parts,) if isinstance(parts, str) else tuple(parts))]
        if not names:
            raise ValueError("a unit key needs at least one part")
        return self.files.root.joinpath("units", kind, *names[:-1], f"{names[-1]}.csv")

    def read(self, path: Path) -> list[Row]:
        """The verified rows of the unit file ``path``; :class:`CorruptUnit` naming it otherwise."""
        return parse_unit(path, self.files.read_bytes(path), self.files.key(path))

    def done(self, kind: str, parts: Key) -> bool:
        """Whether the unit is stored and verifies; a corrupt one is reported, set aside, and not done."""
        return self.files.verified(self.path(kind, parts), self.read)

    def save(self, kind: str, parts: Key, rows: Iterable[Row]) -> None:
        """Record a finished unit with its rows (possibly none): the unit is done once this returns.

        Raises RuntimeError (a bug of the caller, nothing written) for a non-finite value: an undefined
        value is written as a ``MEASURE:undefined`` row of value 1.0 instead.
        """
        rows = list(rows)
        bad = next((r for r in rows if not math.isfinite(r.value)), None)
        if bad is not None:
            raise RuntimeError(f"non-finite value in unit {kind} {parts}: {bad}; write a '{bad.measure}:undefined' "
                               "row of value 1.0 instead")
        path = self.path(kind, parts)
        self.files.write_text(path, unit_text(rows, self.files.key(path)))

    def read_rows(self, *, strict: bool = False) -> list[Row]:
        """Every row of every verified unit, sorted (what measurements.csv holds). A corrupt unit raises
        :class:`CorruptUnit` when ``strict``, else it is skipped with a :class:`CorruptUnitWarning`."""
        rows: list[Row] = []
        for path in self.unit_files():
            got = self.read(path) if strict else try_read(self.read, path)
            rows.extend(got or [])
        return sorted(rows)

    def unit_files(self) -> list[Path]:
        """Every unit CSV of the folder (a units/ that is a link is not followed)."""
        top = self.files.checked("units", "read")
        if not top.is_dir() or top.is_symlink():
            return []
        return sorted(Path(d) / f for d, _, names in os.walk(top) for f in names
                      if f.endswith(".csv") and not f.startswith("."))

    def merge(self) -> list[Row]:
        """Rebuild measurements.csv (and its .sha256) from the unit files, all verified; returns its rows."""
        rows = self.read_rows(strict=True)
        text = rows_to_csv(rows)
        self.files.write_text(TABLE, text)
        self.files.write_text(f"{TABLE}.sha256", f"{sha256_text(text)}  {TABLE}\n")
        return rows

    def read_table(self) -> list[Row]:
        """Rows of measurements.csv if it verifies against its .sha256; else (not merged yet, cut short,
        edited) the rows of the verified units, with a warning where the file was there but unusable."""
        data = self.files.read_bytes(TABLE)
        if data is None:
            return self.read_rows()
        path = self.files.root / TABLE
        try:
            return parse_measurements(path, data, self.files.read_bytes(f"{TABLE}.sha256"))
        except CorruptUnit as e:
            if not self.unit_files():
                raise
            warnings.warn(f"{path}: {e.reason}; using the rows of the run's units instead", CorruptUnitWarning,
                          stacklevel=2)
            return self.read_rows()
