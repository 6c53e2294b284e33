"""A finished run's findings as Markdown: what the README's "Findings of the default study" block holds.

:func:`findings_markdown` reads a run folder (models.json, config.toml, verdicts.json, timings.json) and
writes what the numbers rest on (the models with their test accuracy, the images, seeds and surrogates,
what the intervals cover), each verdict's status and reading, each part's status, statistic, bound and the
levels it compares, with their intervals, and the run's stage times. Nothing is typed by hand: ``python scripts/readme_findings.py RUN_DIR``
puts the block between the README's markers (:func:`replace_block`).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable

from binsight.errors import BinsightError
from binsight.report.data import read_verdicts
from binsight.report.render import verdict_markdown
from binsight.study.records import ImageSet, ModelRecord, Timings
from binsight.study.stats import PRECISION_NAMES
from binsight.study.store import RunFolder

START = "<!-- findings: written by scripts/readme_findings.py; do not edit by hand -->"
END = "<!-- end of findings -->"
BLOCK_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,31}")
"""A named block (``--block NAME``): lower-case letters, digits and hyphens."""


class FindingsError(BinsightError):
    """A run folder without verdicts, or a file without the markers; the message says what to do."""


def findings_markdown(run_dir: str | os.PathLike) -> str:
    """The findings of the run in ``run_dir`` as Markdown (without the markers)."""
    root = Path(run_dir)
    folder = RunFolder(root)
    verdicts, problem = read_verdicts(folder)
    if verdicts is None:
        raise FindingsError(problem or f"{root} has no verdicts.json: finish the study first (binsight study --out {root})")
    models = folder.records.read_models() or []
    config = folder.config()
    lines = [_basis(models, config), ""]
    for v in verdicts.verdicts:
        lines += verdict_markdown(v)
    interventions = folder.records.read_interventions()
    if interventions:
        lines[1:1] = [interventions_sentence(interventions), ""]
    timings = folder.records.read_timings()
    if timings is not None:
        lines += ["", timings_sentence(timings)]
    return "\n".join(lines).rstrip() + "\n"


def _basis(models: list[ModelRecord], config: Any) -> str:
    """One paragraph: the models (test accuracy), images, methods' image counts, surrogates."""
    base = [m for m in models if not m.is_variant]
    accuracy = ", ".join(f"{m.name} {100 * m.accuracy:.2f} %" for m in base if m.accuracy is not None)
    neuromask = config.methods.table("neuromask")
    m = config.models
    origin = ("given as checkpoints or own models" if m.checkpoints or m.own else
              f"of {m.arch} trained on {config.data.name} (seeds {', '.join(map(str, m.seeds))} per precision)")
    split = f"on {m.test_subset} test images" if m.test_subset else "on the whole test split"
    parts = [
        f"Run with `binsight study` (configuration hash in the run's run.json) on {len(base)} models {origin}; "
        f"test accuracy {split}: {accuracy}.",
        f"{config.data.n_images} {config.data.split} images (drawn with seed {config.data.seed}), each model "
        f"explaining the image's {'true label' if config.methods.target == 'label' else 'predicted class'}.",
    ]
    if "neuromask" in config.methods.run and neuromask.n_images:
        iterations = neuromask.options.get("iterations", "the default")
        parts.append(f"NeuroMask on the first {neuromask.n_images} images at {iterations} iterations.")
    if config.measures.chance_methods:
        tested = config.measures.chance_images or config.data.n_images
        controls = (f"; its four controls on the first {min(tested, config.measures.control_images or tested)}"
                    if config.measures.chance_controls else "")
        parts.append(f"The chance test on the first {tested} images, {config.measures.chance_maps} chance maps of "
                     f"each kind per map{controls}.")
    parts.append("BNN maps also under the sign surrogates "
                 f"{', '.join(config.verdicts.robustness_surrogates)} (robustness).")
    controls = ["on the images every model classifies correctly"]
    controls += ["with each model explaining its predicted class"] if config.verdicts.predicted_labels else []
    controls += ["with FP models trained to the BNNs' accuracy"] if m.matched_fp else []
    parts.append(f"Each verdict also recomputed {', '.join(controls)} (controls for binarization, robustness).")
    parts.append(f"Every interval is a {config.verdicts.confidence:.0%} crossed models-by-images t-interval "
                 "(other seeds and other images at once), or, for a share of maps, an exact interval clustered "
                 "by model; the report gives what each one covers. "
                 + " ".join(interval_limits(models_per_precision(models)))
                 + " Numbers in brackets are intervals; a part's bound is the margin its statistic is compared with.")
    return " ".join(parts)


# ------------------------------------------------------------------------------------------------------
# the run's limits (the report's first box; the findings' intervals sentence)


def models_per_precision(models: list[ModelRecord]) -> dict[str, int]:
    """How many models of each precision the run holds (its base models: a BNN explained with another
    surrogate is the same model), in the order FP, BNN, then any other."""
    counts: dict[str, int] = {}
    for m in models:
        if not m.is_variant:
            counts[m.precision or "?"] = counts.get(m.precision or "?", 0) + 1
    known = list(PRECISION_NAMES)
    return dict(sorted(counts.items(), key=lambda kv: (known.index(kv[0]) if kv[0] in known else len(known), kv[0])))


def _named(precision: str) -> str:
    return PRECISION_NAMES.get(precision, precision)


def count_text(counts: dict[str, int]) -> str:
    """"2 FP and 2 BNN models" (or "no models")."""
    if not counts:
        return "no models"
    return " and ".join(f"{n} {_named(p)}" for p, n in counts.items()) + (" models" if sum(counts.values()) > 1 else " model")


def interval_limits(counts: dict[str, int]) -> list[str]:
    """What the crossed intervals can and cannot cover with ``counts`` models per precision, one sentence
    per precision, then what no interval covers."""
    out = []
    for precision, n in counts.items():
        name = _named(precision)
        if n == 1:
            out.append(f"1 {name} model: no model can be left out, so no interval covers {name} model variance "
                       f"(they speak of this network only), and no {name}-vs-{name} baseline exists.")
        elif n == 2:
            out.append(f"2 {name} models: the {name}-vs-{name} baseline is one pair, so its interval covers the "
                       f"images only; other intervals take the variance of the 2 models with about 1 degree of "
                       "freedom at the model level, so they are wide.")
        else:
            out.append(f"{n} {name} models: intervals take their variance with a t quantile of few degrees of "
                       f"freedom (at most {n - 1} at the model level), so they widen rather than narrow when the "
                       "models disagree.")
    out.append("Intervals cover other models trained the same way and other images from the same source; not other "
               "architectures, datasets or training recipes, nor the choices the robustness table varies; only the "
               "four findings' primary tests are adjusted for multiplicity (Holm), secondary parts are not.")
    return out


def run_limits(models: list[ModelRecord], images: ImageSet | None, setting: Callable[..., Any]) -> list[tuple[str, str]]:
    """(what, how far it goes) for the report's first box: the models per precision, each model's accuracy,
    the images each part explains, NeuroMask's iterations and SmoothGrad's samples, and what the intervals
    can and cannot cover. ``setting(*path, default=...)`` reads config.toml (as :meth:`RunData.setting`)."""
    counts = models_per_precision(models)
    variants = sum(m.is_variant and m.precision == "bnn" for m in models)
    matched = [m for m in models if m.is_variant and m.precision == "fp"]
    given = [m for m in models if not m.is_variant and m.seed is None]
    origin = ("; given as checkpoints or own models (no training seed)" if given and len(given) == sum(counts.values())
              else "")
    rows = [("models", count_text(counts) + origin +
             (f"; {variants} more table entries are BNNs explained with another surrogate (robustness only)"
              if variants else "")
             + (f"; {len(matched)} are FP models trained on fewer images to the BNNs' accuracy (robustness only: "
                f"{', '.join(_accuracy(m) for m in matched)})" if matched else ""))]
    rows.append(("test accuracy", ", ".join(_accuracy(m) for m in models if not m.is_variant) or "not recorded"))
    rows.append(("images", _images(images, setting)))
    rows.append(("method settings", _method_settings(setting)))
    rows.append(("intervals", f"{setting('verdicts', 'confidence', default=0.95):.0%} crossed models-by-images "
                              "t-intervals (shares of maps: exact intervals clustered by model). "
                              + " ".join(interval_limits(counts))))
    return rows


def _accuracy(m: ModelRecord) -> str:
    if m.accuracy is None:
        return f"{m.name} not recorded"
    on = f" ({m.accuracy_images} images)" if m.accuracy_images else ""
    return f"{m.name} {100 * m.accuracy:.1f} %{on}"


def _images(images: ImageSet | None, setting: Callable[..., Any]) -> str:
    """How many images each part of the study explains."""
    if images is None:
        return "not chosen yet"
    n = images.n
    parts = [f"{n} {images.split} images of {images.dataset}"]
    for method in setting("methods", "run", default=[]) or []:
        k = int(setting("methods", method, "n_images", default=0) or 0)
        if 0 < k < n:
            parts.append(f"{method} on the first {k}")
    for what, key in (("the chance test (nonsensical maps)", "chance_images"), ("the sanity check", "sanity_images"),
                      ("convergence checks", "convergence_images")):
        k = int(setting("measures", key, default=0) or 0)
        if 0 < k < n:
            parts.append(f"{what} on the first {k}")
    return "; ".join(parts)


def _method_settings(setting: Callable[..., Any]) -> str:
    """NeuroMask's iterations and SmoothGrad's samples (with its convergence check), where they run."""
    run = setting("methods", "run", default=[]) or []
    out = []
    if "neuromask" in run:
        out.append(f"NeuroMask {setting('methods', 'neuromask', 'iterations', default='default')} iterations")
    if "smoothgrad" in run:
        check = setting("methods", "smoothgrad", "convergence", "n_samples", default=None)
        out.append(f"SmoothGrad {setting('methods', 'smoothgrad', 'n_samples', default='default')} samples"
                   + (f" (convergence check: {check})" if check else ""))
    return "; ".join(out) or "no NeuroMask or SmoothGrad in this run"


def timings_sentence(timings: Timings) -> str:
    """The stages' wall seconds, as the run recorded them: a continued run's earlier invocations first, each
    as its own list (the number of processes is recorded for the last invocation only)."""
    ranks = timings.ranks
    on = f" on {ranks} processes (torchrun)" if ranks > 1 else " in one process"
    if not timings.history:
        return f"Stage times of this run{on} (wall, as recorded in timings.json): {_listed(timings.stages)}."
    earlier = "; ".join(f"invocation {k}: {_listed(stages)}" for k, stages in enumerate(timings.history, 1))
    last = len(timings.history) + 1
    return (f"Stage times of this run (wall, as recorded in timings.json), invocation by invocation: {earlier}; "
            f"invocation {last} (continued{on}): {_listed(timings.stages)}.")


def _listed(stages: dict[str, float]) -> str:
    return ", ".join(f"{name} {seconds:.0f} s" for name, seconds in stages.items() if seconds >= 1) or "under 1 s"


def interventions_sentence(results: dict[str, Any]) -> str:
    """Each model's intervention test on planted data (interventions.json), as one paragraph."""
    scenario = next(iter(results.values())).scenario
    rows = []
    for name, r in results.items():
        moved = (f"follows a swapped pattern on {100 * r.follows_swap:.1f} %" if scenario == "shortcut" else
                 f"removal changes {100 * r.changed_by_removal:.1f} % of its predictions, a swap "
                 f"{100 * r.changed_by_swap:.1f} %")
        rows.append(f"{name} **{r.status}** (accuracy {100 * r.accuracy:.1f} % with the pattern, "
                    f"{100 * r.accuracy_removed:.1f} % without; {moved})")
    left_out = [name for name, r in results.items() if not r.passed]
    tail = (f" Left out of the evidence verdict (no known answer): {', '.join(left_out)}." if left_out else
            " Every model passed, so every model has a known answer.")
    n = next(iter(results.values())).n_images
    return (f"Intervention test ({scenario}, {n:,} test images each; docs/ground-truth.md): " + "; ".join(rows) + "."
            + tail)


def markers(name: str = "") -> tuple[str, str]:
    """The (start, end) marker lines of the findings block ``name`` ("" = the default study's)."""
    if not name:
        return START, END
    if not isinstance(name, str) or not BLOCK_NAME.fullmatch(name):
        raise FindingsError(f"block name {name!r}: use 1 to 32 lower-case letters, digits and hyphens")
    return (f"<!-- findings {name}: written by scripts/readme_findings.py --block {name}; do not edit by hand -->",
            f"<!-- end of findings {name} -->")


def replace_block(text: str, block: str, name: str = "") -> str:
    """``text`` with everything between the markers of block ``name`` (:func:`markers`) replaced by ``block``."""
    start, end = markers(name)
    if text.count(start) != 1 or text.count(end) != 1 or text.index(start) > text.index(end):
        raise FindingsError(f"the file needs the two marker lines, once each and in this order:\n{start}\n{end}")
    head, rest = text.split(start)
    _, tail = rest.split(end)
    return f"{head}{start}\n{block}{end}{tail}"
