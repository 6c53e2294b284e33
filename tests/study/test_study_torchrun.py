"""The study on two processes (``torchrun``, gloo on the CPU) against one: bit-identical maps, the same
table and verdicts; a two-process run killed part-way (the whole process group) and started again gives
the same table with no duplicate rows, also when a one-process run is continued on two; a job pointed at
a folder another job holds is refused on every rank."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import processes
from binsight.study.config import load_config
from binsight.study.store import RunFolder

pytestmark = pytest.mark.slow

TINY = """
[data]
n_images = 6
[models]
seeds = [0]
epochs_fp = 1
epochs_bnn = 1
train_subset = 256
test_subset = 64
[methods]
run = ["gradient", "smoothgrad", "gradcam"]
[methods.smoothgrad]
n_samples = 3
convergence = {n_samples = 6}
[measures]
curve_steps = 4
road_percentages = [30.0, 70.0]
sanity_images = 2
convergence_images = 3
chance_methods = ["gradient"]
chance_maps = 10
chance_images = 1
[verdicts]
n_resamples = 100
robustness_surrogates = ["ste", "approx"]
[run]
device = "cpu"
chunk_size = 2
progress = false
"""


def command(config: Path, out: Path, ranks: int) -> list[str]:
    study = ["-m", "binsight", "study", str(config), "--out", str(out)]
    if ranks == 1:
        return [sys.executable, *study]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={ranks}", *study]


def start(config: Path, out: Path, ranks: int, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(command(config, out, ranks), env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, start_new_session=True)


def finish(proc: subprocess.Popen) -> str:
    return processes.finish(proc, timeout=600)


def maps_of(folder: Path) -> dict[str, dict[str, np.ndarray]]:
    out = {}
    for path in sorted(folder.glob("maps/*/*/*.npz")):
        with np.load(path) as data:
            out[str(path.relative_to(folder))] = {k: data[k] for k in data.files}
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The study on one process, on two, and on two killed part-way then started again."""
    root = tmp_path_factory.mktemp("torchrun")
    config = root / "tiny.toml"
    config.write_text(TINY)
    env = {**os.environ, "BINSIGHT_CACHE": str(root / "cache"), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    finish(start(config, root / "one", 1, env))  # trains the two models into the cache
    log = finish(start(config, root / "two", 2, env))

    killed = root / "killed"
    processes.kill_after(start(config, killed, 2, env), killed, "maps/*/*/*.npz", 4, timeout=120, group=True)
    assert not (killed / "measurements.csv").exists()
    finish(start(config, killed, 2, env))

    changed = root / "changed"  # `make study` picks the process count by machine: a run may continue on another
    processes.kill_after(start(config, changed, 1, env), changed, "maps/*/*/*.npz", 4, timeout=120, group=True)
    finish(start(config, changed, 2, env))
    return {"root": root, "config": config, "env": env, "log": log}


def test_two_processes_give_bit_identical_maps(runs):
    one, two = maps_of(runs["root"] / "one"), maps_of(runs["root"] / "two")
    assert one.keys() == two.keys() and len(one) > 20
    for name, arrays in one.items():
        for key, value in arrays.items():
            assert np.array_equal(value, two[name][key]), (name, key)


def test_two_processes_give_the_same_table_and_verdicts(runs):
    one, two = runs["root"] / "one", runs["root"] / "two"
    for name in ("measurements.csv", "verdicts.json", "models.json", "images.json"):
        assert (one / name).read_text() == (two / name).read_text(), name
    assert '"ranks": 2' in (two / "timings.json").read_text()


def test_killed_and_restarted_gives_the_same_table_without_duplicates(runs):
    one, killed = runs["root"] / "one", runs["root"] / "killed"
    assert (killed / "measurements.csv").read_text() == (one / "measurements.csv").read_text()
    lines = (killed / "measurements.csv").read_text().splitlines()[1:]
    keys = [line.rsplit(",", 1)[0] for line in lines]
    assert len(keys) == len(set(keys)) and keys
    assert (killed / "verdicts.json").read_text() == (one / "verdicts.json").read_text()


def test_a_run_killed_on_one_process_continues_on_two_with_the_same_table(runs):
    one, changed = runs["root"] / "one", runs["root"] / "changed"
    for name in ("measurements.csv", "verdicts.json"):
        assert (changed / name).read_text() == (one / name).read_text(), name
    assert maps_of(changed).keys() == maps_of(one).keys()


def test_a_second_job_on_a_held_folder_is_refused_on_every_rank(runs):
    held = runs["root"] / "held"
    with RunFolder.create(held, load_config(runs["config"])):
        proc = subprocess.run(command(runs["config"], held, 2), env=runs["env"], capture_output=True, text=True,
                              timeout=300)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0
    assert out.count("binsight study: error:") == 2, out  # both ranks stop with one clean line each
    assert "in use by another running study" in out and "could not claim" in out
    assert "Traceback" not in out.split("binsight study: error:")[0]
    assert not (held / "models.json").exists()
