"""Small shared helpers for files: atomic writes and the cache directory.

A write the operating system refuses (full disk, read-only file system, no permission) ends in a
:class:`WriteError`: one line naming the file and the system's reason, the old file left as it was.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from binsight.errors import BinsightError


class CacheError(BinsightError):
    """The cache folder cannot be made or used; the message names it and what to set."""


class WriteError(BinsightError):
    """A file could not be written (full disk, read-only file system, ...); the old one is left as it was."""


def cache_dir(sub: str = "") -> Path:
    """The binsight cache: ``$BINSIGHT_CACHE`` or ``~/.cache/binsight``, with an optional subfolder, made if
    missing; a path that is a file, or that cannot be made, raises :class:`CacheError`."""
    root = Path(os.environ.get("BINSIGHT_CACHE") or Path.home() / ".cache" / "binsight")
    path = root / sub if sub else root
    try:
        path.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise CacheError(f"cannot use {root} as binsight's cache folder (it is a file); set BINSIGHT_CACHE to a "
                         "folder, or move the file") from None
    except OSError as e:
        raise CacheError(f"cannot make binsight's cache folder {path} ({e.strerror or e}); set BINSIGHT_CACHE to a "
                         "folder you can write") from None
    return path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed onto ``path`` in one step.

    On any exception the temporary file is removed, so ``path`` is either the old file, absent, or the
    whole new one - never a partial file. An :class:`OSError` (full disk, read-only file system, ...)
    becomes a :class:`WriteError` naming ``path``.
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    except OSError as e:
        raise _write_error(path, e) from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except OSError as e:
        _discard(tmp_path)
        raise _write_error(path, e) from None
    except BaseException:
        _discard(tmp_path)
        raise


def _discard(tmp_path: Path) -> None:
    with contextlib.suppress(OSError):
        tmp_path.unlink(missing_ok=True)


def _write_error(path: Path, error: OSError) -> WriteError:
    reason = error.strerror or str(error) or type(error).__name__
    return WriteError(f"cannot write {path} ({reason}); free some space or make the folder writable, then run the "
                      "command again (the old file is left as it was)")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))
