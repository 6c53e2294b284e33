"""CIFAR-10 (Krizhevsky, 2009), binary version only: 32x32 RGB, 10 classes; nothing is unpickled.

``cifar-10-binary.tar.gz`` holds ``cifar-10-batches-bin/`` with ``data_batch_1.bin`` .. ``data_batch_5.bin``
(train, 50,000 images), ``test_batch.bin`` (test, 10,000) and ``batches.meta.txt`` (class names, one a
line). Each record is 1 label byte followed by 3072 pixel bytes: the red, green and blue 32x32 planes,
rows first. See https://www.cs.toronto.edu/~kriz/cifar.html.

Where it is looked for, in order: ``root`` (the .tar.gz, the ``cifar-10-batches-bin`` folder, or a folder
holding either; then nowhere else), ``$BINSIGHT_DATA`` or its ``cifar-10`` subfolder, the download cache
``cache_dir("data/cifar-10")``, else downloaded there. Archive members are read by name straight from the
tar stream (never extracted), so member paths cannot escape anywhere.
"""

from __future__ import annotations

import functools
import gzip
import os
import tarfile
import zlib
from pathlib import Path

import numpy as np
import torch

from binsight._io import cache_dir
from binsight.data.dataset import DatasetError, ImageDataset
from binsight.data.download import fetch_verified

NAME = "cifar-10"
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]
ARCHIVE = "cifar-10-binary.tar.gz"
FOLDER = "cifar-10-batches-bin"
URL = "https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz"
URL_ENV = "BINSIGHT_CIFAR10_URL"
# SHA-256 of the published archive (170,052,171 bytes; its published MD5 is c32a1d4ab5d03f1284b67883e8d87530).
SHA256 = "c4a38c50a1bc5f3a1c5537f2155ab9d68f9f25eb1ed8d9ddda3db29a59bca1dd"
SPLIT_FILES = {"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
META_FILE = "batches.meta.txt"
RECORD = 1 + 3 * 32 * 32


def load(split: str = "test", root: str | os.PathLike | None = None, download: bool = True,
         url: str | None = None, sha256: str | None = None) -> ImageDataset:
    """Load one split of CIFAR-10 as (N, 3, 32, 32) images in [0, 1]; no masks (None).

    Args:
        split: "train" (50,000 images) or "test" (10,000).
        root: the .tar.gz, the extracted ``cifar-10-batches-bin`` folder, or a folder holding either.
        download: whether to download into the cache when it is found nowhere else.
        url: archive URL to download (default ``$BINSIGHT_CIFAR10_URL``, else the authors' site).
        sha256: expected SHA-256 of the downloaded archive (default: the published archive's).
    """
    if split not in SPLIT_FILES:
        raise DatasetError(f"cifar-10 has no split {split!r}; use 'train' or 'test'")
    location, source = locate(root, download, url, sha256)
    images, labels, classes = _read_split(location, _stamp(location), split)
    return ImageDataset(
        images=torch.from_numpy(images.astype(np.float32)).div_(255.0),
        labels=torch.from_numpy(labels.astype(np.int64)),
        classes=list(classes),
        name=NAME,
        split=split,
        source=source,
        masks=None,
    )


def locate(root=None, download: bool = True, url: str | None = None, sha256: str | None = None) -> tuple[Path, str]:
    """The archive or ``cifar-10-batches-bin`` folder to read, and where it came from."""
    if root is not None:
        found = _find_in(Path(root).expanduser())
        if found is None:
            raise DatasetError(f"cifar-10: {root} is neither {ARCHIVE}, a {FOLDER} folder, nor a folder holding "
                               f"one of them; pass one of those (the binary version, not the python one)")
        return found, str(found)
    looked = []
    env = os.environ.get("BINSIGHT_DATA")
    for folder in ([Path(env).expanduser(), Path(env).expanduser() / NAME] if env else []):
        looked.append(f"$BINSIGHT_DATA: {folder}")
        found = _find_in(folder)
        if found is not None:
            return found, str(found)
    cache = cache_dir(f"data/{NAME}")
    looked.append(f"download cache: {cache}")
    if (cache / ARCHIVE).is_file():
        return cache / ARCHIVE, f"{cache / ARCHIVE} (download cache)"
    if not download:
        raise DatasetError(_not_found_message(looked))
    got = fetch_verified([url or os.environ.get(URL_ENV) or URL], cache / ARCHIVE, sha256 or SHA256)
    return cache / ARCHIVE, f"{got} (downloaded to {cache / ARCHIVE})"


def _find_in(path: Path) -> Path | None:
    """``path`` itself when it is the archive or the batches folder, else one of them inside it."""
    for candidate in (path, path / FOLDER, path / ARCHIVE):
        if candidate.is_file() and candidate.name.endswith((".tar.gz", ".tgz")):
            return candidate
        if candidate.is_dir() and all((candidate / f).is_file() for f in SPLIT_FILES["test"]):
            return candidate
    return None


def _not_found_message(looked: list[str]) -> str:
    where = "\n".join(f"  - {line}" for line in looked) or "  (nowhere: $BINSIGHT_DATA is not set)"
    return (f"cifar-10 not found.\nLooked in:\n{where}\nGet it with one of:\n"
            f"  - download {URL} and pass it (or the extracted {FOLDER} folder) as the root (--root / --data-root)\n"
            f"  - put it in a folder and set BINSIGHT_DATA to that folder\n"
            "  - allow the download (drop --no-download / download=False)")


def _stamp(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


@functools.lru_cache(maxsize=2)
def _read_split(location: Path, stamp, split: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(images uint8 (N, 3, 32, 32), labels uint8 (N,), class names) of a split, validated."""
    wanted = SPLIT_FILES[split] + [META_FILE]
    members = _read_archive(location, wanted) if location.is_file() else _read_folder(location, wanted)
    missing = [f for f in SPLIT_FILES[split] if f not in members]
    if missing:
        raise DatasetError(f"cifar-10: {location} lacks {', '.join(missing)}; it is incomplete or not the "
                           f"binary version ({ARCHIVE})")
    parts = [_parse_batch(members[f], f"{location}: {f}") for f in SPLIT_FILES[split]]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    return images, labels, _class_names(members.get(META_FILE))


def _read_archive(path: Path, wanted: list[str]) -> dict[str, bytes]:
    """The bytes of the regular members ``FOLDER/name`` for each wanted name, read from the tar stream."""
    names = {f"{FOLDER}/{w}": w for w in wanted}
    found: dict[str, bytes] = {}
    try:
        with tarfile.open(path, "r:*") as tar:
            for member in tar:
                if member.name in names and member.isfile():
                    found[names[member.name]] = tar.extractfile(member).read()
                    if len(found) == len(names):
                        break
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile, OSError) as e:
        raise DatasetError(f"cifar-10: {path} is not a readable tar.gz archive ({e}); it is truncated or "
                           "corrupt, delete it and fetch it again") from None
    return found


def _read_folder(folder: Path, wanted: list[str]) -> dict[str, bytes]:
    return {w: (folder / w).read_bytes() for w in wanted if (folder / w).is_file()}


def _parse_batch(raw: bytes, where: str) -> tuple[np.ndarray, np.ndarray]:
    if len(raw) == 0 or len(raw) % RECORD:
        raise DatasetError(f"cifar-10: {where} has {len(raw)} bytes, not a whole number of {RECORD}-byte records "
                           "(1 label byte + 3072 pixel bytes); the file is truncated or not the binary version")
    records = np.frombuffer(raw, dtype=np.uint8).reshape(-1, RECORD)
    labels = records[:, 0]
    if labels.max() >= len(CLASSES):
        raise DatasetError(f"cifar-10: {where} has label {int(labels.max())}, out of range 0..{len(CLASSES) - 1}")
    return records[:, 1:].reshape(-1, 3, 32, 32), labels


def _class_names(meta: bytes | None) -> list[str]:
    """Class names from ``batches.meta.txt`` (one a line), or the published list when absent or unusable."""
    if meta is None:
        return list(CLASSES)
    names = [line.strip() for line in meta.decode("utf-8", errors="replace").splitlines() if line.strip()]
    return names if len(names) == len(CLASSES) else list(CLASSES)
