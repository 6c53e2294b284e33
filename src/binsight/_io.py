"""Small shared helpers for files: atomic writes and the cache directory."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from binsight.errors import BinsightError


class CacheError(BinsightError):
    """The cache folder cannot be made or used; the message names it and what to set."""


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
    whole new one - never a partial file.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


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
