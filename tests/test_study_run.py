"""The study end to end on a tiny configuration: resume after a real SIGKILL, refusal of another
configuration in the same folder, and the report opened in headless Chromium."""

from __future__ import annotations

import base64
import csv
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

TINY = """
[data]
n_images = 6
[models]
epochs_fp = 1
epochs_bnn = 1
train_subset = 256
test_subset = 64
[methods.smoothgrad]
n_samples = 3
[methods.neuromask]
iterations = 30
n_images = 4
sanity_iterations = 5
[measures]
curve_steps = 4
road_percentages = [30.0, 70.0]
sanity_images = 2
sanity_methods = ["gradient", "neuromask"]
[verdicts]
n_resamples = 200
[run]
chunk_size = 2
progress = false
"""

KEY = ("image", "model", "model_b", "method", "measure", "step")


def study(config: Path, out: Path, env: dict[str, str], **kw) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "binsight.cli", "study", str(config), "--out", str(out)]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, **kw)


def finish(proc: subprocess.Popen) -> str:
    out, _ = proc.communicate(timeout=600)
    assert proc.returncode == 0, out
    return out


def read_table(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """An uninterrupted run, and a run killed with SIGKILL part-way through its maps then resumed."""
    root = tmp_path_factory.mktemp("study")
    config = root / "tiny.toml"
    config.write_text(TINY)
    # one thread per process: the test machine's cores are shared, and oversubscribed threads crawl
    env = {**os.environ, "BINSIGHT_CACHE": str(root / "cache"), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    whole = root / "whole"
    log = finish(study(config, whole, env))

    killed = root / "killed"
    proc = study(config, killed, env)
    deadline = time.monotonic() + 300
    while len(list(killed.glob("maps/*/*/*.npz"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert proc.poll() is None, "the study finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = {p: p.stat().st_mtime_ns for p in killed.glob("maps/*/*/*.npz")}
    assert not (killed / "measurements.csv").exists()
    finish(study(config, killed, env))
    return {"root": root, "config": config, "env": env, "whole": whole, "killed": killed, "log": log,
            "maps_before_kill": before}


def test_resumed_run_gives_the_same_table_without_duplicates(runs):
    whole, resumed = read_table(runs["whole"] / "measurements.csv"), read_table(runs["killed"] / "measurements.csv")
    assert resumed == whole
    keys = [tuple(r[k] for k in KEY) for r in resumed]
    assert len(keys) == len(set(keys))
    measures = {r["measure"] for r in whole}
    assert {"spearman", "ssim", "top_k_iou", "total_variation", "high_frequency_energy", "deletion_auc",
            "insertion_auc", "road_morf", "road_lerf", "pointing_game", "energy_inside", "degenerate",
            "sanity_spearman"} <= measures
    neuromask_images = {r["image"] for r in whole if r["method"] == "neuromask"}
    assert len(neuromask_images) == 4 and len({r["image"] for r in whole}) == 6


def test_resume_computes_nothing_twice(runs):
    for path, mtime in runs["maps_before_kill"].items():
        assert path.stat().st_mtime_ns == mtime, f"{path} was computed again"
    assert not list(runs["killed"].rglob("*.part"))


def test_run_folder_holds_the_outputs(runs):
    whole = runs["whole"]
    for name in ("config.toml", "models.json", "verdicts.json", "timings.json", "report.html", "images.json"):
        assert (whole / name).is_file(), name
    assert len(list((whole / "models").glob("*.safetensors"))) == 4
    assert {p.stem for p in (whole / "figures").glob("*.png")} >= {"examples", "measures", "similarity", "sanity",
                                                                   "deletion_insertion"}
    assert "report:" in runs["log"] and "Gradient" in runs["log"]


def test_another_configuration_in_the_same_folder_is_refused(runs):
    other = runs["root"] / "other.toml"
    other.write_text(TINY.replace("n_images = 6", "n_images = 5"))
    proc = study(other, runs["whole"], runs["env"])
    out, _ = proc.communicate(timeout=300)
    assert proc.returncode == 2
    assert "holds a run of another configuration" in out and "Traceback" not in out


def test_report_rebuilds_from_the_folder_alone(runs, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(runs["whole"], copy)
    (copy / "report.html").unlink()
    out = subprocess.run([sys.executable, "-m", "binsight.cli", "report", str(copy)], capture_output=True, text=True,
                         env=runs["env"], timeout=300)
    assert out.returncode == 0, out.stderr
    html = (copy / "report.html").read_text()
    uris = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(uris) >= 5
    assert all(base64.b64decode(u).startswith(b"\x89PNG\r\n\x1a\n") for u in uris)
    assert 'id="verdict-table"' in html and "src=\"http" not in html


def test_report_of_a_partial_run(runs, tmp_path):
    from binsight.report import build_report

    partial = tmp_path / "partial"
    shutil.copytree(runs["whole"], partial)
    for name in ("verdicts.json", "measurements.csv", "report.html"):
        (partial / name).unlink()
    shutil.rmtree(partial / "units" / "sanity")
    html = build_report(partial).read_text()
    assert "This run is not finished" in html and 'id="verdict-table"' in html


CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)

LOAD_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-loaded', imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
});
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/setup.sh VENV --test-system-deps installs it)")
def test_report_in_headless_chromium(runs, tmp_path):
    page = tmp_path / "report.html"
    page.write_text((runs["whole"] / "report.html").read_text().replace("</body>", LOAD_CHECK))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    found = re.search(r'data-images="(\d+)" data-loaded="(\d+)"', dom)
    assert found, dom[:500]
    assert int(found.group(1)) >= 5 and found.group(1) == found.group(2)
    assert 'id="verdict-table"' in dom and dom.count("<tr>") >= 5
    shot = tmp_path / "report.png"
    subprocess.run(flags + ["--hide-scrollbars", f"--screenshot={shot}", "--window-size=1280,2000", page.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.read_bytes().startswith(b"\x89PNG")
