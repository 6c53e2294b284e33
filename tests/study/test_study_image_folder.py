"""A study of an image folder trains its models on the images at the study's ``data.image_size`` and
``data.channels`` (also the model cache's key), so a grey study trains and runs to its verdicts and a model
trained at another size is never used on the study's images."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from binsight.study.config import config_from_dict, tomllib
from binsight.study.plan import make_plan
from binsight.study.runner import open_run, run_stages, run_study
from binsight.study.stages import ImagesStage, ModelsStage

pytestmark = pytest.mark.slow

STUDY = """
[data]
name = "image-folder"
n_images = 4
[models]
precisions = ["fp", "bnn"]
seeds = [0]
epochs_fp = 1
epochs_bnn = 1
train_batch_size = 8
[methods]
run = ["gradient"]
[measures]
faithfulness = false
sanity = false
baselines = false
chance_methods = []
[verdicts]
n_resamples = 20
robustness_surrogates = []
[run]
device = "cpu"
chunk_size = 2
progress = false
"""


def image_folder(root: Path) -> Path:
    """root/{train,test}/{dark,light}/*.png: 6 RGB 20 x 16 images per class and split."""
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, level in (("dark", 40), ("light", 200)):
            folder = root / split / label
            folder.mkdir(parents=True)
            for i in range(6):
                pixels = np.clip(level + rng.normal(0, 20, (16, 20, 3)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.png")
    return root


def config(root: Path, **data):
    raw = tomllib.loads(STUDY)
    raw["data"].update(root=str(root), **data)
    return config_from_dict(raw)


@pytest.fixture()
def images(tmp_path, monkeypatch):
    monkeypatch.setenv("BINSIGHT_CACHE", str(tmp_path / "cache"))
    return image_folder(tmp_path / "images")


def test_a_grey_image_folder_study_trains_at_its_size_and_runs_to_the_end(images, tmp_path):
    verdicts = run_study(config(images, image_size=10, channels=1), tmp_path / "run")
    assert verdicts is not None and (tmp_path / "run" / "verdicts.json").is_file()
    models = json.loads((tmp_path / "run" / "models.json").read_text())
    assert [m["name"] for m in models] == ["fp-0", "bnn-0"]
    for record in models:
        side = json.loads((tmp_path / "run" / record["checkpoint"]).with_suffix(".json").read_text())
        assert side["spec"]["in_channels"] == 1 and side["spec"]["input_size"] == [10, 10], record["name"]


def test_models_of_another_size_are_not_taken_from_the_cache(images, tmp_path):
    for size in (12, 8):
        plan = make_plan(config(images, image_size=size, channels=3))
        with open_run(plan, tmp_path / f"run{size}") as ctx:
            run_stages(ctx, stages=(ImagesStage(), ModelsStage()))
            assert ctx.images.images.shape[1:] == (3, size, size)
            for model in ctx.base:
                assert model.module.binsight_spec["input_size"] == [size, size], (size, model.name)
                assert model.module.binsight_spec["in_channels"] == 3


def test_a_checkpoint_trained_at_another_size_is_refused(images, tmp_path):
    from binsight.study.config import ConfigError
    from binsight.train import cached_model

    _, meta = cached_model("small-cnn", "fp", "image-folder", 0, 1, data_root=str(images), image_size=12,
                           channels=3, batch_size=8, model_options={"widths": [4, 8, 8]}, progress=False, device="cpu")
    raw = tomllib.loads(STUDY)
    raw["data"].update(root=str(images), image_size=8, channels=3)
    raw["models"] = {"checkpoints": [{"path": meta["checkpoint"], "name": "at-12"}]}
    with pytest.raises(ConfigError, match=r"model 'at-12' was trained on 3 x 12 x 12 images \(channels x height x "
                                          r"width\), the study explains 3 x 8 x 8 ones; set data.image_size"):
        run_study(config_from_dict(raw), tmp_path / "run")
    assert not (tmp_path / "run" / "models.json").exists()
