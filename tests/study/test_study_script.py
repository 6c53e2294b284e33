"""scripts/study.sh, what `make study` runs: on a machine without a GPU the study runs on NPROC processes
(torchrun) and finishes with the same verdicts as one process; a bad NPROC is refused with a message."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from test_study_torchrun import TINY

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
VENV = Path(sys.executable).parent.parent  # the environment running the tests: its bin/ has binsight


def study_sh(*args: str, nproc: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "NPROC": nproc}
    return subprocess.run(["bash", str(ROOT / "scripts" / "study.sh"), str(VENV), *args], env=env, cwd=cwd,
                          capture_output=True, text=True, timeout=600)


def test_nproc_2_runs_the_study_on_two_processes_with_the_verdicts_of_one(tmp_path):
    config = tmp_path / "tiny.toml"
    config.write_text(TINY)
    runs = {}
    for nproc in ("2", "1"):
        done = study_sh(str(config), "--out", str(tmp_path / f"run{nproc}"), nproc=nproc, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-3000:]
        timings = json.loads((tmp_path / f"run{nproc}" / "timings.json").read_text())
        assert timings["ranks"] == int(nproc)
        runs[nproc] = json.loads((tmp_path / f"run{nproc}" / "verdicts.json").read_text())
    assert "on 2 processes" in study_sh(str(config), "--out", str(tmp_path / "run2"), nproc="2", cwd=tmp_path).stdout
    assert runs["2"] == runs["1"]


@pytest.mark.parametrize("nproc", ["0", "two", "-1"])
def test_a_bad_nproc_is_refused_with_a_message(tmp_path, nproc):
    done = study_sh("--out", str(tmp_path / "run"), nproc=nproc, cwd=tmp_path)
    assert done.returncode == 2
    assert "NPROC must be a positive whole number" in done.stderr and not (tmp_path / "run").exists()
