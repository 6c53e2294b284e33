"""binsight.models: the registry in both precisions, normalisation, GradCAM layer names, checkpoints."""

import json

import pytest
import torch
from torch import nn

from binsight.models import (
    CheckpointError,
    ModelError,
    Normalize,
    available,
    build_from_spec,
    build_model,
    load_checkpoint,
    save_checkpoint,
)
from binsight.nn import BinaryConv2d, BinaryLinear, SignActivation, SurrogateError, surrogate_of

SHAPES = [(1, 28), (3, 32)]
#: narrow versions keep the build-every-architecture test fast; default widths are checked on the meta device
NARROW = {"small-cnn": dict(widths=(4, 8, 8)), "vgg-small": dict(width=4), "resnet18": dict(width=4),
          "birealnet": dict(width=4)}


def test_available_lists_the_four_architectures_default_first():
    assert available()[0] == "small-cnn"
    assert set(available()) >= {"small-cnn", "vgg-small", "resnet18", "birealnet"}


@pytest.mark.parametrize("name", available())
@pytest.mark.parametrize("precision", ["fp", "bnn"])
@pytest.mark.parametrize("channels,size", SHAPES)
def test_every_architecture_builds_and_gives_logits(name, precision, channels, size):
    torch.manual_seed(0)
    options = NARROW.get(name, {})
    model = build_model(name, precision, in_channels=channels, num_classes=7, input_size=size, **options).eval()
    with torch.no_grad():
        logits = model(torch.rand(2, channels, size, size))
    assert logits.shape == (2, 7) and torch.isfinite(logits).all()
    modules = dict(model.named_modules())
    assert model.gradcam_layer in modules
    signs = [m for m in model.modules() if isinstance(m, SignActivation)]
    if precision == "fp":
        assert not signs and model.gradcam_binary_layer is None and surrogate_of(model) is None
    else:
        assert signs and surrogate_of(model) == "ste"
        if model.gradcam_binary_layer is not None:
            assert isinstance(modules[model.gradcam_binary_layer], SignActivation)
    assert isinstance(model.normalize, Normalize)


@pytest.mark.parametrize(
    "name,parameters",
    # counted by hand for 3 channels, 10 classes. small-cnn: convs 27*32 + 288*64 + 576*128, batch norms
    # 2*(32+64+128), classifier 128*49*10+10. VGG-Small: convs 4,574,592, batch norms 2*1792, classifier 5130.
    # ResNet-18 (CIFAR) has the well-known 11,173,962; Bi-Real-18 has the same convs, shortcuts and norms.
    [("small-cnn", 156_202), ("vgg-small", 4_583_306), ("resnet18", 11_173_962), ("birealnet", 11_173_962)],
)
def test_default_widths_build(name, parameters):
    with torch.device("meta"):
        model = build_model(name, "bnn", in_channels=3, num_classes=10)
    assert sum(p.numel() for p in model.parameters()) == parameters


def outputs_of(model, names, x):
    """The output of each named module in one forward pass of ``x``."""
    modules, seen = dict(model.named_modules()), {}
    handles = [modules[k].register_forward_hook(lambda m, i, o, k=k: seen.__setitem__(k, o)) for k in names]
    with torch.no_grad():
        model(x)
    for h in handles:
        h.remove()
    return seen


@pytest.mark.parametrize("name", ["small-cnn", "vgg-small", "resnet18"])
@pytest.mark.parametrize("precision", ["fp", "bnn"])
def test_gradcam_layer_is_the_real_valued_tensor_before_the_non_linearity(name, precision):
    """The same kind of tensor in both precisions: before the ReLU (FP) or the sign (BNN). For a BNN the
    binary layer is its sign; an FP model has no binary layer."""
    torch.manual_seed(0)
    model = build_model(name, precision, input_size=16, **NARROW[name]).eval()
    layer = model.gradcam_layer
    assert layer == build_model(name, "bnn" if precision == "fp" else "fp", input_size=16, **NARROW[name]).gradcam_layer
    after = layer.rsplit(".", 1)[0] + (".act" if name != "resnet18" else ".act2")  # the block's non-linearity
    seen = outputs_of(model, [layer, after], torch.rand(2, 1, 16, 16))
    real, activated = seen[layer], seen[after]
    assert (real < 0).any() and len(real.unique()) > 2  # not yet through a ReLU or a sign
    expected = torch.relu(real) if precision == "fp" else torch.where(real >= 0, 1.0, -1.0)
    assert torch.equal(activated, expected)
    assert model.gradcam_binary_layer == (after if precision == "bnn" else None)


def test_birealnet_gradcam_layer_is_the_real_valued_residual_stream():
    torch.manual_seed(0)
    for precision in ("fp", "bnn"):
        model = build_model("birealnet", precision, input_size=16, **NARROW["birealnet"]).eval()
        real = outputs_of(model, [model.gradcam_layer], torch.rand(2, 1, 16, 16))[model.gradcam_layer]
        assert (real < 0).any() and model.gradcam_binary_layer is None


def test_first_and_last_layers_full_precision_switch():
    def kinds(model):
        layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        return [isinstance(m, (BinaryConv2d, BinaryLinear)) for m in layers]

    default = kinds(build_model("small-cnn", "bnn"))
    assert default == [False, True, True, False]
    assert kinds(build_model("small-cnn", "bnn", first_last_fp=False)) == [True, True, True, True]
    assert not any(kinds(build_model("small-cnn", "fp")))


def test_scaling_and_surrogate_reach_the_layers():
    model = build_model("small-cnn", "bnn", scaling=True, surrogate="approx")
    assert all(m.scaling for m in model.modules() if isinstance(m, BinaryConv2d))
    assert surrogate_of(model) == "approx"


def test_normalisation_defaults_and_override():
    assert build_model(in_channels=1).normalize.mean.flatten().tolist() == pytest.approx([0.2860])
    assert build_model(in_channels=3).normalize.std.flatten().tolist() == pytest.approx([0.2470, 0.2435, 0.2616])
    model = build_model(in_channels=2, mean=[0.1, 0.2], std=0.5)
    x = torch.rand(1, 2, 8, 8)
    expected = (x - torch.tensor([0.1, 0.2]).view(1, 2, 1, 1)) / 0.5
    assert torch.allclose(model.normalize(x), expected)


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(name="nope"), "unknown architecture 'nope'"),
        (dict(precision="int8"), "precision"),
        (dict(in_channels=0), "in_channels"),
        (dict(num_classes=2.5), "num_classes"),
        (dict(mean=[0.1, 0.2]), "2 values for 1 input channels"),
        (dict(std=0.0), "std must be positive"),
        (dict(surrogate="nope"), "unknown sign surrogate"),
        (dict(widths=(8, 8)), "bad options"),
        (dict(depth=3), "bad options"),
    ],
)
def test_bad_build_arguments_are_clear(kwargs, match):
    with pytest.raises(SurrogateError if "surrogate" in kwargs else ModelError, match=match):
        build_model(**kwargs)


def test_wrong_channel_count_is_a_clear_error():
    with pytest.raises(ModelError, match=r"expects images \(N, 1, H, W\)"):
        build_model()(torch.rand(1, 3, 28, 28))


def test_spec_rebuilds_the_same_architecture():
    model = build_model("vgg-small", "bnn", in_channels=3, num_classes=4, input_size=32, width=8, scaling=True)
    spec = json.loads(json.dumps(model.binsight_spec))
    clone = build_from_spec(spec)
    assert clone.binsight_spec == spec
    assert {k: v.shape for k, v in clone.state_dict().items()} == {k: v.shape for k, v in model.state_dict().items()}


# -- checkpoints ------------------------------------------------------------------------------------
def trained_like_model(precision="bnn") -> nn.Module:
    torch.manual_seed(0)
    model = build_model("small-cnn", precision, widths=(4, 8, 8), num_classes=3)
    model.train()
    with torch.no_grad():
        model(torch.rand(8, 1, 28, 28))  # move the batch-norm statistics away from their defaults
    return model.eval()


@pytest.mark.parametrize("precision", ["fp", "bnn"])
def test_checkpoint_round_trip_gives_identical_logits(tmp_path, precision):
    model = trained_like_model(precision)
    path = save_checkpoint(model, tmp_path / "m", {"dataset": "fashion-mnist", "test_accuracy": 0.5})
    assert path.name == "m.safetensors" and (tmp_path / "m.json").is_file()
    loaded, meta = load_checkpoint(path)
    x = torch.rand(4, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))
    assert not loaded.training
    assert meta["architecture"] == "small-cnn" and meta["precision"] == precision
    assert meta["dataset"] == "fashion-mnist" and meta["test_accuracy"] == 0.5
    assert meta["surrogate"] == ("ste" if precision == "bnn" else None)
    assert meta["normalisation"]["mean"] == pytest.approx([0.2860])
    assert loaded.gradcam_layer == model.gradcam_layer
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temporary files left


def test_pickle_checkpoint_is_refused_without_unpickling(tmp_path):
    model = trained_like_model()
    save_checkpoint(model, tmp_path / "m.safetensors")
    torch.save(model.state_dict(), tmp_path / "m.safetensors")  # a pickle under the right name
    with pytest.raises(CheckpointError, match=r"m\.safetensors is not a complete safetensors file.*never loads pickles"):
        load_checkpoint(tmp_path / "m.safetensors")


def test_truncated_checkpoint_is_refused(tmp_path):
    path = save_checkpoint(trained_like_model(), tmp_path / "m.safetensors")
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a complete safetensors file"):
        load_checkpoint(path)


def test_missing_side_file_and_unknown_architecture(tmp_path):
    path = save_checkpoint(trained_like_model(), tmp_path / "m.safetensors")
    side = tmp_path / "m.json"
    meta = json.loads(side.read_text())
    meta["spec"]["name"] = "alexnet"
    side.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"m\.json describes a model that cannot be built.*unknown architecture 'alexnet'"):
        load_checkpoint(path)
    side.unlink()
    with pytest.raises(CheckpointError, match="side file .*m.json is missing"):
        load_checkpoint(path)


def test_shape_mismatch_names_the_tensor(tmp_path):
    path = save_checkpoint(trained_like_model(), tmp_path / "m.safetensors")
    side = tmp_path / "m.json"
    meta = json.loads(side.read_text())
    meta["spec"]["num_classes"] = 5
    side.write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=r"shape mismatch net\.classifier\.weight: side file says \(5, 392\), weights have \(3, 392\)"):
        load_checkpoint(path)


def test_only_binsight_models_can_be_saved(tmp_path):
    with pytest.raises(CheckpointError, match="only models built by binsight"):
        save_checkpoint(nn.Linear(2, 2), tmp_path / "x")
    assert not list(tmp_path.iterdir())


def test_an_adaptive_pool_to_its_own_size_is_skipped_without_changing_the_logits():
    """small-cnn on 28x28 ends on a 7x7 map and pools to 7x7 (the identity, skipped for speed); on another
    input size the pool runs. Either way the logits are those of features -> pool -> classifier."""
    from binsight.models import build_model

    for size in (28, 32):
        model = build_model("small-cnn", "bnn", input_size=size).eval()
        x = torch.rand(3, 1, size, size)
        net = model.net
        with torch.no_grad():
            plain = net.classifier(net.pool(net.features(model.normalize(x))).flatten(1))
            torch.testing.assert_close(model(x), plain, rtol=0, atol=1e-6)
