"""``build_report(dir)``: figures/*.png and a self-contained report.html from a run folder alone.

Works on a finished or a partial run: what has not been computed yet is left out, and the page says so.
Images are embedded as base64 ``data:`` URIs, so the HTML file can be moved or mailed on its own.
The run folder is read once (:func:`binsight.report.data.load_run`); verdicts only through
``StudyVerdicts.from_json``. ``progress`` (e.g. :func:`tqdm_progress`) is called as each step finishes.
"""

from __future__ import annotations

import base64
import os
from collections import defaultdict
from pathlib import Path
from typing import Any, Callable

import jinja2
import numpy as np

from binsight import __version__
from binsight.report import evidence, figures, names
from binsight.report.data import (UNDEFINED, RunData, Table, example_maps, load_run, mean_curves, read_verdicts,
                                  stored_methods)
from binsight.report.findings import models_per_precision, run_limits
from binsight.report.render import covers_of, css_class, number, parts_confidence, robustness_table, verdict_view
from binsight.study import verdicts
from binsight.study.measures import chance_labels
from binsight.study.names import PRECISIONS
from binsight.study.stats import PRECISION_NAMES
from binsight.study.files import RunFiles
from binsight.study.store import RunFolder
from binsight.study.verdicts import ModelInfo, StudyVerdicts

EXAMPLES = 3  # example images, one figure each
CHANCE = tuple(chance_labels())
"""The chance maps' method labels (drawn apart from the methods)."""
Progress = Callable[[str], None]


def build_report(run_dir: str | os.PathLike, *, progress: Progress | None = None) -> Path:
    """Write ``figures/*.png`` and ``report.html`` in ``run_dir``; return the report's path.

    progress: called with the name of each step as it finishes (:data:`STEPS` of them).
    """
    step = progress or (lambda name: None)
    folder = RunFolder.existing(run_dir)
    run = load_run(folder, examples=EXAMPLES)
    step("read the run folder")
    sv, verdicts_problem = read_verdicts(folder)
    methods = _methods(run)
    pngs: dict[str, bytes | None] = {}
    for name, draw in _FIGURES:
        pngs.update(draw(run, methods))
        step(f"figure: {name}")
    _write_figures(folder.files, pngs)
    context = _context(run, methods, sv, verdicts_problem, pngs)
    html = _template().render(**context)
    path = folder.files.path("report.html")
    folder.files.write_text(path, html)
    step("report.html")
    return path


def _write_figures(files: RunFiles, pngs: dict[str, bytes | None]) -> None:
    """figures/NAME.png for each figure drawn; a PNG left by an earlier build that this one did not draw is
    removed (every path checked to stay inside the run folder: a figures/ that leads out is refused)."""
    for name, png in pngs.items():
        if png is not None:
            files.write_bytes(f"figures/{name}.png", png)
    for old in files.listing("figures", "*.png"):
        if pngs.get(old.stem) is None:
            files.remove(old)


def tqdm_progress(**kw: Any) -> Progress:
    """A ``progress`` callback that drives a tqdm bar over the report's steps (keyword options go to tqdm)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=STEPS, desc="report", unit="step", **kw)

    def advance(name: str) -> None:
        bar.set_postfix_str(name, refresh=False)
        bar.update(1)
        if bar.n >= STEPS:
            bar.close()

    return advance


# ------------------------------------------------------------------------------------------------------
# what is shown


def _methods(run: RunData) -> list[str]:
    """Methods in the table: the configured ones first, then convergence checks, then chance maps."""
    configured = list(run.setting("methods", "run", default=[]) or [])
    present = run.table.unique("method") if len(run.table) else []
    present += stored_methods(run.folder)
    extra = [m for m in dict.fromkeys(present) if m and m not in configured]
    return configured + sorted(extra, key=lambda m: (m in CHANCE, m))


def _base(table: Table, run: RunData) -> Table:
    """Rows of the default model set (no ``base+surrogate`` variants)."""
    base = set(run.base_models)
    keep = np.isin(table["model"], list(base)) & ((table["model_b"] == "") | np.isin(table["model_b"], list(base)))
    return table.where(keep)


def _precision_column(models: np.ndarray, precisions: dict[str, str]) -> np.ndarray:
    lookup = np.vectorize(lambda m: precisions.get(m, "?"), otypes=[str])
    return lookup(models) if models.size else np.asarray([], dtype=str)


def _pair_kind(a: str, b: str) -> str:
    pa, pb = sorted((a, b), key=lambda p: PRECISIONS.index(p) if p in PRECISIONS else 2)
    return f"{pa}-{pb}"


def _examples(run: RunData, methods: list[str]) -> dict[str, bytes | None]:
    """One figure per example image: the image and every base model's map of it, per configured method."""
    if not run.examples or not run.images:
        return {}
    shown = [m for m in methods if m not in CHANCE and m not in _convergence_labels(run)]
    indices = [int(i) for i in run.images.indices[: len(run.examples["labels"])]]
    classes = list(run.images.classes)
    predicted = _predictions(run.table)
    degenerate = run.table.where(measure="degenerate")
    flat = {(m, meth, int(i)) for m, meth, i, v in zip(degenerate["model"], degenerate["method"], degenerate["image"],
                                                     degenerate["value"]) if v > 0.5}
    maps = {(model, method): example_maps(run.folder, model, method, indices)
            for model in run.base_models for method in shown}
    out = {}
    for e, index in enumerate(indices):
        label = int(run.examples["labels"][e])
        title = f"image #{index} of the {run.images.split} split, true class: {_class(classes, label)}"
        model_titles = {model: _model_title(model, run, classes, predicted.get((model, index))) for model in run.base_models}
        per_image = {k: v[e] for k, v in maps.items() if v is not None}
        out[f"examples_{e}"] = figures.example_grid(
            run.examples["images"][e], title, per_image, run.base_models, model_titles, shown,
            {(m, meth) for m, meth, i in flat if i == index})
    return out


def overlay_png(run_dir: str | os.PathLike, *, method: str = "gradient", example: int = 0) -> bytes | None:
    """PNG of ``method``'s maps of the run's example image number ``example`` over the image, one panel per
    base model with a shared colour scale (None when the run holds no such maps)."""
    run = load_run(RunFolder.existing(run_dir), examples=example + 1)
    if not run.images or not run.examples or example >= len(run.examples["labels"]):
        return None
    index = int(run.images.indices[example])
    classes = list(run.images.classes)
    predicted = _predictions(run.table)
    maps = {}
    for model in run.base_models:
        got = example_maps(run.folder, model, method, [index])
        if got is not None:
            maps[model] = got[0]
    degenerate = run.table.where(measure="degenerate", method=method, image=index)
    flat = {m for m, v in zip(degenerate["model"], degenerate["value"]) if v > 0.5}
    label = int(run.examples["labels"][example])
    title = f"{names.method_label(method)} maps of image #{index}, true class: {_class(classes, label)}"
    titles = {m: _model_title(m, run, classes, predicted.get((m, index))) for m in run.base_models}
    return figures.overlay_row(run.examples["images"][example], title, maps, run.base_models, titles, flat)


def _class(classes: list[str], index: int) -> str:
    return classes[index] if 0 <= index < len(classes) else str(index)


def _model_title(model: str, run: RunData, classes: list[str], predicted: int | None) -> str:
    record = run.model(model)
    head = f"{model} ({(record.precision if record is not None else '?').upper()})"
    return head if predicted is None else f"{head}\npredicts {_class(classes, predicted)}"


def _predictions(table: Table) -> dict[tuple[str, int], int]:
    rows = table.where(measure="predicted")
    return {(m, int(i)): int(v) for m, i, v in zip(rows["model"], rows["image"], rows["value"])}


def _single_measures(run: RunData, methods: list[str]) -> dict[str, bytes | None]:
    """Continuous single-map measures as box plots, 0/1 ones as proportions, per method and precision."""
    table = _base(run.table, run).where(model_b="", step=0)
    boxes: dict[str, dict] = {}
    counts: dict[str, dict] = {}
    for measure, rows in table.split("measure").items():
        if measure.endswith(UNDEFINED) or measure in names.NOT_DRAWN or measure.startswith("sanity_"):
            continue
        precision = _precision_column(rows["model"], run.precisions)
        groups = {}
        for method in methods:
            for p in PRECISIONS:
                values = rows["value"][(rows["method"] == method) & (precision == p)]
                if values.size:
                    groups[(method, p)] = values
        if names.is_binary(measure):
            counts[measure] = {k: (int(np.sum(v > 0.5)), int(v.size)) for k, v in groups.items()}
        else:
            boxes[measure] = groups
    labels = {p: f"{PRECISION_NAMES[p]} models" for p in PRECISIONS}
    confidence = float(run.setting("verdicts", "confidence", default=0.95))
    boxes = {m: boxes[m] for m in sorted(boxes, key=_measure_order)}
    counts = {m: counts[m] for m in sorted(counts, key=_measure_order)}
    return {
        "measures": figures.box_panels(boxes, methods, PRECISIONS, figures.PRECISION_COLOURS, labels),
        "proportions": figures.proportion_panels(counts, methods, PRECISIONS, figures.PRECISION_COLOURS, labels,
                                                 confidence=confidence),
    }


def _measure_order(measure: str) -> tuple[int, str]:
    """Families together, in the order of :data:`names.SINGLE` (noise, faithfulness, localisation, chance)."""
    order = list(names.SINGLE)
    return (order.index(measure), "") if measure in order else (len(order), measure)


def _similarity(run: RunData, methods: list[str]) -> dict[str, bytes | None]:
    """Pair measures per kind of pair, the image-shuffled baseline beside them, each pair's mean as a dot."""
    table = _base(run.table, run)
    table = table.where(table["model_b"] != "")
    groups: dict[str, dict] = defaultdict(dict)
    dots: dict[str, dict] = defaultdict(dict)
    for measure, rows in table.split("measure").items():
        parts = names.pair_parts(measure)
        if parts is None:
            continue
        base = parts[0] + ("_object" if parts[1] == "_object" else "")
        for (method, kind), values, pair_means in _by_pair_kind(rows, run, shuffled=parts[1] == "_shuffled"):
            groups[base][(method, kind)] = values
            dots[base][(method, kind)] = pair_means
    ordered = sorted(groups, key=_pair_order)
    cols = 1
    if any(m.endswith("_object") for m in ordered):  # whole map on the left, inside the object on the right
        ordered = [m for base in names.PAIR for m in (base, f"{base}_object")]
        cols = 2
    return {"similarity": figures.box_panels({m: groups.get(m, {}) for m in ordered}, methods,
                                             tuple(figures.KIND_COLOURS), figures.KIND_COLOURS, names.PAIR_KINDS,
                                             dots=dots, cols=cols)}


def _pair_order(measure: str) -> tuple[int, int]:
    base, suffix = names.pair_parts(measure) or (measure, "")
    return (list(names.PAIR_SUFFIX).index(suffix), list(names.PAIR).index(base) if base in names.PAIR else 9)


def _by_pair_kind(rows: Table, run: RunData, *, shuffled: bool):
    """Yield ((method, kind), values over pairs x images, each pair's mean) for one pair measure."""
    precision = run.precisions
    for method, sub in rows.split("method").items():
        kinds = np.array(["shuffled" if shuffled else _pair_kind(precision.get(a, "?"), precision.get(b, "?"))
                          for a, b in zip(sub["model"], sub["model_b"])], dtype=str)
        for kind in np.unique(kinds):
            pick = sub.where(kinds == kind)
            pair_keys = np.char.add(np.char.add(pick["model"], "|"), pick["model_b"])
            means = np.array([pick["value"][pair_keys == k].mean() for k in np.unique(pair_keys)])
            yield (method, str(kind)), pick["value"], means


def _sanity(run: RunData, methods: list[str]) -> dict[str, bytes | None]:
    """One figure: each sanity measure (rows) of each checked method (columns), one line per base model."""
    curves: dict[str, dict[str, dict[str, dict[int, float]]]] = {}
    for measure in ("sanity_spearman", "sanity_ssim"):
        rows = _base(run.table, run).where(measure=measure)
        per: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
        for (method, model, step), value in _means(rows, ("method", "model", "step")).items():
            per[method][model][int(step)] = value
        if per:
            curves[measure] = {m: per[m] for m in methods if m in per}
    return {"sanity": figures.sanity_curves(curves, run.sanity_layers, run.precisions)}


def _means(rows: Table, keys: tuple[str, ...]) -> dict[tuple, float]:
    """Mean value per distinct combination of the columns ``keys``."""
    if not len(rows):
        return {}
    joined = rows[keys[0]].astype(str)
    for k in keys[1:]:
        joined = np.char.add(np.char.add(joined, "\x1f"), rows[k].astype(str))
    uniq, inverse = np.unique(joined, return_inverse=True)
    sums = np.bincount(inverse, weights=rows["value"])
    counts = np.bincount(inverse)
    out = {}
    for u, s, c in zip(uniq, sums, counts):
        parts = u.split("\x1f")
        out[tuple(parts)] = float(s / c)
    return out


def _convergence_labels(run: RunData) -> set[str]:
    """Labels of the convergence checks (e.g. "smoothgrad-n200"): a method run again on a few images."""
    labels = {run.setting("methods", m, "convergence_label", default="") for m in run.setting("methods", "run", default=[])}
    return {str(label) for label in labels if label}


def _curves(run: RunData, methods: list[str]) -> dict[str, bytes | None]:
    """Mean deletion / insertion curves per method and precision (over the base models' images); the
    convergence checks, run on a few images only, are left out."""
    sums: dict[tuple[str, str], list[dict[str, np.ndarray]]] = defaultdict(list)
    for model in run.base_models:
        for method in [m for m in methods if m not in _convergence_labels(run)]:
            got = mean_curves(run.folder, model, method)
            if got:
                sums[(method, run.precisions.get(model, "?"))].append(got)
    curves = {}
    for key, parts in sums.items():
        n = np.array([float(p["n"]) for p in parts])
        kinds = [k for k in parts[0] if k not in ("fractions", "n")]
        curves[key] = {"fractions": parts[0]["fractions"],
                       **{k: sum(p[k] * w for p, w in zip(parts, n)) / n.sum() for k in kinds}}
    return {"deletion_insertion": figures.curve_panels(curves, methods)}


_FIGURES = (("examples", _examples), ("single-map measures", _single_measures), ("similarity", _similarity),
            ("sanity check", _sanity), ("curves", _curves), ("ground truth", evidence.evidence_figures))
STEPS = 2 + len(_FIGURES)
"""How many times ``progress`` is called by one :func:`build_report`."""


# ------------------------------------------------------------------------------------------------------
# tables


def derived(run: RunData, sv: StudyVerdicts | None) -> StudyVerdicts | None:
    """Per-pair values, predictions and undefined counts: those of verdicts.json, or (a run without
    verdicts yet) the same functions of the verdicts module applied to the rows found so far."""
    if sv is not None or not run.rows or not run.models:
        return sv
    models = [ModelInfo(m.name, m.precision or "?", str(m.group), m.surrogate or "") for m in run.models]
    table = verdicts.Table(run.rows)
    return StudyVerdicts((), tuple(verdicts.per_pair_values(table, models)), verdicts.predictions(table, models),
                         tuple(verdicts.undefined_counts(table)), verdicts.VerdictSettings())


def pair_tables(run: RunData, sv: StudyVerdicts | None, methods: list[str]) -> list[dict[str, Any]]:
    """Per whole-map similarity measure: each base model pair's mean over images, one column per method."""
    if sv is None:
        return []
    base = set(run.base_models)
    values = [p for p in sv.per_pair if p.model in base and p.model_b in base]
    out = []
    for measure in names.PAIR:
        cells = {(p.model, p.model_b, p.method): p for p in values if p.measure == measure}
        if not cells:
            continue
        shown = [m for m in methods if any(k[2] == m for k in cells)]
        kind_order = list(names.PAIR_KINDS)
        pairs = sorted({(a, b, cells[(a, b, m)].kind) for a, b, m in cells},
                       key=lambda p: (kind_order.index(p[2]) if p[2] in kind_order else 9, p[0], p[1]))
        rows = [{"a": a, "b": b, "kind": names.PAIR_KINDS.get(kind, kind),
                 "cells": [number(cells[(a, b, m)].mean) if (a, b, m) in cells else "–" for m in shown]}
                for a, b, kind in pairs]
        out.append({"measure": measure, "label": names.label(measure, top_k=run.setting("measures", "top_k")),
                    "methods": shown, "rows": rows})
    return out


def agreement_view(sv: StudyVerdicts | None) -> dict[str, Any] | None:
    """How often the base models predict the same class: all of them, and pair by pair; their accuracy."""
    if sv is None or sv.predictions is None:
        return None
    p = sv.predictions
    return {"all": _share(p.all_agree), "n": p.n_images,
            "pairs": [{"a": q.model, "b": q.model_b, "share": _share(q.fraction), "n": q.n_images} for q in p.pairs],
            "accuracy": [(model, _share(a)) for model, a in p.accuracy.items()]}


def _share(fraction: float | None) -> str:
    return "undefined (no images)" if fraction is None or not np.isfinite(fraction) else f"{fraction:.1%}"


def undefined_view(run: RunData, sv: StudyVerdicts | None) -> list[dict[str, Any]]:
    """Undefined values per measure and method, with how many values were asked for (defined + undefined)."""
    if sv is None or not sv.undefined:
        return []
    totals: dict[tuple[str, str], int] = defaultdict(int)
    for u in sv.undefined:
        totals[(u.measure, u.method)] += u.count
    asked = _counts(run.table, ("measure", "method"))
    out = []
    for (measure, method), k in sorted(totals.items()):
        n = k + asked.get((measure, method), 0)
        out.append({"measure": names.short_label(measure), "name": measure, "method": names.method_label(method),
                    "count": k, "n": n, "share": _share(k / n if n else None)})
    return out


def _counts(table: Table, keys: tuple[str, str]) -> dict[tuple[str, str], int]:
    joined = np.char.add(np.char.add(table[keys[0]], "\x1f"), table[keys[1]])
    uniq, counts = np.unique(joined, return_counts=True)
    return {tuple(u.split("\x1f")): int(c) for u, c in zip(uniq, counts)}


# ------------------------------------------------------------------------------------------------------
# the page


def _context(run: RunData, methods: list[str], sv: StudyVerdicts | None, verdicts_problem: str,
             pngs: dict[str, bytes | None]) -> dict[str, Any]:
    counts = models_per_precision(run.models)
    shown = [verdict_view(v, counts) for v in sv.verdicts] if sv is not None else []
    extra = derived(run, sv)
    return {
        "version": __version__,
        "limits": run_limits(run.models, run.images, run.setting),
        "n_models": sum(counts.values()),
        "run_dir": str(run.root.resolve()),
        "verdicts": shown,
        "verdicts_problem": verdicts_problem,
        "robustness": robustness_table(shown),
        "models": run.models,
        "gradcam_layers": _gradcam_layers(run),
        "images": run.images,
        "figures": {name: png and _data_uri(png) for name, png in pngs.items()},
        "examples": sorted(k for k, v in pngs.items() if k.startswith("examples_") and v),
        "evidence": evidence.evidence_view(run, sv),
        "evidence_examples": sorted(k for k, v in pngs.items() if k.startswith("evidence_") and v),
        "config_toml": run.config_text,
        "setting": run.setting,
        "timings": run.timings,
        "n_rows": len(run.table),
        "complete": run.complete,
        "pairs": pair_tables(run, extra, methods),
        "agreement": agreement_view(extra),
        "undefined": undefined_view(run, extra),
        "measure_names": _measure_names(run),
        "method_label": names.method_label,
        "variants": [m.name for m in run.models if m.is_variant],
        "method_images": [(m, n) for m in run.setting("methods", "run", default=[]) or []
                          if (n := run.setting("methods", m, "n_images", default=0))],
        "sanity_methods": [m for m in methods if m in set(run.table.where(np.char.startswith(run.table["measure"],
                                                                                          "sanity_"))["method"])],
    }


def _gradcam_layers(run: RunData) -> list[dict[str, str]]:
    """[{"model", "layer"}]: the GradCAM layer of each base model, as models.json records it."""
    configured = str(run.setting("methods", "gradcam", "layer", default="") or "")
    return [{"model": m.name, "layer": str(configured or m.gradcam_layer or "not recorded in models.json")}
            for m in run.models if not m.is_variant]


def _measure_names(run: RunData) -> list[tuple[str, str]]:
    """(table name, reader's name) of every measure in the table."""
    top_k = run.setting("measures", "top_k")
    found = [m for m in run.table.unique("measure") if not m.endswith(UNDEFINED)] if len(run.table) else []
    return [(m, names.label(m, top_k=top_k)) for m in sorted(found)]


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("binsight.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters["num"] = number
    env.filters["css"] = css_class
    env.globals["covers_of"] = covers_of
    env.globals["parts_confidence"] = parts_confidence
    return env.get_template("report.html")
