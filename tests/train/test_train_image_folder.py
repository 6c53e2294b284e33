"""Training on an image folder reads the images at the size and channels asked for (``image_size``,
``channels``), and both are part of the model cache's key: a model trained on 14 x 14 colour images is never
taken for one trained on 10 x 10 grey ones."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from binsight.train import TrainConfig, TrainError, cache_key, cached_model

TINY = dict(model_options={"widths": [4, 8, 8]}, epochs=1, batch_size=8, lr=0.01, progress=False, device="cpu")


def image_folder(root: Path, width: int = 20, height: int = 16) -> Path:
    """root/{train,test}/{dark,light}/*.png: 8 RGB images per class and split, dark or light with noise."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, level in (("dark", 40), ("light", 200)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(8):
                pixels = np.clip(level + rng.normal(0, 20, (height, width, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def test_image_size_and_channels_reach_training_and_the_cache_key(tmp_path):
    root = image_folder(tmp_path / "images")
    common = dict(dataset="image-folder", data_root=str(root), **TINY)
    grey, meta = cached_model("small-cnn", "fp", seed=0, cache=tmp_path / "cache", image_size=10, channels=1, **common)
    assert grey.binsight_spec["in_channels"] == 1 and grey.binsight_spec["input_size"] == [10, 10]
    assert meta["train_config"]["image_size"] == 10 and meta["train_config"]["channels"] == 1
    with torch.no_grad():
        assert grey(torch.rand(2, 1, 10, 10)).shape == (2, 2)
    colour, again = cached_model("small-cnn", "fp", seed=0, cache=tmp_path / "cache", image_size=14, channels=3,
                                 **common)
    assert not again["from_cache"] and again["checkpoint"] != meta["checkpoint"]
    assert colour.binsight_spec["in_channels"] == 3 and colour.binsight_spec["input_size"] == [14, 14]
    keys = {cache_key(TrainConfig(**common, image_size=size, channels=channels))
            for size in (None, 10, 14) for channels in (None, 1, 3)}
    assert len(keys) == 9


def test_a_dataset_at_its_own_size_keeps_its_cache_key():
    assert cache_key(TrainConfig(image_size=None, channels=None)) == cache_key(TrainConfig())
    assert cache_key(TrainConfig(image_size=28)) != cache_key(TrainConfig())


@pytest.mark.parametrize("bad, words", [(dict(image_size=0), "image_size must be a positive integer or None"),
                                        (dict(channels=1.0), "channels must be a positive integer or None")])
def test_bad_sizes_are_refused(bad, words):
    with pytest.raises(TrainError, match=words):
        TrainConfig(**bad).resolved()


def test_train_and_evaluate_without_a_root_name_their_own_flag(tmp_path, capsys):
    from binsight.cli import main

    assert main(["train", "--dataset", "image-folder", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("binsight train: error: image-folder needs a root folder") and err.count("\n") == 1
    assert "--data-root" in err and "--root" not in err
    root = image_folder(tmp_path / "images")
    out = tmp_path / "grey.safetensors"
    assert main(["train", "--dataset", "image-folder", "--data-root", str(root), "--image-size", "10", "--channels",
                 "1", "--epochs", "1", "--batch-size", "8", "--device", "cpu", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["evaluate", str(out), "--data-root", str(root)]) == 0  # at the size and channels it was trained at
    assert "test (16 images)" in capsys.readouterr().out
    assert main(["evaluate", str(out), "--dataset", "image-folder"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("binsight evaluate: error: image-folder needs a root folder") and "--root" not in err
    assert "--data-root" in err
