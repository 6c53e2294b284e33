"""The run folder's one guarded reader and writer: every file the study and the report read, write, set
aside or delete goes through :class:`RunFiles`.

- Every path is checked to lie inside the run folder after symbolic links are followed (:func:`inside`):
  a link inside the folder (``figures/`` naming another folder, a record naming another file) is
  followed only where it stays inside; one that leads out is refused before anything is written,
  moved or deleted.
- Writes are atomic (:func:`binsight._io.atomic_path`); a write the system refuses (full disk, read-only
  file system) ends in a one-line :class:`binsight._io.WriteError` and leaves the old file as it was.
- Only regular files are read: a FIFO, a device or a folder under a record's name is refused at once (it
  is opened without waiting, never read). A file that cannot be read or decoded raises
  :class:`~binsight.study.errors.CorruptUnit` naming it.
- A stored file that fails to verify is set aside under ``corrupt/`` (:meth:`RunFiles.set_aside`) with a
  :class:`~binsight.study.errors.CorruptUnitWarning` naming it, so that it is recomputed.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import stat
import warnings
from pathlib import Path
from typing import Any, Callable, Iterator

from binsight._io import atomic_path
from binsight.study.errors import CorruptUnit, CorruptUnitWarning, RunFolderError

CORRUPT = "corrupt"
"""The subfolder where files that failed to verify are set aside."""
MAX_DEPTH = 64
"""The deepest nesting of lists and objects a JSON record may have (the run's own are 4 deep at most)."""

_SAFE_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-+")


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


def inside(root: str | os.PathLike, *parts: str, doing: str = "use") -> Path:
    """``root / parts``, after checking that the resolved path (symbolic links followed) lies strictly
    inside the resolved ``root``; raises :class:`RunFolderError` otherwise, saying what it refused
    ``doing`` ("read", "write", "delete", ...)."""
    base = Path(root)
    path = base.joinpath(*parts)
    real_root, real = base.resolve(), path.resolve()
    if real == real_root or not real.is_relative_to(real_root):
        raise RunFolderError(f"refusing to {doing} {path}: it resolves to {real}, outside the run folder "
                             f"{real_root}; remove the link that leads out of the folder")
    return path


def read_regular(path: Path) -> bytes | None:
    """The bytes of the regular file ``path`` (None where there is none); a FIFO, device or folder under
    that name raises :class:`RunFolderError` without waiting; a file that cannot be read :class:`CorruptUnit`."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except FileNotFoundError:
        return None
    except IsADirectoryError:
        raise RunFolderError(f"{path} is a folder, not a file; remove it, or use another run folder") from None
    except OSError as e:
        raise CorruptUnit(path, f"cannot be opened: {e.strerror}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        raise RunFolderError(f"{path} is not a regular file ({_kind(mode)}); a run folder's records are plain "
                             "files: remove it, or use another run folder")
    with os.fdopen(fd, "rb") as fh:
        try:
            return fh.read()
        except OSError as e:
            raise CorruptUnit(path, f"cannot be read: {e.strerror}") from None


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket"), (stat.S_ISCHR, "a device"),
                       (stat.S_ISBLK, "a device"), (stat.S_ISDIR, "a folder")):
        if test(mode):
            return name
    return "not a plain file"


def parse_json(path: Path, data: bytes) -> Any:
    """JSON of ``data`` (UTF-8, nested at most :data:`MAX_DEPTH` deep, no NaN or infinity); raises
    :class:`CorruptUnit` naming ``path`` otherwise."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CorruptUnit(path, f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    if _depth(text) > MAX_DEPTH:
        raise CorruptUnit(path, f"nested more than {MAX_DEPTH} levels deep")
    try:
        return json.loads(text, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise CorruptUnit(path, f"not valid JSON: {str(e)[:120]}") from None


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number a record holds")


def _depth(text: str) -> int:
    """How deep brackets nest in ``text``, counting outside strings only."""
    deepest = depth = 0
    for token in re.finditer(r'"(?:[^"\\]|\\.)*"|[\[{]|[\]}]', text):
        t = token.group()
        if t in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif t in "]}":
            depth -= 1
    return deepest


# ------------------------------------------------------------------------------------------------------
# the guarded reader and writer


class RunFiles:
    """Reads, writes, sets aside and deletes the files of the run folder ``root``, each path checked to
    stay inside it. A path is given relative to ``root`` (``"models.json"``, ``"figures/a.png"``) or as
    an absolute path below it."""

    def __init__(self, root: Path):
        self.root = root

    def path(self, *parts: str) -> Path:
        """``root / parts``, checked to lie inside the run folder (see :func:`inside`)."""
        return inside(self.root, *parts)

    def checked(self, where: str | os.PathLike, doing: str = "use") -> Path:
        """``where`` (relative to the folder, or absolute below it), checked like :meth:`path` before
        ``doing`` it ("read", "write", ...)."""
        where = Path(where)
        if where.is_absolute():
            if not where.is_relative_to(self.root):
                raise RunFolderError(f"refusing to {doing} {where}: it is outside the run folder {self.root}")
            where = where.relative_to(self.root)
        return inside(self.root, *where.parts, doing=doing)

    def key(self, where: str | os.PathLike) -> str:
        """The folder-relative name of ``where`` (``maps/fp-0/gradient/0001.npz``): what a stored unit's
        checksum binds it to (not checked: the read or write of the file is)."""
        where = Path(where)
        return (where.relative_to(self.root) if where.is_absolute() else where).as_posix()

    @contextlib.contextmanager
    def writing(self, where: str | os.PathLike) -> Iterator[Path]:
        """``with files.writing(where) as tmp:`` write ``tmp``; it replaces ``where`` on success."""
        with atomic_path(self.checked(where, "write")) as tmp:
            yield tmp

    def write_bytes(self, where: str | os.PathLike, data: bytes) -> None:
        with self.writing(where) as tmp:
            tmp.write_bytes(data)

    def write_text(self, where: str | os.PathLike, text: str) -> None:
        self.write_bytes(where, text.encode("utf-8"))

    def write_json(self, where: str | os.PathLike, data: Any) -> None:
        self.write_text(where, json.dumps(data, indent=2, sort_keys=False) + "\n")

    def read_bytes(self, where: str | os.PathLike) -> bytes | None:
        """The bytes of the regular file ``where`` (None where absent; see :func:`read_regular`)."""
        return read_regular(self.checked(where, "read"))

    def read_json(self, where: str | os.PathLike) -> Any:
        """The JSON file ``where`` (None where absent); :class:`CorruptUnit` if unreadable (see :func:`parse_json`)."""
        data = self.read_bytes(where)
        return None if data is None else parse_json(self.checked(where, "read"), data)

    def exists(self, where: str | os.PathLike) -> bool:
        """Whether ``where`` names an entry of the folder (a broken link counts)."""
        return os.path.lexists(self.checked(where, "read"))

    def remove(self, where: str | os.PathLike) -> None:
        """Delete the file ``where`` (nothing where absent; a folder is left alone)."""
        path = self.checked(where, "delete")
        if path.is_dir() and not path.is_symlink():
            return
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise RunFolderError(f"cannot delete {path} ({e.strerror}); make the folder writable") from None

    def listing(self, where: str | os.PathLike, pattern: str) -> list[Path]:
        """The entries of folder ``where`` matching ``pattern``, sorted ([] where there is no such folder)."""
        folder = self.checked(where, "read")
        return sorted(folder.glob(pattern)) if folder.is_dir() else []

    def verified(self, where: str | os.PathLike, read: Callable[[Path], Any]) -> bool:
        """Whether ``where`` exists and ``read(path)`` accepts it; a file it rejects with :class:`CorruptUnit`
        is set aside (:meth:`set_aside`) and counts as absent."""
        path = self.checked(where, "read")
        if not path.exists():
            return False
        try:
            read(path)
        except CorruptUnit as e:
            self.set_aside(path, e.reason)
            return False
        return True

    def set_aside(self, where: str | os.PathLike, reason: str) -> Path:
        """Move the run's file ``where`` to corrupt/ under its relative path, with a warning naming both;
        returns the new place (``(deleted)`` where it could only be deleted)."""
        path = self.checked(where, "move")
        target = self.checked(Path(CORRUPT, *path.relative_to(self.root).parts), "move")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(path, target)
        except OSError:
            self.remove(path)
            target = Path("(deleted)")
        warnings.warn(f"{path} is corrupt ({reason}); moved to {target}, it will be recomputed", CorruptUnitWarning,
                      stacklevel=3)
        return target
