"""A finished run's findings as Markdown: what the README's "Findings of the default study" block holds.

:func:`findings_markdown` reads a run folder (models.json, config.toml, verdicts.json, timings.json) and
writes what the numbers rest on (the models with their test accuracy, the images, seeds and surrogates,
what the intervals cover), each verdict's status and reading, each part's status, statistic, bound and the
levels it compares, with their intervals, and the run's stage times. Nothing is typed by hand: ``python scripts/readme_findings.py RUN_DIR``
puts the block between the README's markers (:func:`replace_block`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from binsight.errors import BinsightError
from binsight.report.data import read_verdicts
from binsight.report.render import verdict_markdown
from binsight.study.config import load_config
from binsight.study.records import ModelRecord, Timings
from binsight.study.store import RunFolder

START = "<!-- findings: written by scripts/readme_findings.py; do not edit by hand -->"
END = "<!-- end of findings -->"


class FindingsError(BinsightError):
    """A run folder without verdicts, or a file without the markers; the message says what to do."""


def findings_markdown(run_dir: str | os.PathLike) -> str:
    """The findings of the run in ``run_dir`` as Markdown (without the markers)."""
    root = Path(run_dir)
    verdicts, problem = read_verdicts(root / "verdicts.json")
    if verdicts is None:
        raise FindingsError(problem or f"{root} has no verdicts.json: finish the study first (binsight study --out {root})")
    folder = RunFolder(root)
    models = folder.read_models() or []
    config = load_config(root / "config.toml")
    lines = [_basis(models, config), ""]
    for v in verdicts.verdicts:
        lines += verdict_markdown(v)
    timings = folder.read_timings()
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
        parts.append(f"The chance test on the first {config.measures.chance_images or config.data.n_images} "
                     f"images, {config.measures.chance_maps} chance maps of each kind per map.")
    parts.append("BNN maps also under the sign surrogates "
                 f"{', '.join(config.verdicts.robustness_surrogates)} (robustness).")
    parts.append(f"Every interval is a {config.verdicts.confidence:.0%} crossed models-by-images t-interval "
                 "(other seeds and other images at once), or, for a share of maps, an exact interval clustered "
                 "by model; the report gives what each one covers. Numbers in brackets are intervals; a part's "
                 "bound is the margin its statistic is compared with.")
    return " ".join(parts)


def timings_sentence(timings: Timings) -> str:
    """The stages' wall seconds, as the run recorded them (a continued run adds up its invocations)."""
    listed = ", ".join(f"{name} {seconds:.0f} s" for name, seconds in timings.stages.items() if seconds >= 1)
    ranks = timings.ranks
    on = f" on {ranks} processes (torchrun)" if ranks > 1 else " in one process"
    return f"Stage times of this run{on} (wall, as recorded in timings.json): {listed}."


def replace_block(text: str, block: str) -> str:
    """``text`` with everything between :data:`START` and :data:`END` replaced by ``block``."""
    if text.count(START) != 1 or text.count(END) != 1 or text.index(START) > text.index(END):
        raise FindingsError(f"the file needs the two marker lines, once each and in this order:\n{START}\n{END}")
    head, rest = text.split(START)
    _, tail = rest.split(END)
    return f"{head}{START}\n{block}{END}{tail}"
