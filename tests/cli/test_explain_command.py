"""``binsight explain`` end to end: a tiny checkpoint saved here, image files in, overlays and maps out."""

from __future__ import annotations

import subprocess
import sys
import zlib

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from PIL import Image

from binsight.cli import main
from binsight.data.images import ImageReadError
from binsight.explain.base import ExplainerError
from binsight.explain.files import as_target, explain_files, load_input
from binsight.explain.gradient import Gradient
from binsight.models import build_model
from binsight.models.checkpoint import load_checkpoint, save_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

CLASSES = ["T-shirt", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    root = tmp_path_factory.mktemp("ckpt")
    paths = {}
    for precision in ("fp", "bnn"):
        torch.manual_seed(0)
        model = build_model("small-cnn", precision)
        paths[precision] = save_checkpoint(model, root / f"tiny-{precision}", {"class_names": CLASSES})
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
    x, notices = load_input(images[0], 1, (28, 28))
    assert notices == ["shirt.png: converted from RGB to grayscale (the model takes 1 channel)",
                       "shirt.png: resized from 30x40 to 28x28 pixels, scaled and padded with black (aspect ratio kept)"]
    both = torch.cat([x, load_input(images[1], 1, (28, 28))[0]])  # the images of one size go in one batch
    expected = Gradient(model).attribute(both, 0)[0, 0].numpy()
    raw = np.load(out / "shirt.gradient.npy")
    assert raw.shape == (28, 28) and raw.dtype == np.float32
    np.testing.assert_allclose(raw, expected, rtol=1e-6)
    png = mpimg.imread(out / "shirt.gradient.png")
    assert png.ndim == 3 and png.shape[0] > 28
    printed = capsys.readouterr()
    assert "class 0 (T-shirt)" in printed.out
    assert "note: shirt.png: converted from RGB to grayscale" in printed.err


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
    assert "none.safetensors not found" in capsys.readouterr().err
    bomb = tmp_path / "bomb.png"
    Image.new("L", (2, 2)).save(bomb)
    raw = bytearray(bomb.read_bytes())
    raw[16:24] = (20000).to_bytes(4, "big") * 2  # IHDR: 20000 x 20000, then the chunk's CRC
    raw[29:33] = zlib.crc32(bytes(raw[12:29])).to_bytes(4, "big")
    bomb.write_bytes(bytes(raw))
    assert main(["explain", str(bomb), "--model", str(checkpoints["fp"]), "--out", str(out)]) == 2
    assert "400,000,000 pixels, more than binsight reads" in capsys.readouterr().err
    assert not out.exists() or not any(out.iterdir())


def test_numpy_and_0d_tensor_targets(checkpoints, images, tmp_path):
    model, meta = load_checkpoint(checkpoints["fp"])
    for target in (np.int64(3), torch.tensor(3), np.array(3), torch.tensor([3])):
        (result,) = explain_files([str(images[1])], model, meta, "gradient", tmp_path / "o", target=target)
        assert result[1].targets.tolist() == [3]
    results = explain_files([str(p) for p in images], model, meta, "gradient", tmp_path / "o", target=np.int64(2))
    assert [r[1].targets.tolist() for r in results] == [[2], [2]]
    for bad in (True, 2.0, torch.tensor(2.0), np.array([1, 2]), "2"):
        with pytest.raises(ExplainerError, match="target must be"):
            as_target(bad)


def test_fit_refuse_and_notices(checkpoints, images, tmp_path):
    model, meta = load_checkpoint(checkpoints["fp"])
    lines = []
    explain_files([str(images[0])], model, meta, "gradient", tmp_path / "o", fit="stretch", notify=lines.append)
    assert lines[-1] == "shirt.png: resized from 30x40 to 28x28 pixels, stretched"
    with pytest.raises(ImageReadError, match="shirt.png is 30x40 pixels and the model takes 28x28"):
        explain_files([str(images[0])], model, meta, "gradient", tmp_path / "r", fit="refuse")
    assert not (tmp_path / "r").exists()


def test_16_bit_input_is_scaled(tmp_path):
    Image.fromarray(np.full((28, 28), 16384, np.uint16)).save(tmp_path / "deep.png")
    x, notices = load_input(tmp_path / "deep.png", 1, (28, 28))
    assert notices == [] and torch.allclose(x, torch.full((1, 1, 28, 28), 16384 / 65535))


def test_explaining_a_checkpoint_never_imports_training(checkpoints, images, tmp_path):
    code = (
        "import sys\n"
        "from binsight.cli import main\n"
        f"assert main(['explain', {str(images[1])!r}, '--model', {str(checkpoints['bnn'])!r}, '--out', {str(tmp_path)!r}]) == 0\n"
        "assert 'binsight.train' not in sys.modules, 'binsight.train was imported'\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


def test_absurd_input_size_in_a_side_file_is_refused(checkpoints, images, tmp_path):
    model, meta = load_checkpoint(checkpoints["fp"])
    meta = {**meta, "spec": {**meta["spec"], "input_size": [2**20, 2**20]}}
    model.binsight_spec = meta["spec"]
    with pytest.raises(ExplainerError, match=r"input size \[1048576, 1048576\] is not \(H, W\) of at most"):
        explain_files([str(images[0])], model, meta, "gradient", tmp_path / "o")


def test_a_progress_bar_goes_to_the_methods_that_can_show_one():
    """``explain`` with progress on gives NeuroMask its step bar (its maps take seconds each) and asks no
    other method for an option it does not have; progress off asks nothing."""
    from binsight.explain.files import _method_options

    shown = _method_options(["neuromask", "gradient"], None, signed=False, surrogate=None, progress=True)
    assert shown == {"neuromask": {"show_progress": True}, "gradient": {}}
    assert _method_options(["neuromask"], None, signed=False, surrogate=None) == {"neuromask": {}}


def _drawn_texts(monkeypatch) -> list:
    """Collects every matplotlib Text of each figure saved from now on, as (shown text, drawn as math)."""
    from matplotlib.figure import Figure
    from matplotlib.text import Text

    texts = []
    save = Figure.savefig

    def spy(fig, *args, **kwargs):
        for t in fig.findobj(Text):
            if t.get_text():
                shown, math = t._preprocess_math(t.get_text())
                texts.append((shown, bool(math)))
        return save(fig, *args, **kwargs)

    monkeypatch.setattr(Figure, "savefig", spy)
    return texts


def test_dollar_signs_in_names_are_drawn_as_written(tmp_path, monkeypatch, capsys):
    """Class and file names holding ``$`` neither crash the overlay nor turn into math."""
    torch.manual_seed(0)
    names = ["a$b$c", "$x$"] + [f"c{i}" for i in range(8)]
    ckpt = save_checkpoint(build_model("small-cnn", "fp"), tmp_path / "dollar", {"class_names": names})
    image = tmp_path / "$x$.png"
    Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(image)
    texts = _drawn_texts(monkeypatch)
    for target in ("0", "1"):
        code = main(["explain", str(image), "--model", str(ckpt), "--target", target, "--out", str(tmp_path / "o")])
        assert code == 0, capsys.readouterr().err
    titles = [shown for shown, _ in texts if "$x$.png" in shown]
    assert len(titles) == 2 and any("explains class 0 (a$b$c)" in t for t in titles)
    assert any("explains class 1 ($x$)" in t for t in titles)
    assert not any(math for shown, math in texts if "$" in shown), texts


def test_an_out_that_is_a_file_is_a_one_line_error(checkpoints, images, tmp_path, capsys):
    taken = tmp_path / "maps"
    taken.write_text("mine")
    assert main(["explain", str(images[1]), "--model", str(checkpoints["fp"]), "--out", str(taken)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"--out {taken} is a file; give a folder" in err
    assert taken.read_text() == "mine"


@pytest.mark.parametrize("flag,value", [("--param", "noise=" + "[" * 100_000 + "]" * 100_000),
                                        ("--param", "noise=" + "[" * 40 + "]" * 40),
                                        ("--kwargs", "{\"a\": " * 100_000 + "1" + "}" * 100_000)])
def test_deeply_nested_json_is_a_one_line_error(checkpoints, images, tmp_path, capsys, flag, value):
    model = ["--factory", "own_models:make_fp"] if flag == "--kwargs" else ["--model", str(checkpoints["fp"])]
    assert main(["explain", str(images[1]), *model, flag, value, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "is JSON nested more than 32 levels deep" in err
    assert len(err) < 300


@pytest.mark.parametrize("argv", [["missing.png", "--model", "x"], ["IMAGE", "--model", "missing"],
                                  ["IMAGE", "--model", "CKPT", "--out", "IMAGE"],
                                  ["IMAGE", "--factory", "m:f", "--weights", "missing.pt"],
                                  ["IMAGE", "--model", "CKPT", "--param", "a=[1,"]])
def test_path_and_argument_errors_come_before_torch_is_imported(checkpoints, images, argv):
    """A mistyped path or flag is reported at once: the command stops before it imports torch."""
    argv = [{"IMAGE": str(images[1]), "CKPT": str(checkpoints["fp"])}.get(a, a) for a in argv]
    code = ("import sys\nfrom binsight.cli import main\n"
            f"assert main(['explain', *{argv!r}]) == 2\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("binsight explain: error: ")


def test_the_checkpoint_rule_spelled_for_the_command_line_agrees(tmp_path):
    from binsight.cli.explain import checkpoint_weights
    from binsight.models.checkpoint import checkpoint_paths

    for given in ("m", "m.safetensors", "m.json", "dir/m.v2", "m.pt"):
        assert checkpoint_weights(str(tmp_path / given)) == checkpoint_paths(tmp_path / given)[0]


def test_an_fp_and_a_bnn_checkpoint_in_one_figure(checkpoints, images, tmp_path, monkeypatch, capsys):
    """``--model FP --model BNN``: one figure per image, rows = models (named with precision, surrogate and
    prediction), columns = the image and each method, one colour scale per method shared by both models."""
    from matplotlib.figure import Figure

    figures = []
    save = Figure.savefig
    monkeypatch.setattr(Figure, "savefig", lambda fig, *a, **kw: (figures.append(fig), save(fig, *a, **kw))[1])
    out = tmp_path / "out"
    argv = ["explain", str(images[1]), "--model", str(checkpoints["fp"]), "--model", str(checkpoints["bnn"]),
            "--method", "gradient", "--method", "smoothgrad", "--param", "smoothgrad.n_samples=2", "--surrogate", "ste",
            "--target", "Bag", "--quiet",
            "--out", str(out)]
    assert main(argv) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "shoe.models.png", "shoe.tiny-bnn.gradient.npy", "shoe.tiny-bnn.smoothgrad.npy", "shoe.tiny-fp.gradient.npy",
        "shoe.tiny-fp.smoothgrad.npy"]
    assert f"-> {out / 'shoe.models.png'}" in capsys.readouterr().out
    (fig,) = figures
    grid = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
    assert len(grid) == 2 * 3
    assert [ax.get_title() for ax in grid[:3]] == ["image", "gradient", "smoothgrad"]
    rows = [grid[0].get_ylabel(), grid[3].get_ylabel()]
    assert rows[0].startswith("tiny-fp (FP)\npredicted class ") and rows[0].endswith("explains class 8 (Bag)")
    assert rows[1].startswith("tiny-bnn (BNN, surrogate ste)\npredicted class ")
    bars = [ax for ax in fig.axes if ax.get_label() == "<colorbar>"]
    assert len(bars) == 2
    for column, method in ((1, "gradient"), (2, "smoothgrad")):
        maps = [np.load(out / f"shoe.tiny-{p}.{method}.npy") for p in ("fp", "bnn")]
        limits = {grid[row * 3 + column].get_images()[-1].get_clim() for row in (0, 1)}
        assert limits == {(0.0, max(float(m.max()) for m in maps))}


def test_several_models_need_distinct_names(checkpoints, images, tmp_path, capsys):
    twin = tmp_path / "other" / "tiny-fp.safetensors"
    twin.parent.mkdir()
    twin.write_bytes(checkpoints["fp"].read_bytes())
    argv = ["explain", str(images[1]), "--model", str(checkpoints["fp"]), "--model", str(twin), "--out", str(tmp_path)]
    assert main(argv) == 2
    assert "two checkpoints are named 'tiny-fp'" in capsys.readouterr().err


def test_dollar_signs_in_model_names_of_the_comparison_figure(checkpoints, tmp_path, monkeypatch, capsys):
    paths = []
    for name, precision in (("a$b$c", "fp"), ("$x$", "bnn")):
        for suffix in (".safetensors", ".json"):
            (tmp_path / f"{name}{suffix}").write_bytes(checkpoints[precision].with_suffix(suffix).read_bytes())
        paths += ["--model", str(tmp_path / name)]
    image = tmp_path / "$y$.png"
    Image.fromarray(np.zeros((28, 28), np.uint8), mode="L").save(image)
    texts = _drawn_texts(monkeypatch)
    assert main(["explain", str(image), *paths, "--quiet", "--out", str(tmp_path / "o")]) == 0, capsys.readouterr().err
    shown = [text for text, _ in texts]
    assert "$y$.png" in shown and any(t.startswith("a$b$c (FP)") for t in shown)
    assert any(t.startswith("$x$ (BNN") for t in shown)
    assert not any(math for text, math in texts if "$" in text), texts
