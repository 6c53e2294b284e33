"""DistributedDataParallel training on 2 CPU processes (gloo), started by torchrun as a user would."""

import json
import os
import subprocess
import sys

import pytest
import torch

from binsight.data import load_dataset
from binsight.train import evaluate, load_checkpoint


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory):
    """One `torchrun --nproc-per-node 2 -m binsight train` into an empty model cache: (stdout, cache)."""
    cache = tmp_path_factory.mktemp("cache")
    env = {**os.environ, "BINSIGHT_CACHE": str(cache), "OMP_NUM_THREADS": "1"}
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        env.pop(name, None)
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
            "-m", "binsight", "train", "--precision", "fp", "--epochs", "2", "--train-subset", "512",
            "--batch-size", "32", "--lr", "0.05", "--device", "cpu"]
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout, cache


def test_ddp_training_writes_one_checkpoint_that_loads_and_evaluates(ddp_run):
    stdout, cache = ddp_run
    assert stdout.count("test accuracy") == 1 and "on 2 processes" in stdout  # rank 0 alone prints
    weights = list((cache / "models").glob("*.safetensors"))
    assert len(weights) == 1 and f"checkpoint: {weights[0]}" in stdout
    model, meta = load_checkpoint(weights[0])
    assert meta["world_size"] == 2 and meta["num_train"] == 512 and meta["precision"] == "fp"
    assert len(meta["history"]) == 2 and meta["history"][1]["train_loss"] < meta["history"][0]["train_loss"]
    test = load_dataset("fashion-mnist", "test")
    assert evaluate(model, test.subset(300, seed=0)) > 0.4  # chance is 0.1
    # Both ranks counted half of the test split each with their own copy of the model: the sum equals the
    # saved model's accuracy only if every rank held rank 0's weights and batch norm statistics.
    assert evaluate(model, test) == meta["test_accuracy"]
