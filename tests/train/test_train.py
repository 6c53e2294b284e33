"""binsight.train: reproducible training, evaluation, the model cache and the two commands."""

import json
import re
from pathlib import Path
from dataclasses import replace

import pytest
import torch

import binsight.data
from binsight.cli import main
import binsight.train.loop as train_loop
from binsight._utils import BinsightWarning
from binsight.errors import BinsightError
from binsight.train import (
    RECIPES,
    TrainConfig,
    TrainError,
    apply_augmentation,
    augment_batch,
    cache_key,
    cached_model,
    derived_seed,
    draw_augmentation,
    shard,
    train,
)

TINY = dict(model_options={"widths": [4, 8, 8]}, train_subset=96, test_subset=64, epochs=1, batch_size=32,
            progress=False)


@pytest.fixture(scope="module")
def small_splits():
    """Real Fashion-MNIST images, read once: 512 as the train split and 512 others as the test split.

    Both come from the (smaller, faster to read) test split; these tests check mechanics, not accuracy.
    """
    images = binsight.data.load_dataset("fashion-mnist", "test").subset(1024, seed=0)
    half = torch.arange(len(images)) % 2 == 0
    return {
        "train": replace(images, images=images.images[half], labels=images.labels[half], masks=None, split="train"),
        "test": replace(images, images=images.images[~half], labels=images.labels[~half], masks=None),
    }


@pytest.fixture(autouse=True)
def fast_data(monkeypatch, small_splits):
    """Serve the small splits instead of re-reading 70,000 images in every test."""

    def load_dataset(name, split="test", root=None, download=True, **options):
        assert name == "fashion-mnist"
        return small_splits[split]

    monkeypatch.setattr(binsight.data, "load_dataset", load_dataset)


def test_training_is_reproducible_bit_for_bit():
    first, result = train(TrainConfig(precision="bnn", seed=3, **TINY))
    second, _ = train(TrainConfig(precision="bnn", seed=3, **TINY))
    other, _ = train(TrainConfig(precision="bnn", seed=4, **TINY))
    a, b, c = first.state_dict(), second.state_dict(), other.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    assert 0.0 <= result.test_accuracy <= 1.0 and result.num_train == 96 and result.num_test == 64
    assert len(result.history) == 1 and result.recipe["optimizer"] == "adam"
    assert not first.training


def _first_conv(model):
    return next(m.weight.detach().clone() for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def _batch_orders(monkeypatch, config):
    """The index batches one training run of ``config`` draws, in order."""
    seen = []

    def spy(*args, **kwargs):
        batches = real(*args, **kwargs)
        seen.append([b.tolist() for b in batches])
        return batches

    real = train_loop._batches
    monkeypatch.setattr(train_loop, "_batches", spy)
    train(config)
    monkeypatch.setattr(train_loop, "_batches", real)
    return seen[1:]  # the first call only counts the steps per epoch


def test_fp_and_bnn_of_one_seed_share_no_initialisation_and_no_data_order(monkeypatch):
    fp = TrainConfig(precision="fp", seed=0, **TINY)
    bnn = replace(fp, precision="bnn")
    init = {p: _first_conv(train_loop._build(replace(fp, precision=p), binsight.data.load_dataset("fashion-mnist", "train")))
            for p in ("fp", "bnn")}
    assert init["fp"].shape == init["bnn"].shape and not torch.equal(init["fp"], init["bnn"])
    again = _first_conv(train_loop._build(fp, binsight.data.load_dataset("fashion-mnist", "train")))
    assert torch.equal(again, init["fp"])
    order_fp, order_bnn = _batch_orders(monkeypatch, fp), _batch_orders(monkeypatch, bnn)
    assert order_fp == _batch_orders(monkeypatch, fp)
    assert sorted(sum(order_fp[0], [])) == sorted(sum(order_bnn[0], [])) and order_fp != order_bnn


def test_derived_seeds_are_stable_and_distinct():
    # Known answer: SHA-256("binsight.train/fp/0/init"), first 8 bytes, shifted right by one bit.
    assert derived_seed(0, "fp", "init") == 0x6F879754D34AC049
    seeds = {derived_seed(s, p, stream) for s in (0, 1) for p in ("fp", "bnn") for stream in ("init", "data", "subset")}
    assert len(seeds) == 12 and all(0 <= s < 2**63 for s in seeds)


def test_training_leaves_the_global_rng_and_the_process_group_alone():
    state = torch.get_rng_state()
    train(TrainConfig(precision="fp", **TINY))
    assert torch.equal(torch.get_rng_state(), state)
    assert not torch.distributed.is_initialized()


def test_train_subsets_differ_by_precision_test_subsets_do_not(small_splits):
    fp = TrainConfig(precision="fp", train_subset=100, test_subset=100)
    bnn = replace(fp, precision="bnn")
    train_fp, train_bnn = (train_loop._load_split(c, "train", 100) for c in (fp, bnn))
    assert not torch.equal(train_fp.labels, train_bnn.labels) or not torch.equal(train_fp.images, train_bnn.images)
    test_fp, test_bnn = (train_loop._load_split(c, "test", 100) for c in (fp, bnn))
    assert torch.equal(test_fp.images, test_bnn.images)


def test_a_rank_slice_of_a_batch_is_augmented_as_in_the_whole_batch():
    images = torch.rand(7, 1, 5, 6)
    flip, shifts = draw_augmentation(7, 2, torch.Generator().manual_seed(1))
    whole = apply_augmentation(images, 2, flip, shifts)
    parts = [shard(torch.arange(7), r, 3) for r in range(3)]
    assert torch.equal(torch.cat(parts), torch.arange(7)) and [len(p) for p in parts] == [3, 2, 2]
    for part in parts:
        assert torch.equal(apply_augmentation(images[part], 2, flip[part], shifts[:, part]), whole[part])


def test_shard_losses_average_to_the_whole_batch_gradient():
    """Each rank's scaled loss, its gradient averaged over ranks (as DDP does), is the mean-loss gradient."""
    torch.manual_seed(0)
    layer, x, y = torch.nn.Linear(4, 3), torch.randn(7, 4), torch.tensor([0, 1, 2, 0, 1, 2, 0])
    whole = torch.autograd.grad(torch.nn.functional.cross_entropy(layer(x), y, label_smoothing=0.1), layer.weight)[0]
    world, grads = 2, []
    for rank in range(world):
        part = shard(torch.arange(7), rank, world)
        loss = train_loop.shard_loss(layer(x[part]), y[part], label_smoothing=0.1, batch_len=7, world=world)
        grads.append(torch.autograd.grad(loss, layer.weight)[0])
    assert torch.allclose(sum(grads) / world, whole, atol=1e-6)


def test_bnn_latent_weights_stay_clipped():
    model, _ = train(TrainConfig(precision="bnn", lr=0.5, **TINY))
    binary = [m.weight for m in model.modules() if hasattr(m, "scaling")]
    assert binary and max(float(w.detach().abs().max()) for w in binary) <= 1.0


def test_fp_training_learns_something():
    _, result = train(TrainConfig(precision="fp", **{**TINY, "epochs": 3, "train_subset": 256}))
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]


def test_augmentation_is_seeded_and_keeps_shapes():
    images = torch.rand(5, 2, 6, 7)
    one = augment_batch(images, 2, torch.Generator().manual_seed(0))
    two = augment_batch(images, 2, torch.Generator().manual_seed(0))
    assert one.shape == images.shape and torch.equal(one, two)
    flipped_or_not = augment_batch(images, 0, torch.Generator().manual_seed(0))
    for got, orig in zip(flipped_or_not, images):
        assert torch.equal(got, orig) or torch.equal(got, orig.flip(2))


@pytest.mark.parametrize("bad,match", [
    (dict(epochs=0), "epochs"), (dict(precision="int4"), "precision"), (dict(lr=-1.0), "lr"),
    (dict(seed=-1), r"seed must be an integer from 0 to 2\*\*63 - 1, got -1"),
    (dict(seed=2**64), "seed must be an integer from 0"), (dict(seed=1.5), "seed must be an integer"),
    (dict(seed=True), "seed must be an integer"),
    (dict(lr=1e308), r"lr must be a number in \(0, 10\], got 1e\+308"), (dict(lr=float("inf")), "lr must be"),
    (dict(lr=float("nan")), "lr must be"), (dict(lr="0.1"), "lr must be"),
    (dict(train_subset=0), "train_subset must be a positive integer or None"),
])
def test_bad_configuration_is_clear(bad, match):
    with pytest.raises(TrainError, match=match):
        TrainConfig(**bad).resolved()


def test_a_non_finite_loss_stops_training_with_one_line(small_splits, monkeypatch):
    poisoned = small_splits["train"].images.clone()
    poisoned[:, :, 0, 0] = float("nan")
    data = {**small_splits, "train": replace(small_splits["train"], images=poisoned)}
    monkeypatch.setattr(binsight.data, "load_dataset", lambda name, split="test", root=None, **kw: data[split])
    with pytest.raises(TrainError, match=r"the train loss became nan in epoch 1 of 2 \(lr 0\.2\); lower the "
                                         r"learning rate") as info:
        train(TrainConfig(precision="fp", **{**TINY, "epochs": 2}))
    assert "\n" not in str(info.value)


def test_training_warns_when_the_loss_diverges_and_the_model_ends_near_chance():
    with pytest.warns(BinsightWarning) as caught:
        _, result = train(TrainConfig(precision="fp", lr=10.0, **TINY))
    said = [str(w.message) for w in caught]
    assert any("the train loss diverged" in m and "lower the learning rate" in m for m in said)
    assert any("near chance" in m for m in said) and result.warnings == said


def test_the_default_recipe_on_a_small_subset_does_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", BinsightWarning)
        _, result = train(TrainConfig(precision="fp", **{**TINY, "epochs": 2, "train_subset": 256}))
    assert result.warnings == [] and result.test_accuracy > 0.3


@pytest.mark.parametrize("accuracy, chance, near", [(0.19, 0.1, True), (0.22, 0.1, True), (0.25, 0.1, False),
                                                    (0.55, 0.5, True), (0.6, 0.5, False), (1.0, 1.0, False)])
def test_near_chance_rule_both_sides(accuracy, chance, near):
    assert train_loop.near_chance(accuracy, chance) is near


@pytest.mark.parametrize("first, final, diverged", [(2.4, 17.7, True), (2.4, 4.9, True), (2.4, 4.7, False),
                                                    (2.4, 1.6, False)])
def test_diverged_rule_both_sides(first, final, diverged):
    assert train_loop.diverged(first, final) is diverged


def test_a_cached_model_repeats_its_training_warnings(tmp_path):
    kwargs = dict(arch="small-cnn", precision="fp", seed=0, cache=tmp_path, **{**TINY, "lr": 10.0})
    with pytest.warns(BinsightWarning, match="diverged"):
        _, meta = cached_model(**kwargs)
    assert meta["training_warnings"]
    with pytest.warns(BinsightWarning, match=r"cached model .* diverged"):
        _, again = cached_model(**kwargs)
    assert again["from_cache"]


def test_train_error_is_a_binsight_error():
    assert issubclass(TrainError, BinsightError)


def test_cache_key_depends_on_what_changes_the_weights():
    base = cache_key(TrainConfig(precision="bnn"))
    assert cache_key(TrainConfig(precision="bnn", batch_size=RECIPES["bnn"].batch_size)) == base
    assert cache_key(TrainConfig(precision="bnn", batch_size=RECIPES["bnn"].batch_size + 1)) != base
    assert base.startswith("small-cnn-bnn-fashion-mnist-s0-e")
    assert cache_key(TrainConfig(precision="bnn", seed=1)) != base
    assert cache_key(TrainConfig(precision="bnn", surrogate="approx")) != base
    assert cache_key(TrainConfig(precision="bnn", device="cuda", progress=False)) == base
    assert cache_key(TrainConfig(precision="fp", surrogate="approx")) == cache_key(TrainConfig(precision="fp"))


def test_cached_model_trains_once_then_reuses(tmp_path):
    kwargs = dict(arch="small-cnn", precision="bnn", seed=0, cache=tmp_path, **TINY)
    model, meta = cached_model(**kwargs)
    assert not meta["from_cache"] and meta["surrogate"] == "ste" and meta["epochs"] == 1
    assert meta["class_names"][0] == "T-shirt/top"
    again, meta2 = cached_model(**kwargs)
    assert meta2["from_cache"] and meta2["checkpoint"] == meta["checkpoint"]
    x = torch.rand(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    assert len(list(tmp_path.glob("*.safetensors"))) == 1


def test_an_unusable_cached_checkpoint_is_trained_again(tmp_path):
    kwargs = dict(arch="small-cnn", precision="bnn", seed=0, cache=tmp_path, **TINY)
    _, meta = cached_model(**kwargs)
    side = Path(meta["checkpoint"]).with_suffix(".json")
    record = json.loads(side.read_text())
    record["weights_sha256"] = "0" * 64  # as if the weights of another save sat beside this side file
    side.write_text(json.dumps(record))
    with pytest.warns(UserWarning, match="cannot be used.*training it again"):
        model, again = cached_model(**kwargs)
    assert not again["from_cache"]
    loaded, meta3 = cached_model(**kwargs)
    assert meta3["from_cache"]
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), loaded(x))


def test_train_and_evaluate_commands(tmp_path, capsys):
    out = tmp_path / "ckpt.safetensors"
    argv = ["train", "--precision", "bnn", "--epochs", "1", "--train-subset", "64", "--batch-size", "32",
            "--out", str(out)]
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "test accuracy" in printed and str(out) in printed
    meta = json.loads(out.with_suffix(".json").read_text())
    assert meta["architecture"] == "small-cnn" and meta["precision"] == "bnn" and meta["seed"] == 0
    assert main(["evaluate", str(out)]) == 0
    evaluated = capsys.readouterr().out
    assert "test (512 images)" in evaluated and f"accuracy {meta['test_accuracy']:.2%}" in evaluated


def test_evaluate_command_reports_a_bad_checkpoint(tmp_path, capsys):
    bad = tmp_path / "bad.safetensors"
    torch.save({"w": torch.ones(2)}, bad)
    assert main(["evaluate", str(bad)]) == 2
    assert "bad.json is missing" in capsys.readouterr().err


@pytest.mark.parametrize("flags, words", [
    (["--seed", "-1"], r"seed must be an integer from 0 to 2\*\*63 - 1, got -1"),
    (["--lr", "1e308"], r"lr must be a number in \(0, 10\], got 1e\+308"),
    (["--lr", "inf"], r"lr must be a number in \(0, 10\], got inf"),
])
@pytest.mark.parametrize("to_file", [False, True])
def test_train_command_refuses_bad_settings_in_one_line_before_training(flags, words, to_file, tmp_path, capsys,
                                                                         monkeypatch):
    monkeypatch.setenv("BINSIGHT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(train_loop, "_load_split", lambda *a: pytest.fail("training started"))
    out = ["--out", str(tmp_path / "m.safetensors")] if to_file else []
    assert main(["train", *flags, *out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("binsight train: error: ") and err.count("\n") == 1
    assert re.search(words, err) and list(tmp_path.iterdir()) in ([], [tmp_path / "cache"])


def test_train_command_with_a_cache_that_is_a_file(tmp_path, capsys, monkeypatch):
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("BINSIGHT_CACHE", str(tmp_path / "file"))
    monkeypatch.setattr(train_loop, "_load_split", lambda *a: pytest.fail("training started"))
    assert main(["train", "--epochs", "1"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("binsight train: error: cannot use ") and err.count("\n") == 1
    assert "it is a file); set BINSIGHT_CACHE to a folder" in err and (tmp_path / "file").read_text() == "not a folder"
