"""The study records which maps did not settle (NeuroMask masks near their random start), per map, from the
explainer's own measure (#26); the verdicts' side is tested in test_study_verdicts.py."""

from __future__ import annotations

import csv

import pytest

from binsight.cli import main

pytestmark = pytest.mark.slow

TINY = """
[data]
n_images = 4
[models]
seeds = [0]
epochs_fp = 1
epochs_bnn = 1
train_subset = 256
test_subset = 64
[methods]
run = ["gradient", "neuromask"]
[methods.neuromask]
iterations = {iterations}
[measures]
faithfulness = false
chance_methods = []
chance_maps = 0
[run]
device = "cpu"
progress = false
"""


def test_maps_that_did_not_leave_their_start_are_recorded_per_map(tmp_path, monkeypatch):
    monkeypatch.setenv("BINSIGHT_CACHE", str(tmp_path / "cache"))
    path = tmp_path / "tiny.toml"
    path.write_text(TINY.format(iterations=20))
    assert main(["study", str(path), "--out", str(tmp_path / "run"), "--quiet"]) == 0
    rows = [r for r in csv.DictReader(open(tmp_path / "run" / "measurements.csv")) if r["measure"] == "unsettled"]
    assert {r["method"] for r in rows} == {"neuromask"}  # Gradient has no measure of its own: no rows
    assert len(rows) == 2 * 4 and all(float(r["value"]) == 1.0 for r in rows)  # 20 steps: every mask near its start
