"""Reader for the idx format of (Fashion-)MNIST: a 4-byte magic, big-endian uint32 sizes, raw values.

Magic: two zero bytes, a type code (0x08 = unsigned byte, the only one binsight reads) and the number
of dimensions. See http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS").
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from binsight.data.dataset import DatasetError

_UBYTE = 0x08


def read_idx_bytes(raw: bytes, where: str = "idx data") -> np.ndarray:
    """Parse an uncompressed idx file's bytes into a read-only uint8 array of the declared shape."""
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DatasetError(f"{where} is not an idx file (bad magic number {raw[:4].hex() or 'empty'}); "
                           "expected the (Fashion-)MNIST idx format, e.g. train-images-idx3-ubyte.gz")
    if raw[2] != _UBYTE:
        raise DatasetError(f"{where}: idx value type 0x{raw[2]:02x} is not supported (only unsigned bytes, 0x08)")
    ndim = raw[3]
    header = 4 + 4 * ndim
    if ndim == 0 or len(raw) < header:
        raise DatasetError(f"{where}: idx header is cut short ({len(raw)} bytes, {ndim} dimensions declared)")
    shape = tuple(int(d) for d in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = header + int(np.prod(shape, dtype=np.int64))
    if len(raw) != expected:
        raise DatasetError(f"{where}: idx size mismatch: header declares shape {shape} ({expected} bytes) "
                           f"but the file has {len(raw)} bytes; the file is truncated or corrupt, fetch it again")
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(shape)


def read_file_bytes(path: Path) -> bytes:
    """A file's bytes, gunzipped if its name ends in ``.gz``; a damaged gzip stream is a DatasetError."""
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DatasetError(f"{path} is not a complete gzip file ({e}); it is truncated or corrupt, "
                           "delete it and fetch it again") from None
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (plain or ``.gz``) into a read-only uint8 array of its declared shape."""
    return read_idx_bytes(read_file_bytes(path), where=str(path))
