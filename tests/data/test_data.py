"""Fashion-MNIST reader, lookup order, verified download, ImageDataset, and `binsight data`."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from binsight.cli import main
from binsight.data import DatasetError, ImageDataset, describe, load_dataset
from binsight.data import fashion_mnist
from binsight.data.idx import read_idx, read_idx_bytes

DEBIAN = Path("/usr/share/datasets/fashion-mnist")


def idx_bytes(array: np.ndarray) -> bytes:
    """An idx file's bytes for a uint8 array: magic 0x0000 08 ndim, big-endian dims, values."""
    return bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape) + array.tobytes()


def fake_split(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n 28x28 images, each a bright square ring (with a dark hole) on black; labels cycle 0..9."""
    rng = np.random.default_rng(seed)
    images = np.zeros((n, 28, 28), np.uint8)
    for i in range(n):
        top, left = rng.integers(2, 12, size=2)
        images[i, top:top + 12, left:left + 12] = rng.integers(100, 256)
        images[i, top + 4:top + 8, left + 4:left + 8] = 0  # a hole inside the object
    return images, (np.arange(n) % 10).astype(np.uint8)


def write_fashion(folder: Path, n_train: int = 30, n_test: int = 20, seed: int = 0) -> Path:
    """Write the four Fashion-MNIST idx .gz files of a small fabricated dataset into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    for split, n in (("train", n_train), ("test", n_test)):
        images, labels = fake_split(n, seed)
        img_name, lab_name = fashion_mnist.file_names(split)
        (folder / img_name).write_bytes(gzip.compress(idx_bytes(images)))
        (folder / lab_name).write_bytes(gzip.compress(idx_bytes(labels)))
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No BINSIGHT_DATA, no Debian folder, a per-test cache; returns the cache's fashion-mnist folder."""
    monkeypatch.delenv("BINSIGHT_DATA", raising=False)
    monkeypatch.delenv(fashion_mnist.URL_ENV, raising=False)
    monkeypatch.setenv("BINSIGHT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "no-such-system-dir")
    return tmp_path / "cache" / "data" / "fashion-mnist"


def content_sums(folder: Path, split: str = "test") -> dict[str, str]:
    """SHA-256 of the unzipped content of a split's two files, as ``checksums=`` takes them."""
    return {name: hashlib.sha256(gzip.decompress((folder / name).read_bytes())).hexdigest()
            for name in fashion_mnist.file_names(split)}


# ---- idx format ---------------------------------------------------------------------------------------

def test_idx_round_trip():
    array = np.arange(2 * 3 * 5, dtype=np.uint8).reshape(2, 3, 5)
    np.testing.assert_array_equal(read_idx_bytes(idx_bytes(array)), array)


@pytest.mark.parametrize("raw, words", [
    (b"\x08\x03\x00\x00" + bytes(20), "bad magic"),
    (bytes([0, 0, 0x0D, 1]) + struct.pack(">I", 2) + bytes(8), "not supported"),
    (idx_bytes(np.zeros((4, 28, 28), np.uint8))[:-100], "truncated"),
    (bytes([0, 0, 8, 3, 0, 0]), "cut short"),
])
def test_idx_rejects_bad_files(raw, words):
    with pytest.raises(DatasetError, match=words):
        read_idx_bytes(raw, where="x")


def test_idx_reads_no_more_than_its_header_declares(tmp_path):
    huge = bytes([0, 0, 8, 4]) + struct.pack(">4I", *[2**32 - 1] * 4)  # 2^128 bytes: no int64 wrap-around
    with pytest.raises(DatasetError, match=r"declares shape .* more than binsight reads"):
        read_idx_bytes(huge + bytes(16), where="x")
    with pytest.raises(DatasetError, match="has more bytes; the file is truncated or corrupt"):
        read_idx_bytes(idx_bytes(np.zeros((2, 3), np.uint8)) + b"\x00", where="x")
    path = tmp_path / "cut-idx1-ubyte.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.zeros(5000, np.uint8)))[:40])  # gzip stream cut short
    with pytest.raises(DatasetError, match=r"cut-idx1-ubyte\.gz is not a complete gzip file"):
        read_idx(path)
    short = tmp_path / "short-idx1-ubyte.gz"
    short.write_bytes(gzip.compress(idx_bytes(np.zeros(50, np.uint8))[:-7]))  # whole gzip, idx cut short
    with pytest.raises(DatasetError, match=r"short-idx1-ubyte\.gz: idx size mismatch: .*\(58 bytes\) but the file "
                                           r"has 51 bytes; the file is truncated"):
        read_idx(short)


# ---- reading and validation ---------------------------------------------------------------------------

def test_loads_fabricated_files_with_filled_masks(tmp_path, isolated):
    folder = write_fashion(tmp_path / "fm")
    ds = load_dataset("fashion-mnist", split="train", root=folder)
    images, labels = fake_split(30, 0)
    assert isinstance(ds, ImageDataset) and len(ds) == 30
    assert ds.images.dtype == torch.float32 and ds.images.shape == (30, 1, 28, 28)
    assert torch.equal(ds.images, torch.from_numpy(images).unsqueeze(1).float() / 255)
    assert ds.labels.dtype == torch.int64 and ds.labels.tolist() == labels.tolist()
    assert ds.classes[0] == "T-shirt/top" and len(ds.classes) == 10
    assert (ds.name, ds.split, ds.source) == ("fashion-mnist", "train", str(folder))
    # the mask is the whole 12x12 square: the ring and its filled hole, nothing of the background
    assert ds.masks.dtype == torch.bool and ds.masks.shape == (30, 1, 28, 28)
    assert ds.masks.sum(dim=(1, 2, 3)).tolist() == [144] * 30
    assert torch.equal(ds.masks, torch.from_numpy(images > 0).unsqueeze(1) | _holes(images))


def _holes(images: np.ndarray) -> torch.Tensor:
    """The dark 4x4 holes fake_split cut: pixels that are 0 but inside the bounding box of the object."""
    out = np.zeros(images.shape, bool)
    for i, img in enumerate(images):
        rows, cols = np.nonzero(img)
        out[i, rows.min():rows.max() + 1, cols.min():cols.max() + 1] = True
    return torch.from_numpy(out).unsqueeze(1)


def test_loaded_tensors_are_independent_of_the_in_process_cache(tmp_path, isolated):
    folder = write_fashion(tmp_path / "fm")
    first = load_dataset("fashion-mnist", root=folder)
    first.images.zero_()
    first.masks.zero_()
    again = load_dataset("fashion-mnist", root=folder)
    assert again.images.sum() > 0 and again.masks.sum() > 0


def test_plain_unzipped_files_are_accepted(tmp_path, isolated):
    folder = write_fashion(tmp_path / "fm")
    for name in fashion_mnist.file_names("test"):
        (folder / name.removesuffix(".gz")).write_bytes(gzip.decompress((folder / name).read_bytes()))
        (folder / name).unlink()
    assert len(load_dataset("fashion-mnist", root=folder)) == 20


def test_labels_out_of_range(tmp_path, isolated):
    folder = write_fashion(tmp_path / "fm")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.full(20, 12, np.uint8))))
    with pytest.raises(DatasetError, match="label 12 is out of range 0..9"):
        load_dataset("fashion-mnist", root=folder)


def test_image_and_label_counts_must_agree(tmp_path, isolated):
    folder = write_fashion(tmp_path / "fm")
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(np.zeros(7, np.uint8))))
    with pytest.raises(DatasetError, match="20 images but .* 7 labels"):
        load_dataset("fashion-mnist", root=folder)


def test_truncated_gzip_and_wrong_format(tmp_path, isolated):
    folder = write_fashion(tmp_path / "fm")
    images = folder / "t10k-images-idx3-ubyte.gz"
    whole = images.read_bytes()
    images.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(DatasetError, match="not a complete gzip file"):
        load_dataset("fashion-mnist", root=folder)
    images.write_bytes(gzip.compress(b"%PDF-1.4 definitely not idx" * 10))
    with pytest.raises(DatasetError, match="bad magic"):
        load_dataset("fashion-mnist", root=folder)


def test_wrong_split_and_unknown_dataset(tmp_path, isolated):
    folder = write_fashion(tmp_path / "fm")
    with pytest.raises(DatasetError, match="no split 'validation'"):
        load_dataset("fashion-mnist", split="validation", root=folder)
    with pytest.raises(DatasetError, match="unknown dataset 'mnist'.*fashion-mnist"):
        load_dataset("mnist")


# ---- lookup order -------------------------------------------------------------------------------------

def test_lookup_order(tmp_path, isolated, monkeypatch):
    explicit = write_fashion(tmp_path / "explicit", n_test=11)
    env = write_fashion(tmp_path / "env" / "fashion-mnist", n_test=12)  # the subfolder form
    system = write_fashion(tmp_path / "system", n_test=13)
    cached = write_fashion(isolated, n_test=14)
    monkeypatch.setenv("BINSIGHT_DATA", str(tmp_path / "env"))
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", system)
    assert len(load_dataset("fashion-mnist", root=explicit, download=False)) == 11
    assert len(load_dataset("fashion-mnist", download=False)) == 12
    monkeypatch.setenv("BINSIGHT_DATA", str(tmp_path / "empty"))
    assert len(load_dataset("fashion-mnist", download=False)) == 13
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", tmp_path / "gone")
    ds = load_dataset("fashion-mnist", download=False)
    assert len(ds) == 14 and ds.source == f"{cached} (download cache)"
    monkeypatch.setenv("BINSIGHT_DATA", str(env))  # BINSIGHT_DATA pointing at the files directly
    assert len(load_dataset("fashion-mnist", download=False)) == 12


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path, isolated):
    with pytest.raises(DatasetError) as err:
        load_dataset("fashion-mnist", download=False)
    message = str(err.value)
    for words in ("not found", str(fashion_mnist.SYSTEM_DIR), str(isolated), "apt-get install dataset-fashion-mnist",
                  "BINSIGHT_DATA", "--no-download"):
        assert words in message


def test_wrong_explicit_root_is_an_error_not_a_fallback(tmp_path, isolated, monkeypatch):
    monkeypatch.setattr(fashion_mnist, "SYSTEM_DIR", write_fashion(tmp_path / "system"))
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset("fashion-mnist", root=tmp_path / "typo")
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("x")
    with pytest.raises(DatasetError, match="does not hold t10k-images-idx3-ubyte.gz.*notes.txt"):
        load_dataset("fashion-mnist", root=tmp_path / "other")


# ---- download -----------------------------------------------------------------------------------------

def test_download_from_local_mirror(tmp_path, isolated, http_root):
    served, url = http_root
    write_fashion(served)
    ds = load_dataset("fashion-mnist", url=url, checksums=content_sums(served))
    assert len(ds) == 20 and ds.source == f"{url} (downloaded to {isolated})"
    assert sorted(p.name for p in isolated.iterdir()) == sorted(fashion_mnist.file_names("test"))
    for name in fashion_mnist.file_names("test"):
        assert (isolated / name).read_bytes() == (served / name).read_bytes()
    # next time the cache answers, without the server
    assert load_dataset("fashion-mnist", download=False).checksum() == ds.checksum()


def test_download_url_from_environment(tmp_path, isolated, http_root, monkeypatch):
    served, url = http_root
    write_fashion(served)
    monkeypatch.setenv(fashion_mnist.URL_ENV, url)
    assert len(load_dataset("fashion-mnist", checksums=content_sums(served))) == 20


def test_download_checksum_mismatch_leaves_nothing(tmp_path, isolated, http_root):
    served, url = http_root
    write_fashion(served)
    wrong = {name: "0" * 64 for name in fashion_mnist.file_names("test")}
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset("fashion-mnist", url=url, checksums=wrong)
    assert list(isolated.iterdir()) == []


def test_download_of_published_checksums_rejects_other_content(tmp_path, isolated, http_root):
    served, url = http_root
    write_fashion(served)  # fabricated files are not the published Fashion-MNIST
    with pytest.raises(DatasetError, match="checksum mismatch"):
        load_dataset("fashion-mnist", url=url)
    assert list(isolated.iterdir()) == []


def test_download_truncated_file_leaves_nothing(tmp_path, isolated, http_root):
    served, url = http_root
    write_fashion(served)
    sums = content_sums(served)
    images = served / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(images.read_bytes()[:-40])
    with pytest.raises(DatasetError, match="t10k-images.*truncated or corrupt"):
        load_dataset("fashion-mnist", url=url, checksums=sums)
    assert list(isolated.iterdir()) == []


def test_download_missing_on_server(tmp_path, isolated, http_root):
    _, url = http_root
    with pytest.raises(DatasetError, match="(?s)could not download t10k-images-idx3-ubyte.gz.*HTTP 404"):
        load_dataset("fashion-mnist", url=url)
    assert list(isolated.iterdir()) == []


# ---- ImageDataset ------------------------------------------------------------------------------------

def test_subset_is_deterministic_and_keeps_masks_aligned(tmp_path, isolated):
    ds = load_dataset("fashion-mnist", split="train", root=write_fashion(tmp_path / "fm"))
    a, b, c = ds.subset(10, seed=3), ds.subset(10, seed=3), ds.subset(10, seed=4)
    assert len(a) == 10 and a.checksum() == b.checksum() != c.checksum()
    assert (a.name, a.split, a.classes, a.source) == (ds.name, ds.split, ds.classes, ds.source)
    for image, mask in zip(a.images, a.masks):
        rows = [i for i in range(len(ds)) if torch.equal(ds.images[i], image)]
        assert rows and torch.equal(ds.masks[rows[0]], mask)
    assert ds.subset(len(ds), seed=0).checksum() == ds.checksum()  # all of it, in dataset order
    with pytest.raises(DatasetError, match="subset of 31 images"):
        ds.subset(31)


def test_checksum_sees_every_pixel_and_label(tmp_path, isolated):
    ds = load_dataset("fashion-mnist", root=write_fashion(tmp_path / "fm"))
    before = ds.checksum()
    assert len(before) == 64 and before == load_dataset("fashion-mnist", root=tmp_path / "fm").checksum()
    ds.images[5, 0, 27, 27] += 1e-3
    changed_pixel = ds.checksum()
    ds.labels[0] = 9
    assert len({before, changed_pixel, ds.checksum()}) == 3


# ---- binsight data ------------------------------------------------------------------------------------

def test_describe_and_cli(tmp_path, isolated, capsys):
    folder = write_fashion(tmp_path / "fm")
    text = describe("fashion-mnist", root=folder)
    assert "train 30 images, test 20 images" in text and str(folder) in text
    assert "1 x 28 x 28" in text and "Ankle boot" in text and "foreground masks: yes" in text
    test_sum = load_dataset("fashion-mnist", root=folder).checksum()
    assert f"checksum (test, sha256 of images+labels): {test_sum}" in text
    assert main(["data", "fashion-mnist", "--root", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == text


def test_cli_reports_a_missing_dataset_as_one_clear_error(tmp_path, isolated, capsys):
    assert main(["data", "fashion-mnist", "--no-download"]) == 2
    err = capsys.readouterr().err
    assert "binsight data: error: fashion-mnist (train) not found" in err and "Traceback" not in err


# ---- the real Debian files ----------------------------------------------------------------------------

@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed "
                    "(/usr/share/datasets/fashion-mnist absent; apt-get install dataset-fashion-mnist)")
def test_real_fashion_mnist_from_debian(capsys):
    train = load_dataset("fashion-mnist", split="train", root=DEBIAN)
    test = load_dataset("fashion-mnist", split="test", root=DEBIAN)
    assert (len(train), len(test)) == (60_000, 10_000)
    assert train.images.shape == (60_000, 1, 28, 28) and test.masks.shape == (10_000, 1, 28, 28)
    assert len(train.classes) == 10
    assert torch.bincount(train.labels).tolist() == [6000] * 10
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert 0.0 <= float(train.images.min()) and float(train.images.max()) == 1.0
    coverage = test.masks.float().mean(dim=(1, 2, 3))
    assert 0.3 < float(coverage.mean()) < 0.7 and float(coverage.min()) > 0.0  # every item has an object
    # the content is the published Fashion-MNIST (the checksums downloads are verified against)
    for name, expected in fashion_mnist.CHECKSUMS.items():
        assert hashlib.sha256(gzip.decompress((DEBIAN / name).read_bytes())).hexdigest() == expected
    assert main(["data", "fashion-mnist", "--root", str(DEBIAN)]) == 0
    assert "train 60,000 images, test 10,000 images" in capsys.readouterr().out


@pytest.mark.skipif(not DEBIAN.is_dir(), reason="Debian's dataset-fashion-mnist is not installed "
                    "(/usr/share/datasets/fashion-mnist absent; apt-get install dataset-fashion-mnist)")
def test_download_of_the_real_files_passes_the_built_in_checksums(isolated, http_root):
    served, url = http_root
    for name in fashion_mnist.file_names("test"):
        (served / name).write_bytes((DEBIAN / name).read_bytes())
    ds = load_dataset("fashion-mnist", split="test", url=url, masks=False)
    assert len(ds) == 10_000 and ds.masks is None and ds.source.startswith(url)


def test_download_and_gunzip_are_bounded(tmp_path, http_root):
    from binsight.data.download import fetch_verified

    served, url = http_root
    (served / "big.bin").write_bytes(bytes(5000))
    with pytest.raises(DatasetError, match="the server sent more than 4,096 bytes"):
        fetch_verified([f"{url}/big.bin"], tmp_path / "big.bin", "0" * 64, max_bytes=4096)
    (served / "bomb.gz").write_bytes(gzip.compress(bytes(100_000)))  # 100 kB from a few hundred bytes
    with pytest.raises(DatasetError, match="content larger than 4,096 bytes"):
        fetch_verified([f"{url}/bomb.gz"], tmp_path / "bomb.gz", "0" * 64, gunzip=True, max_bytes=4096)
    assert list(tmp_path.glob("b*")) == []
