"""A run folder received from someone else, hand-edited, damaged or full of links: ``binsight report`` and a
continued ``binsight study`` never write or delete outside it, never block on a FIFO, never measure a chunk
copied to another chunk's place, recompute damaged records instead of refusing for good, refuse an edited
config.toml, and end a failed write in one line with the folder consistent.

Every test drives the command line (``binsight.cli.main.main``) on copies of one tiny study: two own
models (a seeded CNN from tests/own_models.py, weights in files) on eight 28 x 28 grey images of an image
folder, Gradient maps with their deletion and insertion curves, no training.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

import own_models
from binsight.cli.main import main

pytestmark = pytest.mark.slow

STUDY = """
[data]
name = "image-folder"
root = "{root}"
n_images = 4
image_size = 28
channels = 1
[methods]
run = ["gradient"]
[measures]
curve_steps = 4
road_percentages = [50.0]
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
OWN = """
[[models.own]]
factory = "own_models:build_fp"
kwargs = {{classes = 2}}
weights = "{weights}"
normalize = "inside"
name = "{name}"
group = {group}
"""


@contextlib.contextmanager
def environment(**values: str):
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for k, v in old.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict[str, Path]:
    """{"config", "run", "cache"}: the tiny study's configuration and its finished run folder."""
    top = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for split in ("train", "test"):
        for label, level in (("dark", 40), ("light", 200)):
            (top / "images" / split / label).mkdir(parents=True)
            for i in range(4):
                pixels = np.clip(level + rng.normal(0, 20, (28, 28)), 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(top / "images" / split / label / f"{i}.png")
    text = STUDY.format(root=top / "images")
    for group, name in enumerate(("a", "b")):
        torch.manual_seed(group)
        state = own_models.build_fp(classes=2).state_dict()
        save_file({k: v.contiguous() for k, v in state.items()}, str(top / f"{name}.safetensors"))
        text += OWN.format(weights=top / f"{name}.safetensors", name=name, group=group)
    (top / "study.toml").write_text(text)
    paths = {"config": top / "study.toml", "run": top / "run", "cache": top / "cache"}
    with environment(BINSIGHT_CACHE=str(paths["cache"])):
        assert main(["study", str(paths["config"]), "--out", str(paths["run"]), "--quiet"]) == 0
    return paths


@pytest.fixture
def run(tiny, tmp_path, monkeypatch) -> Path:
    """A copy of the tiny study's finished run folder (the tiny study's cache for a continued study)."""
    monkeypatch.setenv("BINSIGHT_CACHE", str(tiny["cache"]))
    copy = tmp_path / "run"
    shutil.copytree(tiny["run"], copy, symlinks=True)
    return copy


def study(tiny, run: Path) -> int:
    return main(["study", str(tiny["config"]), "--out", str(run), "--quiet"])


def report(run: Path) -> int:
    return main(["report", str(run), "--quiet"])


def one_line_error(err: str, *words: str) -> None:
    lines = [line for line in err.strip().splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("binsight ") and ": error: " in lines[0], err
    assert "Traceback" not in err and all(w in lines[0] for w in words), err


def snapshot(root: Path, skip: tuple[str, ...] = ()) -> dict[str, object]:
    """Every entry below ``root``: its type and mode, and for a file or link its mtime in ns and content
    (links not followed; a folder's mtime left out: a temporary file made and removed inside changes it)."""
    out: dict[str, object] = {}
    for path in sorted(root.rglob("*")):
        rel = str(path.relative_to(root))
        if rel.startswith(skip):
            continue
        st = path.lstat()
        if path.is_dir() and not path.is_symlink():
            out[rel] = (st.st_mode,)
            continue
        content = os.readlink(path) if path.is_symlink() else path.read_bytes() if path.is_file() else None
        out[rel] = (st.st_mode, st.st_mtime_ns, content)
    return out


# ------------------------------------------------------------------------------------------------------
# 12: only regular files are read

RECORDS = ["run.json", "config.toml", "models.json", "images.json", "timings.json", "verdicts.json",
           "measurements.csv", "examples.npz"]


def cli(*args: str, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """``python -m binsight ARGS`` in a child (a read that blocks fails the test instead of hanging it)."""
    return subprocess.run([sys.executable, "-m", "binsight", *args], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("name", RECORDS)
def test_a_fifo_under_a_records_name_is_refused_never_read(run, name):
    (run / name).unlink()
    os.mkfifo(run / name)
    done = cli("report", str(run), "--quiet", timeout=60)
    assert done.returncode == 2
    one_line_error(done.stderr, name, "not a regular file (a FIFO)")


def test_a_fifo_run_json_refuses_the_study_before_anything_runs(tiny, run):
    (run / "run.json").unlink()
    os.mkfifo(run / "run.json")
    before = snapshot(run)
    done = cli("study", str(tiny["config"]), "--out", str(run), "--quiet", timeout=60,
               env={"PYTHONPATH": os.pathsep.join([str(Path(own_models.__file__).parent), os.environ.get("PYTHONPATH", "")])})
    assert done.returncode == 2
    one_line_error(done.stderr, "run.json", "not a regular file (a FIFO)")
    assert snapshot(run) == before


# ------------------------------------------------------------------------------------------------------
# 1: nothing outside the run folder is written or deleted, whatever links it holds

LINKED = ["figures", "maps", "maps/a/gradient", "curves", "units", "units/measures", "models", "corrupt", "models.json",
          "figures/examples_0.png", "report.html", "measurements.csv", "config.toml"]


@pytest.mark.parametrize("where", LINKED)
def test_links_anywhere_in_the_run_never_lead_a_write_or_delete_outside(tiny, run, tmp_path, capsys, where):
    """The linked entry's content moves to a decoy outside the run and the entry becomes a link to it; the
    report and a continued study either work or refuse in one line, and the decoy is left as it was."""
    decoy = tmp_path / "decoy"
    decoy.mkdir()
    target = decoy / Path(where).name
    if (run / where).exists():
        shutil.move(run / where, target)
    else:  # e.g. corrupt/: not made by a sound run
        target.mkdir()
    (decoy / "keep.png").write_bytes(b"the user's own figure")
    (target / "mine.png" if target.is_dir() else decoy / "also-mine.png").write_bytes(b"not the run's")
    (run / where).symlink_to(target)
    before = snapshot(decoy)
    for command in (lambda: report(run), lambda: study(tiny, run)):
        status = command()
        err = capsys.readouterr().err
        assert status in (0, 2) and "Traceback" not in err, err
        if status == 2:
            one_line_error(err, "outside the run folder")
        assert snapshot(decoy) == before, f"{where}: the decoy changed"


def test_a_link_that_stays_inside_the_run_is_followed(run, capsys):
    shutil.move(run / "figures", run / "figures-real")
    (run / "figures").symlink_to(run / "figures-real")
    assert report(run) == 0
    assert (run / "figures-real" / "examples_0.png").is_file()


# ------------------------------------------------------------------------------------------------------
# 11: a chunk's checksum covers its key and its images


def table(run: Path) -> str:
    return (run / "measurements.csv").read_text()


@pytest.mark.parametrize("copy", [("maps/a/gradient/0000.npz", "maps/b/gradient/0000.npz"),
                                  ("maps/a/gradient/0000.npz", "maps/a/gradient/0001.npz")])
def test_a_chunk_copied_to_another_chunks_place_is_recomputed_not_measured(tiny, run, capsys, copy):
    original = table(run)
    source, target = copy
    shutil.copyfile(run / source, run / target)
    shutil.rmtree(run / "units")  # as after merging two run folders: the measures are taken from the maps again
    assert study(tiny, run) == 0
    err = capsys.readouterr().err
    assert f"{run / target} is corrupt" in err and "it will be recomputed" in err, err
    assert (run / "corrupt" / target).is_file()
    assert table(run) == original


# ------------------------------------------------------------------------------------------------------
# 4: a damaged small record never blocks a run for good


@pytest.mark.parametrize("name", ["timings.json", "images.json", "models.json"])
@pytest.mark.parametrize("damage", ["truncated", "wrong shape"])
def test_a_damaged_record_is_set_aside_and_recomputed(tiny, run, capsys, name, damage):
    original, record = table(run), json.loads((run / name).read_text())
    text = (run / name).read_text()
    (run / name).write_text(text[: len(text) // 2] if damage == "truncated" else json.dumps({"oops": [1, 2]}))
    assert study(tiny, run) == 0
    err = capsys.readouterr().err
    assert f"{run / name} is corrupt" in err and f"moved to {run / 'corrupt' / name}" in err, err
    assert (run / "corrupt" / name).is_file()
    again = json.loads((run / name).read_text())
    if name != "timings.json":
        assert again == record
    assert table(run) == original and report(run) == 0


# ------------------------------------------------------------------------------------------------------
# 9: config.toml is checked against run.json


def test_an_edited_config_is_refused_by_the_report_and_restored_by_the_study(tiny, run, capsys):
    path = run / "config.toml"
    path.write_text(path.read_text().replace("confidence = 0.95", "confidence = 0.5"))
    assert report(run) == 2
    one_line_error(capsys.readouterr().err, "config.toml was edited", "restore the file")
    assert not (run / "report.html").read_text().count("confidence = 0.5")
    assert study(tiny, run) == 0
    err = capsys.readouterr().err
    assert f"{path} is corrupt" in err and (run / "corrupt" / "config.toml").is_file(), err
    assert "confidence = 0.95" in path.read_text() and report(run) == 0


def test_an_invalid_config_is_a_one_line_error(run, capsys):
    (run / "config.toml").write_text("[data\nn_images = ")
    assert report(run) == 2
    one_line_error(capsys.readouterr().err, "config.toml is not a valid configuration")


# ------------------------------------------------------------------------------------------------------
# 5: damaged records read by the report: a warning and a partial report, or one line


@pytest.mark.parametrize("name, content", [
    ("examples.npz", None), ("models.json", '{"name": "a"}'), ("models.json", "[1, 2]"),
    ("images.json", '["a"]'), ("images.json", '{"indices": "many"}'), ("verdicts.json", "[]"),
    ("verdicts.json", '{"verdicts": 3}'), ("timings.json", '{"stages": {"maps": "slow"}}'),
    ("models.json", "[" * 100_000 + "]" * 100_000), ("verdicts.json", '{"a": ' * 50_000 + "1" + "}" * 50_000),
    ("images.json", b"\xff\xfe{}"), ("models.json", "1e999"),
])
def test_a_damaged_record_gives_a_warning_and_a_partial_report(run, capsys, name, content):
    path = run / name
    if content is None:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content)
    assert report(run) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and name in err, err
    assert (run / "report.html").is_file()


# ------------------------------------------------------------------------------------------------------
# 7: write failures end in one line and leave the folder consistent


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EROFS])
def test_a_failed_write_is_one_line_and_leaves_the_folder_as_it_was(tiny, run, capsys, monkeypatch, code):
    (run / "timings.json").unlink()  # something for the study to write
    before = snapshot(run, skip=(".binsight.lock",))

    def refuse(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    monkeypatch.setattr("binsight._io.os.replace", refuse)
    for command in (lambda: report(run), lambda: study(tiny, run)):
        assert command() == 2
        one_line_error(capsys.readouterr().err, os.strerror(code), "cannot write")
        assert snapshot(run, skip=(".binsight.lock",)) == before
