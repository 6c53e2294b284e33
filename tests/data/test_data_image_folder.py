"""image-folder reader: classes from subfolders, resize + centre crop, box and mask side files, splits."""

from __future__ import annotations

import json
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from binsight.data import DatasetError, RootNeededError, describe, load_dataset


def save(path: Path, array: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path)
    return path


def two_class_tree(root: Path) -> Path:
    """root/cat: a 40x20 (w x h) red image; root/dog: a 20x20 gray jpg and a 10x30 green png."""
    red = np.zeros((20, 40, 3), np.uint8)
    red[..., 0] = 255
    save(root / "cat" / "a.png", red)
    save(root / "dog" / "b.jpg", np.full((20, 20, 3), 128, np.uint8))
    green = np.zeros((30, 10, 3), np.uint8)
    green[..., 1] = 255
    save(root / "dog" / "c.png", green)
    (root / "dog" / "notes.txt").write_text("not an image")
    (root / "empty-class").mkdir()
    return root


def test_classes_labels_resize_and_crop(tmp_path):
    root = two_class_tree(tmp_path / "tree")
    ds = load_dataset("image-folder", root=root, size=8)
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 1, 1]
    assert ds.images.shape == (3, 3, 8, 8) and ds.images.dtype == torch.float32
    assert torch.allclose(ds.images[0, 0], torch.ones(8, 8)) and float(ds.images[0, 1:].abs().max()) == 0.0
    assert torch.allclose(ds.images[1], torch.full((3, 8, 8), 128 / 255), atol=2 / 255)  # jpeg is lossy
    assert torch.allclose(ds.images[2, 1], torch.ones(8, 8))
    assert (ds.name, ds.split, ds.source, ds.masks) == ("image-folder", "all", str(root), None)
    gray = load_dataset("image-folder", root=root, size=8, channels=1)
    assert gray.images.shape == (3, 1, 8, 8)


def test_centre_crop_keeps_the_middle(tmp_path):
    # 30 wide x 10 high: left third black, middle third white, right third black -> 10x10 crop is all white
    image = np.zeros((10, 30), np.uint8)
    image[:, 10:20] = 255
    save(tmp_path / "t" / "k" / "x.png", image)
    ds = load_dataset("image-folder", root=tmp_path / "t", size=10, channels=1)
    assert torch.equal(ds.images[0, 0], torch.ones(10, 10))


def test_boxes_and_mask_images_follow_the_resize_and_crop(tmp_path):
    root = tmp_path / "tree"
    save(root / "k" / "wide.png", np.zeros((20, 40, 3), np.uint8))   # 40 wide: scale 0.5 -> 20x10, crop x 5..15
    save(root / "k" / "square.png", np.zeros((20, 20, 3), np.uint8))
    mask = np.zeros((20, 20), np.uint8)
    mask[:10, :] = 255                                                  # top half
    save(root / "masks" / "square.png", mask)
    (root / "masks.json").write_text(json.dumps({
        "k/wide.png": {"box": [10, 0, 30, 20]},   # columns 10..29 -> 5..14 after scaling -> 0..9 after crop
        "k/square.png": {"mask": "masks/square.png"},
    }))
    ds = load_dataset("image-folder", root=root, size=10)
    assert ds.classes == ["k"] and len(ds) == 2  # root/masks/ holds masks named by the side file, not a class
    square, wide = ds.masks[0, 0], ds.masks[1, 0]                      # files sorted: square, wide
    assert ds.masks.dtype == torch.bool and ds.masks.shape == (2, 1, 10, 10)
    assert bool(wide.all())
    assert bool(square[:5].all()) and not bool(square[5:].any())
    (root / "masks" / "square.png").unlink()  # else, unnamed by the next side file, it would be a class image
    partial_box = root / "other.json"
    partial_box.write_text(json.dumps({"k/wide.png": {"box": [0, 0, 10, 20]}, "k/square.png": {"box": [0, 0, 1, 1]}}))
    narrow = load_dataset("image-folder", root=root, size=10, masks=partial_box).masks[1, 0]
    assert not bool(narrow.any())  # the box lies in the part the crop cut away


def test_train_test_splits(tmp_path):
    two_class_tree(tmp_path / "root" / "train")
    save(tmp_path / "root" / "test" / "cat" / "z.png", np.zeros((5, 5, 3), np.uint8))
    assert len(load_dataset("image-folder", split="train", root=tmp_path / "root", size=4)) == 3
    test = load_dataset("image-folder", split="test", root=tmp_path / "root", size=4)
    assert len(test) == 1 and test.split == "test"
    text = describe("image-folder", root=tmp_path / "root")
    assert "train 3 images, test 1 images" in text
    with pytest.raises(DatasetError, match="no train/ and test/ subfolders"):
        load_dataset("image-folder", split="train", root=tmp_path / "root" / "train")


@pytest.mark.parametrize("side, words", [
    ({"k/a.png": {"box": [0, 0, 99, 5]}}, "outside the 8x8 image"),
    ({"k/a.png": {"box": [3, 3, 3, 5]}}, "empty or outside"),
    ({"k/a.png": {"box": "whole"}}, "four integers"),
    ({}, "no .* entry for 'k/a.png'"),
    ({"k/a.png": {"mask": "m.png"}}, "mask .*m.png of 'k/a.png' is 4x4, the image is 8x8"),
])
def test_bad_side_files(tmp_path, side, words):
    save(tmp_path / "r" / "k" / "a.png", np.zeros((8, 8, 3), np.uint8))
    save(tmp_path / "r" / "m.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "r" / "masks.json").write_text(json.dumps(side))
    with pytest.raises(DatasetError, match=words):
        load_dataset("image-folder", root=tmp_path / "r", size=4)


def test_bad_folders_and_files(tmp_path):
    with pytest.raises(RootNeededError, match=r"needs a root folder, .*; give its path: --root of binsight data, "
                                              r"--data-root of binsight train and evaluate, data.root of a study"):
        load_dataset("image-folder")
    with pytest.raises(DatasetError, match="is not a folder"):
        load_dataset("image-folder", root=tmp_path / "missing")
    (tmp_path / "empty" / "cat").mkdir(parents=True)
    with pytest.raises(DatasetError, match="no images in .*class_name"):
        load_dataset("image-folder", root=tmp_path / "empty")
    (tmp_path / "broken" / "cat").mkdir(parents=True)
    (tmp_path / "broken" / "cat" / "x.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"image-folder: cannot read .*x\.png as an image"):
        load_dataset("image-folder", root=tmp_path / "broken")
    (tmp_path / "ok" / "cat").mkdir(parents=True)
    save(tmp_path / "ok" / "cat" / "y.png", np.zeros((4, 4), np.uint8))
    (tmp_path / "ok" / "masks.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset("image-folder", root=tmp_path / "ok")
    with pytest.raises(DatasetError, match="channels must be 1 .* or 3"):
        load_dataset("image-folder", root=tmp_path / "ok", masks=tmp_path / "none.json", channels=2)


def test_16_bit_and_palette_images_are_scaled_not_clipped(tmp_path):
    root = tmp_path / "deep"
    values = np.full((4, 4), 16384, np.uint16)  # a quarter of the 16-bit range
    save(root / "k" / "a.png", values)
    save(root / "k" / "b.tif", values)
    Image.fromarray(np.full((4, 4, 3), 64, np.uint8)).quantize(colors=2).save(root / "k" / "c.png")
    ds = load_dataset("image-folder", root=root, size=4, channels=1)
    assert len(ds) == 3
    np.testing.assert_allclose(ds.images[:2].numpy(), 16384 / 65535, rtol=1e-5)
    np.testing.assert_allclose(ds.images[2].numpy(), 64 / 255, rtol=1e-5)


def test_decompression_bomb_in_a_folder_is_a_dataset_error(tmp_path):
    bomb = tmp_path / "b" / "k" / "bomb.png"
    save(bomb, np.zeros((2, 2), np.uint8))
    raw = bytearray(bomb.read_bytes())
    raw[16:24] = (20000).to_bytes(4, "big") * 2  # IHDR width and height, then the chunk's CRC
    raw[29:33] = zlib.crc32(bytes(raw[12:29])).to_bytes(4, "big")
    bomb.write_bytes(bytes(raw))
    with pytest.raises(DatasetError, match=r"image-folder: .*bomb\.png.*400,000,000 pixels, more than binsight reads"):
        load_dataset("image-folder", root=tmp_path / "b", size=8)
