"""Checkpoints as one unit: an interrupted save never loads as the wrong model; side files that lie are refused."""

from __future__ import annotations

import json
import os
import stat

import pytest
import torch

from binsight.errors import BinsightError
from binsight.models import build_model
from binsight.models.checkpoint import CheckpointError, checkpoint_paths, load_checkpoint, save_checkpoint


def tiny(precision: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model("small-cnn", precision, widths=(4, 8, 8), num_classes=3).eval()


def same_weights(a, b) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def edit_side(path, **changes):
    side = checkpoint_paths(path)[1]
    meta = json.loads(side.read_text())
    for key, value in changes.items():
        if key.startswith("spec_"):
            meta["spec"][key[5:]] = value
        else:
            meta[key] = value
    side.write_text(json.dumps(meta))


def test_checkpoint_error_is_a_binsight_error():
    assert issubclass(CheckpointError, BinsightError)


def fail_on_replace(monkeypatch, call: int):
    """os.replace works until its ``call``-th use in this test, which raises (a kill at that point)."""
    real, calls = os.replace, []

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == call:
            raise KeyboardInterrupt(f"killed before renaming onto {dst}")
        return real(src, dst)

    monkeypatch.setattr(os, "replace", replace)
    return calls


def test_killed_between_the_two_renames_is_refused_not_loaded_as_the_new_model(tmp_path, monkeypatch):
    old = tiny("fp")
    path = save_checkpoint(old, tmp_path / "m")
    calls = fail_on_replace(monkeypatch, call=2)  # weights renamed, side file not
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tiny("bnn", seed=1), path)
    monkeypatch.undo()
    assert [p.name for p in calls] == ["m.safetensors", "m.json"]  # the side file is renamed last
    assert json.loads((tmp_path / "m.json").read_text())["precision"] == "fp"  # old side file, new weights
    with pytest.raises(CheckpointError, match=r"m\.safetensors does not belong to its side file .*m\.json.*"
                                              r"a save was interrupted"):
        load_checkpoint(path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]  # no temporary files left


def test_killed_before_the_first_rename_leaves_the_old_checkpoint(tmp_path, monkeypatch):
    old = tiny("fp")
    path = save_checkpoint(old, tmp_path / "m")
    fail_on_replace(monkeypatch, call=1)
    with pytest.raises(KeyboardInterrupt):
        save_checkpoint(tiny("bnn", seed=1), path)
    monkeypatch.undo()
    loaded, meta = load_checkpoint(path)
    assert meta["precision"] == "fp" and same_weights(loaded, old)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.json", "m.safetensors"]


def test_weights_from_another_save_with_the_same_shapes_are_refused(tmp_path):
    a = save_checkpoint(tiny("fp", seed=0), tmp_path / "a")
    b = save_checkpoint(tiny("fp", seed=1), tmp_path / "b")
    b.write_bytes(a.read_bytes())  # same spec, same shapes, other weights
    with pytest.raises(CheckpointError, match="does not belong to its side file"):
        load_checkpoint(b)


def test_both_files_get_the_usual_permissions(tmp_path):
    path = save_checkpoint(tiny("bnn"), tmp_path / "m")
    mask = os.umask(0)
    os.umask(mask)
    for file in checkpoint_paths(path):
        assert stat.S_IMODE(file.stat().st_mode) == 0o666 & ~mask


@pytest.mark.parametrize("changes,words", [
    ({"precision": "fp"}, "says precision 'fp' but its spec says 'bnn'"),
    ({"precision": "fp", "spec_precision": "fp"}, r"contradicts the weights m\.safetensors \(precision: side file 'fp', weights 'bnn'\)"),
    ({"spec": {}}, "its spec has no 'name'"),
    ({"architecture": "vgg-small"}, "says architecture 'vgg-small' but its spec says 'small-cnn'"),
    ({"spec_scaling": True}, "contradicts the weights .*scaling: side file True, weights False"),
    ({"format_version": 7}, "format version 7; this binsight reads versions 1 and 2"),
    ({"weights_sha256": None}, "has no 'weights_sha256'"),
    ({"class_names": 7}, "'class_names' is int '7', not the type binsight writes"),
])
def test_a_side_file_that_contradicts_the_weights_is_refused(tmp_path, changes, words):
    path = save_checkpoint(tiny("bnn"), tmp_path / "m")
    edit_side(path, **changes)
    with pytest.raises(CheckpointError, match=words):
        load_checkpoint(path)


def test_display_keys_may_be_edited(tmp_path):
    path = save_checkpoint(tiny("bnn"), tmp_path / "m")
    edit_side(path, spec_surrogate="identity", spec_input_size=[32, 32], class_names=["a", "b", "c"])
    model, meta = load_checkpoint(path)
    assert meta["class_names"] == ["a", "b", "c"] and model.binsight_spec["surrogate"] == "identity"


def test_absurd_sizes_are_refused_before_allocating(tmp_path, monkeypatch):
    path = save_checkpoint(tiny("fp"), tmp_path / "m")
    edit_side(path, spec_options={"widths": [4, 8, 1_600_000_000]})  # 1.43 TB of float32 weights
    real_empty = torch.empty

    def guarded_empty(*size, **kwargs):  # a real (non-meta) tensor of over 1 GB would mean allocating
        tensor = real_empty(*size, **kwargs)
        assert tensor.device.type == "meta" or tensor.numel() < 2**28, "allocated a huge tensor"
        return tensor

    monkeypatch.setattr(torch, "empty", guarded_empty)
    with pytest.raises(CheckpointError, match=r"shape mismatch .*side file says \(1600000000, 8, 3, 3\)"):
        load_checkpoint(path)


@pytest.mark.parametrize("changes, words", [
    ({"spec_in_channels": 10_000_000}, r"in_channels must be a positive integer of at most 4,096, got 10000000"),
    ({"spec_in_channels": 10**8}, r"in_channels must be a positive integer of at most 4,096, got 100000000"),
    ({"spec_num_classes": 10**12}, r"num_classes must be a positive integer of at most 1,048,576"),
    ({"spec_input_size": [10**6, 10**6]}, r"input_size of 1000000x1000000 = 1,000,000,000,000 pixels is more"),
])
def test_sizes_in_a_side_file_are_bounded_before_anything_is_allocated(tmp_path, changes, words):
    import tracemalloc

    path = save_checkpoint(tiny("fp"), tmp_path / "m")
    edit_side(path, **changes)  # a side file of 1 KB: ten million channels once cost 150 MB of lists
    tracemalloc.start()
    try:
        with pytest.raises(CheckpointError, match=words):
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 8 * 2**20


def test_missing_checkpoint_names_the_weights_and_any_suffix_works(tmp_path):
    with pytest.raises(CheckpointError, match=r"checkpoint .*none\.safetensors not found"):
        load_checkpoint(tmp_path / "none.json")
    with pytest.raises(CheckpointError, match=r"checkpoint .*none\.safetensors not found"):
        load_checkpoint(tmp_path / "none")
    path = save_checkpoint(tiny("fp"), tmp_path / "fp0")
    for given in ("fp0", "fp0.json", "fp0.safetensors"):
        assert load_checkpoint(tmp_path / given)[1]["precision"] == "fp"
    assert checkpoint_paths(tmp_path / "a.b") == (tmp_path / "a.b.safetensors", tmp_path / "a.b.json")
    assert path == tmp_path / "fp0.safetensors"


def test_version_1_checkpoints_still_load_but_not_under_new_weights(tmp_path):
    path = save_checkpoint(tiny("fp"), tmp_path / "m")
    side = tmp_path / "m.json"
    meta = json.loads(side.read_text())
    del meta["weights_sha256"]
    meta["format_version"] = 1
    side.write_text(json.dumps(meta))  # a version-1 side file beside version-2 weights: not one save
    with pytest.raises(CheckpointError, match="saved by a newer binsight than its side file"):
        load_checkpoint(path)
    from safetensors.torch import save_file  # weights as version 1 wrote them: no spec in the header
    save_file({k: v.contiguous() for k, v in tiny("fp").state_dict().items()}, str(path), metadata={"format": "x"})
    assert load_checkpoint(path)[1]["format_version"] == 1
