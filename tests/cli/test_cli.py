"""The command line a researcher types in the first hour: ``explain`` options (``--param``, class-name
targets, ``--fit``, ``--signed``, ``--shared-scale``), own models by ``--factory``, warnings and notices,
help texts, and the report's progress."""

from __future__ import annotations

import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import binsight.cli.explain as cli_explain
import binsight.cli.report as cli_report
import binsight.explain.files as command
from binsight.cli import main
from binsight.cli.explain import parse_params, parse_value, resolve_target
from binsight.cli.parser import ArgumentError
from binsight.data.images import FITS
from binsight.explain.gradient import Gradient
from binsight.explain.colour_scale import has_negative, scale_of
from binsight.explain.smoothgrad import SmoothGrad
from binsight.models import ModelSpec, load_checkpoint, load_model
from binsight.nn import use_surrogate_foreign
from test_explain_command import CLASSES, checkpoints  # noqa: F401  (a module-scoped fixture: tiny fp and bnn)

pytestmark = pytest.mark.filterwarnings("ignore:Input Tensor 0 did not already require gradients")

TESTS = Path(__file__).resolve().parents[1]  # tests/: own_models.py


@pytest.fixture()
def shoe(tmp_path):
    path = tmp_path / "shoe.png"
    Image.fromarray((np.random.default_rng(0).random((28, 28)) * 255).astype(np.uint8), mode="L").save(path)
    return path


def explain(*argv) -> int:
    return main(["explain", *map(str, argv)])


def shoe_input(path: Path) -> torch.Tensor:
    return command.load_input(path, 1, (28, 28))[0]


# -- --param ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("text,value", [
    ("50", 50), ("-3", -3), ("0.25", 0.25), ("1e-3", 1e-3), ("true", True), ("False", False), ("none", None),
    ("[1,3,3]", (1, 3, 3)), ("[[1,2],[3]]", ((1, 2), (3,))), ('{"a": [1]}', {"a": (1,)}), ("blur", "blur"),
    ("model.bn3", "model.bn3"),
])
def test_param_values_are_typed(text, value):
    parsed = parse_value(text)
    assert parsed == value and type(parsed) is type(value)


def test_params_for_every_method_or_one():
    options = parse_params(["seed=3", "smoothgrad.n_samples=8", "captum:Occlusion.strides=[1,2,2]"],
                           ["smoothgrad", "neuromask", "captum:Occlusion"])
    assert options == {"smoothgrad": {"seed": 3, "n_samples": 8}, "neuromask": {"seed": 3},
                       "captum:Occlusion": {"seed": 3, "strides": (1, 2, 2)}}
    for bad, message in [("n_samples", "is not NAME=VALUE"), ("gradcam.layer=x", "names method 'gradcam'"),
                         ("seed=1", "given twice"), ("noise=[1,", "not valid JSON")]:
        with pytest.raises(ArgumentError, match=message):
            parse_params(["seed=2", bad] if bad == "seed=1" else [bad], ["smoothgrad"])


def test_param_reaches_the_method(checkpoints, shoe, tmp_path):
    out = tmp_path / "out"
    assert explain(shoe, "--model", checkpoints["fp"], "--method", "smoothgrad", "--param", "n_samples=3",
                   "--param", "seed=7", "--target", "2", "--out", out) == 0
    model, _ = load_checkpoint(checkpoints["fp"])
    expected = SmoothGrad(model, n_samples=3, seed=7).attribute(shoe_input(shoe), 2)[0, 0].numpy()
    np.testing.assert_allclose(np.load(out / "shoe.smoothgrad.npy"), expected, rtol=1e-6)
    default = SmoothGrad(model).attribute(shoe_input(shoe), 2)[0, 0].numpy()
    assert not np.allclose(expected, default)


def test_captum_options_and_the_required_options_message(checkpoints, shoe, tmp_path, capsys):
    out = tmp_path / "out"
    assert explain(shoe, "--model", checkpoints["bnn"], "--method", "captum:Occlusion", "--out", out) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "captum:Occlusion needs 'sliding_window_shapes'" in err and "--param NAME=VALUE" in err
    assert explain(shoe, "--model", checkpoints["bnn"], "--method", "captum:Occlusion", "--method", "gradient",
                   "--param", "captum:Occlusion.sliding_window_shapes=[1,4,4]", "--out", out) == 0
    assert np.load(out / "shoe.captum-Occlusion.npy").shape == (28, 28)
    assert explain(shoe, "--model", checkpoints["fp"], "--method", "captum:Saliency", "--method", "gradient",
                   "--param", "abs=false", "--out", out) == 2
    err = capsys.readouterr().err
    assert "gradient': got an unexpected keyword argument 'abs'" in err and "--param gradient.NAME=VALUE" in err


def test_an_unknown_option_lists_what_the_method_takes(checkpoints, shoe, tmp_path, capsys):
    assert explain(shoe, "--model", checkpoints["fp"], "--param", "n_sample=3", "--out", tmp_path) == 2
    err = capsys.readouterr().err
    assert "unexpected keyword argument 'n_sample'" in err and "gradient takes reduction, signed" in err


# -- targets ------------------------------------------------------------------------------------------


def test_class_names_as_targets():
    assert resolve_target(None, CLASSES) is None
    assert resolve_target("8", CLASSES) == 8 and resolve_target("bag", CLASSES) == 8
    assert resolve_target("ANKLE BOOT", CLASSES) == 9
    with pytest.raises(ArgumentError, match=r"'Bagg' is not a class of this model \(did you mean Bag\?\)"):
        resolve_target("Bagg", CLASSES)
    with pytest.raises(ArgumentError, match="records no class names; give the class index"):
        resolve_target("Bag", [])


def test_target_by_name_on_the_command_line(checkpoints, shoe, tmp_path, capsys):
    out = tmp_path / "out"
    assert explain(shoe, "--model", checkpoints["fp"], "--target", "Bag", "--out", out) == 0
    assert "gradient: class 8 (Bag)" in capsys.readouterr().out
    model, _ = load_checkpoint(checkpoints["fp"])
    np.testing.assert_allclose(np.load(out / "shoe.gradient.npy"),
                               Gradient(model).attribute(shoe_input(shoe), 8)[0, 0].numpy(), rtol=1e-6)
    assert explain(shoe, "--model", checkpoints["fp"], "--target", "sneakers", "--out", out) == 2
    assert "did you mean Sneaker?" in capsys.readouterr().err


# -- notices and warnings -----------------------------------------------------------------------------


def test_resize_notices_follow_fit(checkpoints, tmp_path, capsys):
    wide = tmp_path / "wide.png"
    Image.fromarray(np.zeros((20, 40, 3), np.uint8)).save(wide)
    assert explain(wide, "--model", checkpoints["fp"], "--fit", "crop", "--out", tmp_path / "o") == 0
    err = capsys.readouterr().err.splitlines()
    assert "note: wide.png: converted from RGB to grayscale (the model takes 1 channel)" in err
    assert "note: wide.png: resized from 40x20 to 28x28 pixels, scaled and centre-cropped" in err
    assert explain(wide, "--model", checkpoints["fp"], "--fit", "refuse", "--out", tmp_path / "r") == 2
    assert "the aspect ratios differ" in capsys.readouterr().err


def test_surrogate_on_an_fp_model_is_a_warning_and_ignored(checkpoints, shoe, tmp_path, capsys):
    out = tmp_path / "out"
    assert explain(shoe, "--model", checkpoints["fp"], "--surrogate", "approx", "--target", "1", "--out", out) == 0
    err = capsys.readouterr().err
    assert ("warning: --surrogate approx does not apply: tiny-fp is a full-precision model (no binarized "
            "activations); ignored\n") in err
    assert "UserWarning" not in err and "ExplainWarning" not in err
    model, _ = load_checkpoint(checkpoints["fp"])
    np.testing.assert_allclose(np.load(out / "shoe.gradient.npy"),
                               Gradient(model).attribute(shoe_input(shoe), 1)[0, 0].numpy(), rtol=1e-6)
    assert explain(shoe, "--model", checkpoints["fp"], "--surrogate", "nope", "--out", out) == 2
    assert "unknown sign surrogate 'nope'" in capsys.readouterr().err


def test_signed_applies_where_a_method_has_a_sign(checkpoints, shoe, tmp_path, capsys):
    out = tmp_path / "out"
    assert explain(shoe, "--model", checkpoints["fp"], "--method", "gradient", "--method", "gradcam", "--signed",
                   "--target", "3", "--out", out) == 0
    assert "warning: --signed does not apply to gradcam (its maps carry no sign); drawn unsigned" in capsys.readouterr().err
    model, _ = load_checkpoint(checkpoints["fp"])
    signed = Gradient(model, signed=True).attribute(shoe_input(shoe), 3)[0, 0].numpy()
    assert signed.min() < 0 < signed.max()
    np.testing.assert_allclose(np.load(out / "shoe.gradient.npy"), signed, rtol=1e-6)


def test_device_auto_and_a_missing_gpu(checkpoints, shoe, tmp_path, capsys):
    assert explain(shoe, "--model", checkpoints["fp"], "--device", "auto", "--out", tmp_path / "a") == 0
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU: the missing-GPU message cannot be seen")
    assert explain(shoe, "--model", checkpoints["fp"], "--device", "cuda", "--out", tmp_path / "c") == 2
    err = capsys.readouterr().err
    assert "torch sees no CUDA GPU here; use 'auto' or 'cpu'" in err and err.count("\n") == 1


def test_binsight_warnings_are_one_line(monkeypatch, capsys):
    from binsight.study.store import CorruptUnitWarning

    def warns(args):
        warnings.warn("unit maps/a/0.npz is corrupt;\n set aside under corrupt/", CorruptUnitWarning)

    monkeypatch.setattr(cli_report, "run", warns)
    assert main(["report", "somewhere"]) == 0
    err = capsys.readouterr().err
    assert err.startswith("warning: unit maps/a/0.npz is corrupt; set aside under corrupt/\n")
    assert "CorruptUnitWarning" not in err


# -- the overlay --------------------------------------------------------------------------------------


def test_scales_known_answers():
    a, b = np.array([[0.0, 2.0]]), np.array([[1.0, 4.0]])
    assert scale_of([a], signed=False) == command.Scale(0.0, 2.0, False)
    assert scale_of([a, b], signed=False) == command.Scale(0.0, 4.0, False)
    assert scale_of([np.array([[-3.0, 1.0]])], signed=True) == command.Scale(-3.0, 3.0, True)
    assert scale_of([np.zeros((2, 2))], signed=False) == command.Scale(0.0, 1.0, False)
    assert scale_of([np.array([[np.nan, 5.0]])], signed=False).vmax == 5.0


def test_has_negative_known_answers_on_both_sides_of_float_noise():
    assert has_negative([np.array([[-1e-5, 1.0]])]) and has_negative([np.array([[-3.0, 0.0]])])
    assert not has_negative([np.array([[-1e-7, 1.0]])])  # below -1e-6 of the magnitude only: float noise
    assert not has_negative([np.zeros((2, 2))]) and not has_negative([])
    assert not has_negative([np.array([[np.nan, -np.inf, 2.0]])])  # non-finite values ignored


def test_the_report_figures_colour_scale_is_the_explain_rule():
    from binsight.report.figures import colour_scale

    rng = np.random.default_rng(0)
    cases = [[], [np.zeros((3, 3))], [np.array([[0.0, 2.0]]), np.array([[1.0, 4.0]])],
             [np.array([[-1e-8, 1.0]])], [np.array([[-2.0, 1.0]])], [np.full((2, 2), -1.0)]]
    cases += [[rng.normal(size=(4, 4)) * 10.0 ** rng.integers(-8, 3) + rng.choice([0.0, 5.0]) for _ in range(2)]
              for _ in range(50)]
    for maps in cases:
        scale = scale_of(maps, signed=has_negative(maps))
        assert colour_scale(maps) == (scale.cmap, scale.vmin, scale.vmax), maps


@pytest.fixture()
def drawn(monkeypatch):
    calls = []
    monkeypatch.setattr(command, "save_overlay", lambda path, pixels, saliency, **kw: calls.append(kw))
    return calls


def test_title_names_model_prediction_and_target(checkpoints, shoe, tmp_path, drawn):
    assert explain(shoe, "--model", checkpoints["bnn"], "--surrogate", "identity", "--target", "bag",
                   "--out", tmp_path) == 0
    model, _ = load_checkpoint(checkpoints["bnn"])
    with torch.no_grad():
        probs = torch.softmax(model(shoe_input(shoe)), 1)[0]
    k = int(probs.argmax())
    (call,) = drawn
    assert call["title"] == (f"shoe.png - gradient\ntiny-bnn (BNN, surrogate identity)\n"
                             f"predicted class {k} ({CLASSES[k]}) (p = {float(probs[k]):.2f}); explains class 8 (Bag)")


def test_shared_scale_across_the_maps_of_one_image(checkpoints, shoe, tmp_path, drawn):
    argv = [shoe, "--model", checkpoints["fp"], "--method", "gradient", "--method", "smoothgrad",
            "--param", "smoothgrad.n_samples=2", "--target", "0", "--out", tmp_path]
    assert explain(*argv) == 0
    own = [c["scale"] for c in drawn]
    maps = [np.load(tmp_path / f"shoe.{m}.npy") for m in ("gradient", "smoothgrad")]
    assert own == [command.Scale(0.0, float(m.max()), False) for m in maps] and own[0] != own[1]
    drawn.clear()
    assert explain(*argv, "--shared-scale") == 0
    top = max(float(m.max()) for m in maps)
    assert [c["scale"] for c in drawn] == [command.Scale(0.0, top, False)] * 2


def test_signed_map_drawn_diverging_around_zero(checkpoints, shoe, tmp_path, drawn):
    assert explain(shoe, "--model", checkpoints["fp"], "--signed", "--target", "0", "--out", tmp_path) == 0
    raw = np.load(tmp_path / "shoe.gradient.npy")
    (call,) = drawn
    top = float(np.abs(raw).max())
    assert call["scale"] == command.Scale(-top, top, True) and call["scale"].cmap == "RdBu_r"


def test_overlay_png_has_a_colour_bar(checkpoints, shoe, tmp_path):
    assert explain(shoe, "--model", checkpoints["fp"], "--out", tmp_path) == 0
    width, height = Image.open(tmp_path / "shoe.gradient.png").size
    assert width > height  # the colour bar sits right of the square map


# -- own models ---------------------------------------------------------------------------------------


@pytest.fixture()
def own_models(monkeypatch):
    monkeypatch.syspath_prepend(str(TESTS))
    import own_models

    return own_models


def test_own_fp_model_by_factory_with_weights(own_models, shoe, tmp_path, capsys):
    torch.manual_seed(3)
    built = own_models.build_fp(width=4)
    save_file(built.state_dict(), str(tmp_path / "fp.safetensors"))
    out = tmp_path / "out"
    assert explain(shoe, "--factory", "own_models:build_fp", "--kwargs", '{"width": 4}', "--weights",
                   tmp_path / "fp.safetensors", "--normalize", "inside", "--input-size", "1,28,28", "--target", "5",
                   "--method", "gradient", "--method", "gradcam", "--out", out) == 0
    spec = ModelSpec("own_models:build_fp", kwargs={"width": 4}, weights=str(tmp_path / "fp.safetensors"),
                     normalize="inside", input_size=(1, 28, 28))
    model = load_model(spec)
    np.testing.assert_allclose(np.load(out / "shoe.gradient.npy"),
                               Gradient(model).attribute(shoe_input(shoe), 5)[0, 0].numpy(), rtol=1e-6)
    assert (out / "shoe.gradcam.npy").is_file()
    printed = capsys.readouterr().out
    assert "shoe.png: gradient: class 5 ->" in printed


def test_own_brevitas_bnn_with_a_switched_surrogate(own_models, shoe, tmp_path, drawn):
    argv = [shoe, "--factory", "own_models:build_bnn", "--kwargs", '{"width": 4}', "--precision", "bnn",
            "--mean", "0.2860", "--std", "0.3530", "--input-size", "1,28,28", "--target", "2", "--out", tmp_path]
    torch.manual_seed(0)
    assert explain(*argv, "--surrogate", "approx") == 0
    torch.manual_seed(0)
    model = load_model(ModelSpec("own_models:build_bnn", kwargs={"width": 4}, precision="bnn", mean=(0.2860,),
                                 std=(0.3530,), input_size=(1, 28, 28)))
    with use_surrogate_foreign(model, "approx"):
        expected = Gradient(model).attribute(shoe_input(shoe), 2)[0, 0].numpy()
    np.testing.assert_allclose(np.load(tmp_path / "shoe.gradient.npy"), expected, rtol=1e-5)
    own = Gradient(model).attribute(shoe_input(shoe), 2)[0, 0].numpy()
    assert not np.allclose(own, expected)
    assert "build_bnn (BNN, surrogate approx)" in drawn[0]["title"]


def test_own_sign_cannot_be_switched_warning(own_models, shoe, tmp_path, capsys):
    assert explain(shoe, "--factory", "own_models:build_custom_sign", "--precision", "bnn", "--normalize", "inside",
                   "--input-size", "1,28,28", "--surrogate", "ste", "--out", tmp_path) == 0
    assert ("warning: --surrogate ste does not apply: build_custom_sign's sign is own (custom autograd.Function, "
            "not switchable), which binsight cannot switch") in capsys.readouterr().err


CONSTANT = '''
import torch
from torch import nn


class Constant(nn.Module):
    """Logits that do not depend on the image: every gradient map is all zero."""

    def __init__(self):
        super().__init__()
        self.bias = nn.Parameter(torch.arange(3.0))
        self.conv = nn.Conv2d(1, 2, 3)

    def forward(self, x):
        return self.bias.expand(x.shape[0], 3) + 0 * self.conv(x).sum()


def build():
    return Constant()
'''


def test_factory_from_the_working_directory_and_a_degenerate_map(shoe, tmp_path, monkeypatch, capsys, drawn):
    (tmp_path / "lab_constant.py").write_text(CONSTANT)
    monkeypatch.chdir(tmp_path)
    assert explain(shoe, "--factory", "lab_constant:build", "--normalize", "inside", "--input-size", "1,28,28",
                   "--out", tmp_path / "out") == 0
    err = capsys.readouterr().err
    assert "warning: shoe.png: the gradient map is degenerate (all zero): it ranks no pixel; drawn flat\n" in err
    assert drawn[0]["degenerate"] == "all zero"
    sys.modules.pop("lab_constant", None)


@pytest.mark.parametrize("extra,message", [
    ([], "no model given: use --model CHECKPOINT"),
    (["--model", "x", "--factory", "a:b"], "checkpoint x.safetensors not found"),
    (["--model", "x", "--input-size", "1,28,28"], "--input-size describes your own model and applies only with --factory"),
    (["--factory", "own_models:build_fp", "--normalize", "inside", "--input-size", "1,28"], "must be C,H,W"),
    (["--factory", "own_models:build_fp", "--normalize", "inside", "--input-size", "1,28,28", "--kwargs", "{width"],
     "--kwargs '{width' is not valid JSON"),
    (["--factory", "own_models:build_fp", "--mean", "a", "--std", "1", "--input-size", "1,28,28"],
     "--mean 'a' must be comma-separated numbers"),
    (["--factory", "own_models:build_fp", "--normalize", "inside", "--input-size", "1,28,28", "--weights", "none.pt"],
     "weights file none.pt not found"),
    (["--factory", "own_models:nope", "--normalize", "inside", "--input-size", "1,28,28"], "has no attribute 'nope'"),
])
def test_own_model_flag_errors_are_one_line(own_models, shoe, tmp_path, capsys, extra, message):
    assert explain(shoe, *extra, "--out", tmp_path / "o") == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()


# -- files named as what they are, help, report -------------------------------------------------------


def test_checkpoint_with_or_without_suffix_and_missing_files_named(checkpoints, shoe, tmp_path, capsys):
    stem = checkpoints["fp"].with_suffix("")
    for given in (stem, checkpoints["fp"], stem.with_suffix(".json")):
        assert explain(shoe, "--model", given, "--out", tmp_path / "o") == 0
    assert main(["evaluate", str(stem.with_suffix(".json")), "--dataset", "no-such-data"]) == 2
    assert "unknown dataset" in capsys.readouterr().err  # the checkpoint was found and loaded
    lonely = tmp_path / "lonely.safetensors"
    lonely.write_bytes(checkpoints["fp"].read_bytes())
    assert explain(shoe, "--model", lonely, "--out", tmp_path / "o") == 2
    assert "its side file" in capsys.readouterr().err
    assert explain(tmp_path / "gone.png", "--model", stem, "--out", tmp_path / "o") == 2
    assert "image not found" in capsys.readouterr().err


def help_text(capsys, *argv) -> str:
    with pytest.raises(SystemExit):
        main([*argv, "--help"])
    return "".join(capsys.readouterr().out.split())  # argparse wraps lines, also at hyphens


def test_help_shows_defaults_and_names(capsys):
    from binsight import data, models

    text = help_text(capsys, "explain")
    for shown in ("(default:pad)", "(default:explanations)", "(default:auto)", "{pad,crop,stretch,refuse}"):
        assert shown in text
    assert "(default:None)" not in text and "(default:False)" not in text and "(default:[])" not in text
    text = help_text(capsys, "train")
    assert ",".join(models.available()) in text and "(default:small-cnn)" in text
    assert "(default:0)" in text and "(default:auto)" in text
    assert ",".join(data.available()) in help_text(capsys, "data")
    assert tuple(cli_explain.FITS) == FITS


def test_report_help_does_not_import_torch():
    code = ("import sys\nfrom binsight.cli import main\ntry:\n    main(['report', '--help'])\nexcept SystemExit:\n"
            "    pass\nprint('torch' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip().endswith("False"), done.stderr


def test_report_and_study_drive_a_progress_bar(monkeypatch, capsys, tmp_path):
    import binsight.report as report

    seen = []

    def build(path, *, progress=None):
        seen.append(progress)
        progress("read the run folder")
        return Path(path) / "report.html"

    monkeypatch.setattr(report, "build_report", build)
    assert main(["report", str(tmp_path)]) == 0
    assert main(["report", str(tmp_path), "--quiet"]) == 0
    assert len(seen) == 2 and all(callable(p) for p in seen)
    assert f"report: {tmp_path / 'report.html'}" in capsys.readouterr().out


def test_progress_bar_on_a_terminal_unless_quiet(checkpoints, shoe, tmp_path, monkeypatch):
    asked = []
    real = command._progress
    monkeypatch.setattr(command, "_progress", lambda total, enabled: asked.append((total, enabled)) or real(total, enabled))
    assert explain(shoe, shoe.with_name("shoe.png"), "--model", checkpoints["fp"], "--out", tmp_path) == 2  # twins
    assert explain(shoe, "--model", checkpoints["fp"], "--method", "gradient", "--method", "gradcam",
                   "--out", tmp_path) == 0
    assert explain(shoe, "--model", checkpoints["fp"], "--quiet", "--out", tmp_path) == 0
    assert asked == [(2, True), (1, False)]
    assert real(1, True).disable and real(1, False).disable  # stderr is not a terminal here


def test_shared_scale_only_across_methods_of_one_unit(checkpoints, shoe, tmp_path, drawn, capsys):
    """NeuroMask's masks (0 .. 1) and Gradient's input gradients keep their own scales under
    --shared-scale, with a note that says so; Gradient and SmoothGrad share one."""
    argv = [shoe, "--model", checkpoints["fp"], "--method", "gradient", "--method", "neuromask", "--method",
            "smoothgrad", "--param", "neuromask.iterations=3", "--param", "smoothgrad.n_samples=2", "--target", "0",
            "--shared-scale", "--quiet", "--out", tmp_path]
    assert explain(*argv) == 0
    maps = {m: np.load(tmp_path / f"shoe.{m}.npy") for m in ("gradient", "neuromask", "smoothgrad")}
    scales = [c["scale"] for c in drawn]
    top = max(float(maps[m].max()) for m in ("gradient", "smoothgrad"))
    assert scales == [command.Scale(0.0, top, False), command.Scale(0.0, float(maps["neuromask"].max()), False),
                      command.Scale(0.0, top, False)]
    assert ("note: --shared-scale: these methods' maps are in different units (gradient, smoothgrad; neuromask)"
            in capsys.readouterr().err)


def test_neuromask_explains_all_images_of_a_model_in_one_call(checkpoints, tmp_path, monkeypatch):
    from binsight.explain.neuromask import NeuroMask

    calls = []
    explain_batch = NeuroMask._explain
    monkeypatch.setattr(NeuroMask, "_explain", lambda self, x, wanted: calls.append(len(x)) or explain_batch(self, x, wanted))
    paths = []
    for i in range(3):
        paths.append(tmp_path / f"img{i}.png")
        Image.fromarray((np.random.default_rng(i).random((28, 28)) * 255).astype(np.uint8), mode="L").save(paths[-1])
    assert explain(*paths, "--model", checkpoints["fp"], "--method", "neuromask", "--param", "iterations=3",
                   "--quiet", "--out", tmp_path / "o") == 0
    assert calls == [3]
    assert all((tmp_path / "o" / f"img{i}.neuromask.npy").is_file() for i in range(3))


def test_own_model_takes_the_image_size_and_class_names(own_models, shoe, tmp_path, capsys):
    """Without --input-size an own model takes the first image's channels and size (said in a note);
    --classes names its outputs, so that --target and the output name them; a wrong count is refused."""
    argv = [shoe, "--factory", "own_models:build_fp", "--normalize", "inside", "--quiet", "--out", tmp_path / "o"]
    names = ",".join(CLASSES)
    assert explain(*argv, "--classes", names, "--target", "bag") == 0
    printed = capsys.readouterr()
    assert "note: --input-size not given: 1,28,28, the channels and size of shoe.png" in printed.err
    assert "shoe.png: gradient: class 8 (Bag) ->" in printed.out
    assert explain(*argv, "--classes", "cat,dog") == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 2 and "gives 10 class scores and 2 class names are given" in err
    assert explain(shoe, "--model", tmp_path / "x", "--classes", names) == 2
    assert "--classes describes your own model and applies only with --factory" in capsys.readouterr().err


def test_data_export_writes_pngs_named_by_index_and_class(tmp_path, capsys):
    """``binsight data NAME --export DIR --n K``: K PNG files named by index and class, pixels as loaded."""
    from binsight.data import load_dataset

    root = tmp_path / "pets"
    for k, name in enumerate(("cat", "hot dog")):
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(np.full((6, 6, 3), 40 * (k + i), np.uint8)).save(root / name / f"{i}.png")
    out = tmp_path / "pngs"
    assert main(["data", "image-folder", "--root", str(root), "--export", str(out), "--n", "3"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["00000-cat.png", "00001-cat.png", "00002-hot_dog.png"]
    assert "3 images of image-folder" in capsys.readouterr().out
    data = load_dataset("image-folder", root=root)  # as the command loads it (224 x 224)
    written = np.asarray(Image.open(out / "00002-hot_dog.png"), dtype=np.float32) / 255
    np.testing.assert_allclose(written, data.images[2].permute(1, 2, 0).numpy(), atol=0.5 / 255)
    assert main(["data", "image-folder", "--root", str(root), "--export", str(out / "00000-cat.png")]) == 2
    assert "is a file; give a folder" in capsys.readouterr().err
