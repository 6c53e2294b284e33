"""CIFAR-10 binary reader: fabricated archives and folders, lookup, verified download, bad input."""

from __future__ import annotations

import hashlib
import io
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch

from binsight.data import DatasetError, describe, load_dataset
from binsight.data import cifar10

PER_BATCH = 4  # records per fabricated batch file (the real ones hold 10,000)


def batch_bytes(labels: np.ndarray, seed: int) -> tuple[bytes, np.ndarray]:
    """A CIFAR-10 binary batch: per record 1 label byte then R, G, B 32x32 planes; also the pixels."""
    pixels = np.random.default_rng(seed).integers(0, 256, size=(len(labels), 3, 32, 32), dtype=np.uint8)
    records = np.concatenate([labels.astype(np.uint8)[:, None], pixels.reshape(len(labels), -1)], axis=1)
    return records.tobytes(), pixels


def fabricated_members() -> dict[str, bytes]:
    """The binary version's files, small: five train batches, a test batch and batches.meta.txt."""
    files = {}
    for i, name in enumerate(cifar10.SPLIT_FILES["train"] + cifar10.SPLIT_FILES["test"]):
        files[name] = batch_bytes(np.arange(PER_BATCH) + i, seed=i)[0]
    files[cifar10.META_FILE] = ("\n".join(cifar10.CLASSES) + "\n\n").encode()
    return files


def write_archive(path: Path, members: dict[str, bytes], extra: dict[str, bytes] | None = None) -> Path:
    """A tar.gz with ``cifar-10-batches-bin/<name>`` members (and ``extra`` members by their full name)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    entries = {f"{cifar10.FOLDER}/{name}": data for name, data in members.items()} | (extra or {})
    with tarfile.open(path, "w:gz") as tar:
        for name, data in entries.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No BINSIGHT_DATA, a per-test cache; returns the cache's cifar-10 folder."""
    monkeypatch.delenv("BINSIGHT_DATA", raising=False)
    monkeypatch.delenv(cifar10.URL_ENV, raising=False)
    monkeypatch.setenv("BINSIGHT_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "data" / "cifar-10"


def test_reads_the_archive(tmp_path, isolated):
    archive = write_archive(tmp_path / cifar10.ARCHIVE, fabricated_members())
    train = load_dataset("cifar-10", split="train", root=archive)
    test = load_dataset("cifar-10", split="test", root=archive)
    assert (len(train), len(test)) == (5 * PER_BATCH, PER_BATCH)
    assert train.images.shape == (20, 3, 32, 32) and train.images.dtype == torch.float32
    assert train.labels.tolist() == [b + r for b in range(5) for r in range(PER_BATCH)]
    _, pixels = batch_bytes(np.arange(PER_BATCH) + 5, seed=5)
    assert torch.equal(test.images, torch.from_numpy(pixels).float() / 255)  # planes are R, G, B in order
    assert test.classes == cifar10.CLASSES and test.masks is None
    assert (test.name, test.split, test.source) == ("cifar-10", "test", str(archive))


def test_reads_the_extracted_folder_and_a_folder_holding_the_archive(tmp_path, isolated):
    members = fabricated_members()
    folder = tmp_path / "x" / cifar10.FOLDER
    folder.mkdir(parents=True)
    for name, data in members.items():
        (folder / name).write_bytes(data)
    archive_dir = tmp_path / "y"
    archive_dir.mkdir()
    write_archive(archive_dir / cifar10.ARCHIVE, members)
    checksums = {load_dataset("cifar-10", split="train", root=root).checksum()
                 for root in (folder, folder.parent, archive_dir, archive_dir / cifar10.ARCHIVE)}
    assert len(checksums) == 1


def test_class_names_come_from_batches_meta(tmp_path, isolated):
    members = fabricated_members()
    members[cifar10.META_FILE] = "".join(f"class{i}\n" for i in range(10)).encode()
    archive = write_archive(tmp_path / "c.tar.gz", members)
    assert load_dataset("cifar-10", root=archive).classes == [f"class{i}" for i in range(10)]


def test_archive_paths_outside_the_folder_are_never_touched(tmp_path, isolated):
    members = fabricated_members()
    evil = {f"../{cifar10.FOLDER}/test_batch.bin": b"x" * 3073, "/tmp/evil.bin": b"y"}
    archive = write_archive(tmp_path / "c.tar.gz", members, extra=evil)
    ds = load_dataset("cifar-10", root=archive)
    assert len(ds) == PER_BATCH
    assert not (tmp_path.parent / cifar10.FOLDER).exists()


def test_bad_archives(tmp_path, isolated):
    members = fabricated_members()
    good = write_archive(tmp_path / "good.tar.gz", members).read_bytes()
    truncated = tmp_path / "truncated.tar.gz"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match="not a readable tar.gz archive.*truncated or corrupt"):
        load_dataset("cifar-10", split="train", root=truncated)
    not_tar = tmp_path / "not.tar.gz"
    not_tar.write_bytes(b"hello, this is text")
    with pytest.raises(DatasetError, match="not a readable tar.gz"):
        load_dataset("cifar-10", root=not_tar)
    partial = write_archive(tmp_path / "partial.tar.gz", {"test_batch.bin": members["test_batch.bin"]})
    with pytest.raises(DatasetError, match="lacks data_batch_1.bin"):
        load_dataset("cifar-10", split="train", root=partial)
    short = dict(members, **{"test_batch.bin": members["test_batch.bin"][:-5]})
    with pytest.raises(DatasetError, match="not a whole number of 3073-byte records"):
        load_dataset("cifar-10", root=write_archive(tmp_path / "short.tar.gz", short))
    bad_label = dict(members, **{"test_batch.bin": batch_bytes(np.array([3, 10]), seed=0)[0]})
    with pytest.raises(DatasetError, match="label 10, out of range 0..9"):
        load_dataset("cifar-10", root=write_archive(tmp_path / "label.tar.gz", bad_label))


def test_wrong_path_and_missing_dataset(tmp_path, isolated):
    with pytest.raises(DatasetError, match="neither cifar-10-binary.tar.gz"):
        load_dataset("cifar-10", root=tmp_path / "nowhere")
    with pytest.raises(DatasetError) as err:
        load_dataset("cifar-10", download=False)
    for words in ("cifar-10 not found", str(isolated), cifar10.URL, "BINSIGHT_DATA"):
        assert words in str(err.value)
    with pytest.raises(DatasetError, match="no split 'val'"):
        load_dataset("cifar-10", split="val", root=tmp_path)


def test_binsight_data_folder_and_cache_lookup(tmp_path, isolated, monkeypatch):
    write_archive(tmp_path / "data" / "cifar-10" / cifar10.ARCHIVE, fabricated_members())
    monkeypatch.setenv("BINSIGHT_DATA", str(tmp_path / "data"))
    assert len(load_dataset("cifar-10", download=False)) == PER_BATCH
    monkeypatch.delenv("BINSIGHT_DATA")
    write_archive(isolated / cifar10.ARCHIVE, fabricated_members())
    assert load_dataset("cifar-10", download=False).source.endswith("(download cache)")


def test_download_verified_and_mismatch(tmp_path, isolated, http_root):
    served, url = http_root
    archive = write_archive(served / cifar10.ARCHIVE, fabricated_members())
    with pytest.raises(DatasetError, match="checksum mismatch"):  # fabricated != the published archive
        load_dataset("cifar-10", url=url + cifar10.ARCHIVE)
    assert list(isolated.iterdir()) == []
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    ds = load_dataset("cifar-10", url=url + cifar10.ARCHIVE, sha256=sha)
    assert len(ds) == PER_BATCH and ds.source.startswith(url)
    assert (isolated / cifar10.ARCHIVE).read_bytes() == archive.read_bytes()
    assert "train 20 images, test 4 images" in describe("cifar-10", download=False)


def test_download_truncated_archive_leaves_nothing(tmp_path, isolated, http_root):
    served, url = http_root
    archive = write_archive(served / cifar10.ARCHIVE, fabricated_members())
    sha = hashlib.sha256(archive.read_bytes()).hexdigest()
    archive.write_bytes(archive.read_bytes()[:-100])
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset("cifar-10", url=url + cifar10.ARCHIVE, sha256=sha)
    assert list(isolated.iterdir()) == []
