"""binsight.distributed in a single process (a world of one), and device resolution."""

import pytest
import torch

from binsight import distributed
from binsight.cli import main
from binsight.errors import BinsightError


@pytest.fixture
def no_launcher(monkeypatch):
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"):
        monkeypatch.delenv(name, raising=False)


def test_a_single_process_is_a_world_of_one(no_launcher):
    assert not distributed.launched() and not distributed.is_distributed()
    assert (distributed.rank(), distributed.world_size(), distributed.local_rank()) == (0, 1, 0)
    distributed.barrier()
    assert distributed.broadcast_int(7) == 7 and distributed.sum_over_ranks([1, 2.5]) == [1.0, 2.5]
    module = torch.nn.Linear(2, 2)
    before = module.weight.detach().clone()
    distributed.broadcast_module(module)
    assert torch.equal(module.weight, before)
    with distributed.session("cpu") as device:
        assert device == "cpu" and not torch.distributed.is_initialized()


def test_torchrun_with_one_process_sets_up_nothing(monkeypatch):
    monkeypatch.setenv("RANK", "0")
    monkeypatch.setenv("WORLD_SIZE", "1")
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert not distributed.launched()
    with distributed.session("cpu"):
        assert not torch.distributed.is_initialized()


def test_launched_reads_torchruns_variables(monkeypatch):
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    assert distributed.launched() and distributed.local_rank() == 1


@pytest.mark.parametrize("available,expected", [(False, "cpu"), (True, "cuda")])
def test_auto_picks_a_gpu_when_there_is_one(monkeypatch, no_launcher, available, expected):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: available)
    assert distributed.resolve_device("auto") == expected
    assert distributed.resolve_device("cpu") == "cpu"


def test_backend_follows_the_device():
    assert distributed.backend_for("cpu") == "gloo"
    assert distributed.backend_for("cuda:1") == "nccl"


def test_cuda_without_a_gpu_is_a_clear_error(monkeypatch, no_launcher):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(distributed.DeviceError, match="no CUDA GPU here; use .auto. or .cpu."):
        distributed.device_for_rank("cuda")
    assert issubclass(distributed.DeviceError, BinsightError)


def test_train_command_reports_a_missing_gpu_in_one_line(monkeypatch, no_launcher, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["train", "--device", "cuda", "--epochs", "1", "--train-subset", "8"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "no CUDA GPU" in err and "use 'auto' or 'cpu'" in err
