"""Verified, atomic downloads: stream to a temporary file, check its SHA-256, then rename into place."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import sys
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Sequence

from binsight._io import atomic_path
from binsight.data.dataset import DatasetError

TIMEOUT_S = 60.0
MAX_BYTES = 2**31
"""Most bytes a download may hold, and its gunzipped content (2 GiB; CIFAR-10's archive is 163 MiB)."""
_CHUNK = 1 << 20


def sha256_of(path: Path, gunzip: bool = False, max_bytes: int = MAX_BYTES) -> str:
    """SHA-256 (hex) of a file's bytes, or of its gunzipped content when ``gunzip`` is true; content of
    more than ``max_bytes`` (a gzip bomb) is a DatasetError."""
    digest, total = hashlib.sha256(), 0
    try:
        with (gzip.open(path, "rb") if gunzip else open(path, "rb")) as fh:
            for chunk in iter(lambda: fh.read(_CHUNK), b""):
                total += len(chunk)
                if total > max_bytes:
                    raise DatasetError(f"content larger than {max_bytes:,} bytes: not the published file")
                digest.update(chunk)
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DatasetError(f"not a complete gzip file ({e}): truncated or corrupt") from None
    return digest.hexdigest()


def fetch_verified(urls: Sequence[str], dest: Path, sha256: str, gunzip: bool = False,
                   max_bytes: int = MAX_BYTES) -> str:
    """Download the first of ``urls`` that answers with the right content to ``dest``; return that URL.

    The file is streamed to a ``.part`` file beside ``dest`` and renamed onto it only once its SHA-256
    (of the gunzipped content when ``gunzip`` is true) equals ``sha256``; any failure leaves no file
    behind; a server sending more than ``max_bytes`` is cut off. Raises DatasetError naming every URL
    tried and why each failed.
    """
    failures = []
    for url in urls:
        try:
            _fetch_one(url, dest, sha256, gunzip, max_bytes)
            return url
        except DatasetError as e:
            failures.append(f"  {url}: {e}")
    raise DatasetError(f"could not download {dest.name}:\n" + "\n".join(failures))


def _fetch_one(url: str, dest: Path, sha256: str, gunzip: bool, max_bytes: int) -> None:
    print(f"binsight: downloading {url}", file=sys.stderr)
    with atomic_path(dest) as tmp:
        try:
            with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(tmp, "wb") as out:
                _copy_at_most(response, out, max_bytes)
        except urllib.error.HTTPError as e:
            raise DatasetError(f"download failed: HTTP {e.code} {e.reason}") from None
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as e:
            raise DatasetError(f"download failed: {getattr(e, 'reason', None) or e}") from None
        got = sha256_of(tmp, gunzip=gunzip, max_bytes=max_bytes)
        if got != sha256.lower():
            raise DatasetError(f"checksum mismatch: SHA-256 {got}, expected {sha256}; the file is corrupt or "
                               "not the published one (nothing was kept)")


def _copy_at_most(source, out, max_bytes: int) -> None:
    total = 0
    for chunk in iter(lambda: source.read(_CHUNK), b""):
        total += len(chunk)
        if total > max_bytes:
            raise DatasetError(f"download failed: the server sent more than {max_bytes:,} bytes, more than the "
                               "published file holds (nothing was kept)")
        out.write(chunk)
