"""The report, built from a tiny run folder written here in the documented formats (no training).

The folder holds 2 FP and 2 BNN models, one robustness variant (``bnn-0+approx``), 6 images, the
configured methods plus a signed Captum method and the chance maps, every kind of row (single-map,
pair, image-shuffled, sanity, predictions, undefined counts), curves and typed verdicts.
"""

from __future__ import annotations

import base64
import re
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest

from binsight.report import build_report, names
from binsight.report.figures import colour_scale, is_flat, wilson_interval
from binsight.study.config import StudyConfig
from binsight.study.store import Row, RunFolder

MODELS = [("fp-0", "fp", "0", ""), ("fp-1", "fp", "1", ""), ("bnn-0", "bnn", "0", "ste"), ("bnn-1", "bnn", "1", "ste"),
          ("bnn-0+approx", "bnn", "0", "approx")]
BASE = [m[0] for m in MODELS if "+" not in m[0]]
METHODS = ["gradient", "smoothgrad", "gradcam", "neuromask", "captum:IntegratedGradients", "random", "smooth-random"]
IMAGES = [3, 8, 15, 21, 40, 77]
CLASSES = ["T-shirt", "Trouser", "Pullover"]
H = W = 12


def _maps(model: str, method: str, rng: np.random.Generator) -> np.ndarray:
    """(n, 1, H, W): smooth positive maps; signed for Captum; bnn-1's NeuroMask flat within float noise."""
    n = len(IMAGES)
    if model == "bnn-1" and method == "neuromask":
        return (4.54e-5 + 1e-11 * rng.standard_normal((n, 1, H, W))).astype(np.float32)
    base = rng.random((n, 1, H, W))
    if method == "captum:IntegratedGradients":
        return (base - 0.5).astype(np.float32)
    return (base * (3.0 if model.startswith("bnn") else 1.0)).astype(np.float32)


def _rows(rng: np.random.Generator) -> list[Row]:
    rows = []
    for model, precision, *_ in MODELS:
        for i, image in enumerate(IMAGES):
            rows.append(Row("predicted", "", model, "", 0, image, float(i % 3 if precision == "fp" else (i + (i == 0)) % 3)))
            rows.append(Row("correct", "", model, "", 0, image, float(i % 2)))
        for method in METHODS:
            for image in IMAGES:
                flat = model == "bnn-1" and method == "neuromask"
                rows.append(Row("degenerate", method, model, "", 0, image, float(flat)))
                for measure in ("total_variation", "road_lerf", "deletion_blur_auc"):
                    rows.append(Row(measure, method, model, "", 0, image, float(rng.random())))
                rows.append(Row("pointing_game", method, model, "", 0, image, float(rng.random() < 0.6)))
                if not flat:
                    rows.append(Row("nonsensical", method, model, "", 0, image, float(rng.random() < 0.2)))
                    rows.append(Row("chance_fraction_road_morf", method, model, "", 0, image, float(rng.random())))
    for a in range(len(MODELS)):
        for b in range(a + 1, len(MODELS)):
            ma, mb = MODELS[a][0], MODELS[b][0]
            for method in METHODS:
                for image in IMAGES:
                    undefined = mb == "bnn-1" and method == "neuromask"
                    for measure in ("spearman", "spearman_object", "spearman_shuffled", "ssim"):
                        if undefined and measure.startswith("spearman"):
                            rows.append(Row(f"{measure}:undefined", method, ma, mb, 0, image, 1.0))
                        else:
                            rows.append(Row(measure, method, ma, mb, 0, image, float(rng.uniform(-0.2, 0.9))))
    for model in BASE:
        for method in ("gradient", "gradcam"):
            for step in (1, 2, 3):
                for image in IMAGES[:2]:
                    rows.append(Row("sanity_spearman", method, model, "", step, image, 1.0 - 0.3 * step))
    return rows


def _verdicts_json(rows: list[Row]) -> str:
    """Typed verdicts: verdict 1 partly held (a held and an inconclusive part), fragile; verdict 2 not measured."""
    from binsight.study import verdicts as v

    covers = "2 FP and 2 BNN models (resampled within precision) and 6 images (resampled)"

    def est(value, low, high, effect=None):
        return v.Estimate(value=value, low=low, high=high, confidence=0.95, covers=covers, n_images=6,
                          n_resamples=200, effect=effect)

    held = v.Part(name="spearman", question="FP-vs-BNN at least FP-vs-FP minus the margin?", status=v.Status.HELD,
                  estimate=est(0.01, -0.05, 0.07, effect=0.12), bound=-0.1, sentence="Spearman part held.",
                  reading="alike", levels={"FP-vs-BNN": est(0.4, 0.3, 0.5)})
    straddles = v.Part(name="ssim", question="FP-vs-BNN at least FP-vs-FP minus the margin?",
                       status=v.Status.INCONCLUSIVE, estimate=est(-0.09, -0.2, 0.02), bound=-0.1,
                       sentence="SSIM part straddles.", reading="maps unstable across seeds")
    one = v.Verdict(id=1, title="Gradient: FP and BNN maps look alike", finding="very similar-looking maps",
                    status=v.Status.PARTLY_HELD, parts=(held, straddles), reading="maps unstable across seeds",
                    sentence="Spearman and SSIM disagree.",
                    robustness=(v.Robustness("surrogate approx", v.Status.NOT_HELD, "BNN maps differ from FP maps", True),
                                v.Robustness("margins x0.5", v.Status.PARTLY_HELD, "", False)), fragile=True)
    two = v.Verdict(id=2, title="SmoothGrad: BNN maps are noisier", finding="significantly noisier for BNNs",
                    status=v.Status.NOT_MEASURED, parts=(), reading="", sentence="Not measured: smoothgrad was not run.")
    models = [v.ModelInfo(n, p, g, s) for n, p, g, s in MODELS]
    table = v.Table(rows)
    return v.StudyVerdicts((one, two), tuple(v.per_pair_values(table, models)), v.predictions(table, models),
                           tuple(v.undefined_counts(table)), v.VerdictSettings()).to_json()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("report") / "run"
    rng = np.random.default_rng(0)
    folder = RunFolder.create(root, StudyConfig())
    try:
        folder.files.write_json("models.json", [{"name": n, "precision": p, "group": g, "surrogate": s, "arch": "tiny",
                                           "accuracy": 0.9, "gradcam_layer": "features.3"} for n, p, g, s in MODELS])
        folder.files.write_json("images.json", {"dataset": "synthetic", "split": "test", "n": len(IMAGES), "classes": CLASSES,
                                          "indices": IMAGES, "has_masks": True})
        folder.records.save_examples(rng.random((3, 1, H, W)), np.array([0, 1, 2]))
        fractions = np.linspace(0, 1, 5)
        for model, *_ in MODELS:
            folder.files.write_json(f"sanity_layers_{model}.json", ["fc", "conv2", "conv1"])
            for method in METHODS:
                folder.maps.save(model, method, 0, maps=_maps(model, method, rng), targets=np.zeros(len(IMAGES), np.int64),
                                 images=np.array(IMAGES))
                folder.curves.save(model, method, 0, fractions=fractions,
                                   **{k: rng.random((len(IMAGES), 5)) for k in ("deletion", "insertion", "deletion_black")})
        rows = _rows(rng)
        folder.units.save("all", ("rows",), rows)
        folder.units.merge()
        (root / "verdicts.json").write_text(_verdicts_json(rows))
    finally:
        folder.close()
    return root


@pytest.fixture(scope="module")
def html(run_dir) -> str:
    steps = []
    path = build_report(run_dir, progress=steps.append)
    assert len(steps) >= 3 and steps[-1] == "report.html"
    return path.read_text()


class _Page(HTMLParser):
    """Ids, links, images and the text of each table row."""

    def __init__(self):
        super().__init__()
        self.ids, self.links, self.images, self.text = [], [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if "id" in a:
            self.ids.append(a["id"])
        if tag == "a" and a.get("href", "").startswith("#"):
            self.links.append(a["href"][1:])
        if tag == "img":
            self.images.append(a.get("src", ""))

    def handle_data(self, data):
        self.text.append(data)


def _page(html: str) -> _Page:
    page = _Page()
    page.feed(html)
    return page


def test_every_image_is_an_embedded_png_and_every_contents_link_resolves(html):
    page = _page(html)
    assert len(page.images) >= 7
    for src in page.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG\r\n\x1a\n")
    assert page.links and set(page.links) <= set(page.ids)
    assert len(page.ids) == len(set(page.ids)), "an id is used twice"
    assert "http://" not in html and "https://" not in html.replace("arXiv", "")


def test_no_nan_anywhere_in_the_page(html):
    assert not re.search(r"\bnan\b", html, flags=re.IGNORECASE)


def test_statuses_parts_and_covers_shown_as_computed(html):
    text = " ".join(_page(html).text)
    for status in ("partly held", "held", "inconclusive", "not measured"):
        assert status in text
    assert "maps unstable across seeds" in text
    assert ("2 FP and 2 BNN models (resampled within precision; the FP-vs-FP and BNN-vs-BNN baselines, one pair "
            "of 2 models each, vary with the images only) and 6 images (resampled)") in text  # 2 models a precision
    assert "+0.010" in text and "[-0.050, +0.070]" in text
    assert "significantly" not in text.replace("significantly noisier for BNNs", "")


def test_robustness_table_marks_the_fragile_verdict(html):
    table = html.split('id="robustness-table"', 1)[1].split("</table>", 1)[0]
    assert "surrogate approx" in table and "margins x0.5" in table
    assert "fragile" in table and "not held" in table
    assert "SmoothGrad" not in table  # no robustness rows: not listed


def test_prediction_agreement_and_each_pairs_value(html):
    text = " ".join(_page(html).text)
    # fp models predict i % 3, bnn models the same except image 0: all agree on 5 of 6 images
    assert "on 83.3% of the 6 images" in text
    pairs = html.split('id="pair-table-spearman"', 1)[1].split("</table>", 1)[0]
    assert pairs.count("<tr>") == 1 + 6  # header + C(4, 2) base pairs, no variant
    assert "bnn-0+approx" not in pairs


def test_undefined_values_counted_never_drawn(html):
    table = html.split('id="undefined-table"', 1)[1].split("</table>", 1)[0]
    # bnn-1 neuromask: 3 pairs (fp-0, fp-1, bnn-0 against bnn-1) x 6 images, for each spearman measure
    assert "<code>spearman</code>" in table and "18" in table


def test_clear_measure_names(html):
    assert "ROAD, least relevant first (higher = more faithful)" in html
    assert names.label("top_k_iou_object", top_k=0.1) == "IoU of the two maps' top 10% pixels, inside the dilated object mask"
    assert names.label("spearman_shuffled").startswith("Spearman rank correlation of two maps, image-shuffled")
    assert names.is_binary("pointing_game") and names.is_binary("nonsensical") and not names.is_binary("road_lerf")


def test_gradcam_layer_stated(html):
    assert "features.3" in html.split('id="gradcam-layer"', 1)[1]


def test_figures_written_beside_the_report(run_dir, html):
    written = {p.stem for p in (run_dir / "figures").glob("*.png")}
    assert {"examples_0", "measures", "proportions", "similarity", "sanity", "deletion_insertion"} <= written


def test_wilson_interval_known_answers():
    low, high = wilson_interval(5, 10, confidence=0.95)
    assert low == pytest.approx(0.2366, abs=1e-4) and high == pytest.approx(0.7634, abs=1e-4)
    assert wilson_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-4)
    assert wilson_interval(0, 0) == (0.0, 1.0)


def test_colour_scale_is_shared_and_diverging_for_signed_maps():
    a, b = np.array([[0.0, 1.0]]), np.array([[0.0, 4.0]])
    assert colour_scale([a, b]) == ("inferno", 0.0, 4.0)
    assert colour_scale([a - 3.0, b]) == ("RdBu_r", -4.0, 4.0)


def test_flat_maps_are_recognised():
    assert is_flat(np.zeros((4, 4))) and is_flat(np.full((4, 4), 4.54e-5) + 1e-12 * np.arange(16).reshape(4, 4))
    assert not is_flat(np.arange(16.0).reshape(4, 4))
    # the measures' rule (1e-3 of the magnitude): a range of 5e-4 is flat, one of 2e-3 is not
    assert is_flat(1.0 + 5e-4 * np.eye(4)) and not is_flat(1.0 + 2e-3 * np.eye(4))


def test_partial_run_without_verdicts_or_measurements(run_dir, tmp_path):
    partial = tmp_path / "partial"
    shutil.copytree(run_dir, partial)
    for name in ("verdicts.json", "measurements.csv", "measurements.csv.sha256", "report.html"):
        (partial / name).unlink()
    html = build_report(partial).read_text()
    assert "This run is not finished" in html and "No verdicts yet" in html
    assert not re.search(r"\bnan\b", html, flags=re.IGNORECASE)


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")

LOAD_CHECK = """<script>
window.addEventListener('load', function () {
  var imgs = Array.from(document.images);
  document.body.setAttribute('data-images', imgs.length);
  document.body.setAttribute('data-loaded', imgs.filter(function (i) { return i.complete && i.naturalWidth > 0; }).length);
});
</script></body>"""


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not on PATH (make test installs it: scripts/setup.sh VENV --test-system-deps)")
def test_report_in_headless_chromium(html, tmp_path):
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", LOAD_CHECK))
    flags = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run(flags + ["--virtual-time-budget=5000", "--dump-dom", page.as_uri()], capture_output=True,
                         text=True, timeout=120).stdout
    found = re.search(r'data-images="(\d+)" data-loaded="(\d+)"', dom)
    assert found, dom[:500]
    assert int(found.group(1)) >= 7 and found.group(1) == found.group(2)
    assert 'id="verdict-table"' in dom and 'id="robustness-table"' in dom


def test_overlay_of_a_run_folder(run_dir):
    from binsight.report.build import overlay_png

    png = overlay_png(run_dir, method="gradient", example=1)
    assert png is not None and png.startswith(b"\x89PNG\r\n\x1a\n")
    assert overlay_png(run_dir, method="not-a-method") is None


def test_tqdm_progress_counts_the_steps(run_dir, tmp_path):
    from binsight.report.build import STEPS, tqdm_progress

    calls = []
    progress = tqdm_progress(disable=True)
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    build_report(copy, progress=lambda name: (calls.append(name), progress(name)))
    assert len(calls) == STEPS


def test_report_of_a_run_that_has_only_started(tmp_path):
    RunFolder.create(tmp_path / "new", StudyConfig()).close()
    html = build_report(tmp_path / "new").read_text()
    assert "This run is not finished" in html and "No maps yet" in html
    assert not _page(html).images


def test_findings_block_is_generated_from_the_run_folder_alone(run_dir, tmp_path, capsys):
    """The README's findings come from a run folder, never typed: models with accuracy, what the numbers
    rest on, each verdict and part with its status, interval and what the interval covers."""
    import importlib.util

    from binsight.report.findings import END, START, FindingsError, findings_markdown, replace_block

    block = findings_markdown(run_dir)
    assert "fp-0 90.00 %" in block and "bnn-1 90.00 %" in block and "bnn-0+approx" not in block.split("\n")[0]
    assert "1. **Gradient: FP and BNN maps look alike**: *partly held, **fragile***. Reading: maps unstable" in block
    assert ("   - spearman: *held*, +0.010 [-0.050, +0.070] (bound -0.100); FP-vs-BNN +0.400 [+0.300, +0.500]; "
            "reading: alike") in block
    assert "   - ssim: *inconclusive*, -0.090 [-0.200, +0.020]" in block and "status changes under: surrogate approx" in block
    assert "95% crossed models-by-images t-interval" in block
    assert "2. **SmoothGrad: BNN maps are noisier**: *not measured*" in block
    from binsight.report.findings import timings_sentence
    from binsight.study.records import Timings
    assert timings_sentence(Timings.from_json({"stages": {"maps": 3.2, "verdicts": 0.1}, "ranks": 2})) == (
        "Stage times of this run on 2 processes (torchrun) (wall, as recorded in timings.json): maps 3 s.")
    assert "this run in one process (wall" in timings_sentence(Timings.from_json({"stages": {"maps": 3.2}}))
    continued = Timings.from_json({"stages": {"verdicts": 5.4, "maps": 0.2}, "history": [{"maps": 399.3, "verdicts": 4.4}]})
    assert timings_sentence(continued) == (
        "Stage times of this run (wall, as recorded in timings.json), invocation by invocation: invocation 1: maps "
        "399 s, verdicts 4 s; invocation 2 (continued in one process): verdicts 5 s.")
    readme = f"intro\n{START}\nold findings\n{END}\nafter\n"
    assert replace_block(readme, block) == f"intro\n{START}\n{block}{END}\nafter\n"
    for broken in ("no markers", f"{END}\n{START}", f"{START}\n{START}\n{END}"):
        with pytest.raises(FindingsError, match="marker"):
            replace_block(broken, block)
    spec = importlib.util.spec_from_file_location("readme_findings", Path(__file__).parents[2] / "scripts/readme_findings.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    target = tmp_path / "README.md"
    target.write_text(readme)
    assert script.main([str(run_dir), "--readme", str(target)]) == 0
    assert target.read_text() == replace_block(readme, block)
    empty = tmp_path / "not-finished"
    empty.mkdir()
    assert script.main([str(empty), "--print"]) == 2 and "finish the study first" in capsys.readouterr().err


def test_dollar_signs_in_class_names_are_drawn_as_written(run_dir, tmp_path, monkeypatch):
    """Class names holding ``$`` (an image folder's folder names) are drawn as written, never as math."""
    from matplotlib.text import Text

    from binsight.report import figures

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    RunFolder(copy).files.write_json("images.json", {"dataset": "synthetic", "split": "test", "n": len(IMAGES),
                                               "classes": ["a$b$c", "$x$", "c"], "indices": IMAGES, "has_masks": True})
    texts = []
    to_png = figures.to_png

    def spy(fig):
        texts.extend(t._preprocess_math(t.get_text()) for t in fig.findobj(Text) if "$" in t.get_text())
        return to_png(fig)

    monkeypatch.setattr(figures, "to_png", spy)
    build_report(copy)
    shown = [text for text, _ in texts]
    assert any("true class: a$b$c" in t for t in shown) and any("true class: $x$" in t for t in shown)
    assert not any(math for _, math in texts), texts


def test_a_maps_folder_linked_outside_the_run_is_refused_for_reading(run_dir, tmp_path, capsys):
    """``binsight report`` only reads maps: a ``maps/`` that is a link out of the run folder is refused in
    one line that says so, not as a write."""
    from binsight.cli import main

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    shutil.move(copy / "maps", tmp_path / "elsewhere")
    (copy / "maps").symlink_to(tmp_path / "elsewhere")
    assert main(["report", str(copy), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "refusing to" in err and "refusing to write" not in err, err


def _limits(html: str) -> str:
    found = re.search(r'<div class="limits" id="limits">(.*?)</div>', html, flags=re.S)
    assert found, "the page has no limits box"
    return " ".join(_page(found.group(1)).text)


def test_the_page_opens_with_the_runs_limits(html):
    """2 FP and 2 BNN models (and one surrogate variant, not a model): counted as 4; their accuracy, the
    images, and that the within-precision baselines (one pair each) vary with the images only."""
    assert html.index('id="limits"') < html.index('id="contents"')
    assert "· 4 models ·" in html
    box = _limits(html)
    assert "2 FP and 2 BNN models; given as checkpoints or own models (no training seed)" in box
    assert "1 more table entries are BNNs explained with another surrogate" in box
    assert "fp-0 90.0 %" in box and "bnn-1 90.0 %" in box and "bnn-0+approx 90.0" not in box
    assert "6 test images of synthetic" in box and "NeuroMask 2000 iterations" in box
    assert "SmoothGrad 50 samples (convergence check: 200)" in box
    assert "2 FP models: the FP-vs-FP baseline is one pair, so its interval covers the images only" in box
    assert "2 BNN models: the BNN-vs-BNN baseline is one pair" in box
    models = html[html.index('id="models"'):html.index('id="gradcam-layer"')]
    assert "<th>seed</th>" in models and "– (given)" in models and "group (seed)" not in models


def test_with_three_models_a_precision_the_intervals_resample_them(run_dir, tmp_path):
    from binsight.report.findings import interval_limits
    from binsight.report.render import covers_shown

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    three = [(f"{p}-{s}", p, s) for p in ("fp", "bnn") for s in (0, 1, 2)]
    RunFolder(copy).files.write_json("models.json", [
        {"name": n, "precision": p, "group": str(s), "seed": s, "surrogate": "ste" if p == "bnn" else "", "arch": "tiny",
         "accuracy": 0.8, "accuracy_images": 100} for n, p, s in three])
    box = _limits(build_report(copy).read_text())
    assert "3 FP and 3 BNN models" in box and "given as checkpoints" not in box
    assert "3 FP models: intervals take their variance with a t quantile of few degrees of freedom (at most 2" in box
    assert "images only" not in box and "fp-2 80.0 % (100 images)" in box
    covers = "3 FP and 3 BNN models (resampled within precision) and 6 images (resampled)"
    assert covers_shown(covers, {"fp": 3, "bnn": 3}) == covers
    assert "BNN-vs-BNN baseline, one pair of 2 models, varies" in covers_shown(covers, {"fp": 3, "bnn": 2})
    assert "no interval covers BNN model variance" in " ".join(interval_limits({"fp": 3, "bnn": 1}))


def test_the_readme_notebook_route_runs_and_builds_the_report(tmp_path):
    """The README's notebook snippet (config_from_dict, run_study, then build_report) runs as printed."""
    import os
    import sys

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    block = readme.split("<!-- notebook snippet: tests/report/test_report.py runs this block -->", 1)[1]
    code = block.split("```python\n", 1)[1].split("```", 1)[0]
    env = {**os.environ, "BINSIGHT_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[0].startswith("1 gradient: FP and BNN maps look alike ")
    html = (tmp_path / "runs" / "notebook" / "report.html").read_text()
    assert "2 FP and 2 BNN models" in _limits(html)


def test_findings_of_a_planted_run_go_to_their_own_named_block(run_dir, tmp_path):
    """A planted study's findings name each model's intervention test (and who is left out), and go between
    the markers of their own block, leaving the default study's block as it is."""
    from binsight.metrics.evidence import InterventionResult
    from binsight.report.findings import FindingsError, findings_markdown, markers, replace_block

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    results = {"fp-0": InterventionResult("shortcut", 10000, 0.1, 1.0, 0.107, 0.0, 1.0, 0.893, 1.0, (), "passed", 0),
               "bnn-0": InterventionResult("shortcut", 10000, 0.1, 0.917, 0.097, 0.01, 0.5, 0.871, 0.97, (), "failed", 0)}
    RunFolder(copy).records.write_interventions(results)
    block = findings_markdown(copy)
    assert ("Intervention test (shortcut, 10,000 test images each; docs/ground-truth.md): fp-0 **passed** (accuracy "
            "100.0 % with the pattern, 10.7 % without; follows a swapped pattern on 100.0 %); bnn-0 **failed**") in block
    assert "Left out of the evidence verdict (no known answer): bnn-0." in block
    assert "Intervention test" not in findings_markdown(run_dir)
    default, planted = markers(), markers("planted")
    readme = f"a\n{default[0]}\nold\n{default[1]}\nb\n{planted[0]}\nold planted\n{planted[1]}\nc\n"
    written = replace_block(readme, block, "planted")
    assert written == f"a\n{default[0]}\nold\n{default[1]}\nb\n{planted[0]}\n{block}{planted[1]}\nc\n"
    with pytest.raises(FindingsError, match="marker"):
        replace_block(f"a\n{default[0]}\nold\n{default[1]}\n", block, "planted")
    for bad in ("Planted", "a b", "x" * 33, "-x"):
        with pytest.raises(FindingsError, match="block name"):
            markers(bad)
