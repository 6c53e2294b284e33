"""Reader for the idx format of (Fashion-)MNIST: a 4-byte magic, big-endian uint32 sizes, raw values.

Magic: two zero bytes, a type code (0x08 = unsigned byte, the only one binsight reads) and the number
of dimensions. See http://yann.lecun.com/exdb/mnist/ ("FILE FORMATS").
"""

from __future__ import annotations

import gzip
import io
import math
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from binsight.data.dataset import DatasetError

_UBYTE = 0x08


MAX_BYTES = 2**31
"""Largest idx payload read (2 GiB; Fashion-MNIST's largest file holds 47 MB)."""


def read_idx_bytes(raw: bytes, where: str = "idx data") -> np.ndarray:
    """Parse an uncompressed idx file's bytes into a read-only uint8 array of the declared shape."""
    return read_idx_stream(io.BytesIO(raw), where)


def read_idx_stream(stream: BinaryIO, where: str) -> np.ndarray:
    """Read one idx file from ``stream``: the header, then exactly the bytes it declares (never more).

    A file that declares more than :data:`MAX_BYTES`, ends early or runs on is a DatasetError, so a
    small hostile (gzip) file cannot make binsight read or allocate more than its header promises.
    """
    magic = stream.read(4)
    if len(magic) < 4 or magic[0] != 0 or magic[1] != 0:
        raise DatasetError(f"{where} is not an idx file (bad magic number {magic.hex() or 'empty'}); "
                           "expected the (Fashion-)MNIST idx format, e.g. train-images-idx3-ubyte.gz")
    if magic[2] != _UBYTE:
        raise DatasetError(f"{where}: idx value type 0x{magic[2]:02x} is not supported (only unsigned bytes, 0x08)")
    ndim = magic[3]
    dims = stream.read(4 * ndim)
    if ndim == 0 or len(dims) < 4 * ndim:
        raise DatasetError(f"{where}: idx header is cut short ({4 + len(dims)} bytes, {ndim} dimensions declared)")
    shape = struct.unpack(f">{ndim}I", dims)
    size = math.prod(shape)
    if size > MAX_BYTES:
        raise DatasetError(f"{where}: idx header declares shape {shape} ({size:,} bytes), more than binsight "
                           f"reads ({MAX_BYTES:,}); the file is corrupt or not a dataset binsight knows")
    header = 4 + 4 * ndim
    values = stream.read(size + 1)
    if len(values) != size:
        found = "more" if len(values) > size else f"{header + len(values)}"
        raise DatasetError(f"{where}: idx size mismatch: header declares shape {shape} ({header + size} bytes) "
                           f"but the file has {found} bytes; the file is truncated or corrupt, fetch it again")
    return np.frombuffer(values, dtype=np.uint8).reshape(shape)


def read_idx(path: Path) -> np.ndarray:
    """Read an idx file (plain or ``.gz``) into a read-only uint8 array of its declared shape."""
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as stream:
            return read_idx_stream(stream, str(path))
    except (EOFError, gzip.BadGzipFile, zlib.error) as e:
        raise DatasetError(f"{path} is not a complete gzip file ({e}); it is truncated or corrupt, "
                           "delete it and fetch it again") from None
    except OSError as e:
        raise DatasetError(f"cannot read {path}: {e.strerror or e}") from None
