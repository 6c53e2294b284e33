"""``binsight explain`` end to end: a tiny checkpoint saved here, image files in, overlays and maps out."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from PIL import Image

from binsight.cli import main
from binsight.explain.command import read_image, to_model_input
from binsight.explain.gradient import Gradient
from binsight.models import build_model
from binsight.train import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for precision in ("fp", "bnn"):
        torch.manual_seed(0)
        model = build_model("small-cnn", precision)
        paths[precision] = save_checkpoint(model, root / f"tiny-{precision}", {"class_names": [f"c{i}" for i in range(10)]})
    return paths


@pytest.fixture()
def images(tmp_path):
    rng = np.random.default_rng(0)
    rgb = tmp_path / "shirt.png"
    mpimg.imsave(rgb, rng.random((40, 30, 3)))  # colour, not the model's size: converted and resized
    gray = tmp_path / "shoe.jpg"
    Image.fromarray((rng.random((28, 28)) * 255).astype(np.uint8), mode="L").save(gray)
    return [rgb, gray]


def test_explain_writes_overlay_and_raw_map(checkpoints, images, tmp_path, capsys):
    out = tmp_path / "out"
    code = main(["explain", *map(str, images), "--model", str(checkpoints["fp"]), "--out", str(out), "--target", "0"])
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "shirt.gradient.npy", "shirt.gradient.png", "shoe.gradient.npy", "shoe.gradient.png",
    ]
    model, _ = load_checkpoint(checkpoints["fp"])
    x = to_model_input(read_image(images[0]), 1, (28, 28))
    expected = Gradient(model).attribute(x, 0)[0, 0].numpy()
    raw = np.load(out / "shirt.gradient.npy")
    assert raw.shape == (28, 28) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, expected, rtol=1e-6)
    png = mpimg.imread(out / "shirt.gradient.png")
    assert png.ndim == 3 and png.shape[0] > 28
    assert "class 0 (c0)" in capsys.readouterr().out


def test_explain_bnn_gradcam_with_surrogate(checkpoints, images, tmp_path, capsys):
    out = tmp_path / "out"
    argv = ["explain", str(images[1]), "--model", str(checkpoints["bnn"]), "--method", "gradcam",
            "--surrogate", "identity", "--out", str(out)]
    assert main(argv) == 0
    assert (out / "shoe.gradcam.npy").is_file() and (out / "shoe.gradcam.png").is_file()
    assert "surrogate identity" in capsys.readouterr().out
    assert main(["explain", str(images[1]), "--model", str(checkpoints["bnn"]), "--method", "captum:Saliency",
                 "--out", str(out)]) == 0
    assert (out / "shoe.captum-Saliency.npy").is_file()


@pytest.mark.parametrize("extra,message", [
    (["--method", "gradcm"], "unknown explainer 'gradcm'"),
    (["--target", "10"], "target 10 is out of range"),
    (["--method", "gradcam", "--surrogate", "nope"], "unknown sign surrogate 'nope'"),
])
def test_explain_errors_write_nothing(checkpoints, images, tmp_path, capsys, extra, message):
    out = tmp_path / "out"
    code = main(["explain", *map(str, images), "--model", str(checkpoints["bnn"]), "--out", str(out), *extra])
    assert code == 2
    assert message in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_explain_bad_files(checkpoints, images, tmp_path, capsys):
    out = tmp_path / "out"
    missing = tmp_path / "missing.png"
    assert main(["explain", str(images[0]), str(missing), "--model", str(checkpoints["fp"]), "--out", str(out)]) == 2
    assert "image not found" in capsys.readouterr().err
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["explain", str(text), "--model", str(checkpoints["fp"]), "--out", str(out)]) == 2
    assert "cannot read" in capsys.readouterr().err
    twin = tmp_path / "sub" / "shirt.png"
    twin.parent.mkdir()
    twin.write_bytes(images[0].read_bytes())
    assert main(["explain", str(images[0]), str(twin), "--model", str(checkpoints["fp"]), "--out", str(out)]) == 2
    assert "share the name 'shirt'" in capsys.readouterr().err
    assert main(["explain", str(images[0]), "--model", str(tmp_path / "none"), "--out", str(out)]) == 2
    assert not out.exists() or not any(out.iterdir())
