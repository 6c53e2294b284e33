"""``build_report(dir)``: figures/*.png and a self-contained report.html from a run folder alone.

Works on a finished or a partial run: what has not been computed yet is left out, and the page says so.
Images are embedded as base64 ``data:`` URIs, so the HTML file can be moved or mailed on its own.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from typing import Any

import jinja2
import numpy as np

from binsight import __version__
from binsight._io import atomic_write_bytes, atomic_write_text
from binsight.report import figures
from binsight.study.config import to_toml
from binsight.study.store import RunFolder
from binsight.study.verdicts import ModelInfo, compute_verdicts

EXAMPLES = 3  # example images in the grid


def build_report(run_dir: str | os.PathLike) -> Path:
    """Write ``figures/*.png`` and ``report.html`` in ``run_dir``; return the report's path."""
    folder = RunFolder.existing(run_dir)
    config = folder.config()
    models = folder.read_json("models.json") or []
    precisions = {m["name"]: m["precision"] for m in models}
    methods = config.method_names()
    rows = folder.read_measurements()
    verdicts = folder.read_json("verdicts.json")
    if verdicts is None and models and rows:
        verdicts = compute_verdicts(rows, [ModelInfo(m["name"], m["precision"]) for m in models], methods, config.verdicts)
    pngs = draw_figures(folder, models, methods, rows, precisions)
    for name, png in pngs.items():
        if png is not None:
            atomic_write_bytes(folder.root / "figures" / f"{name}.png", png)
    context = {
        "version": __version__,
        "run_dir": str(folder.root.resolve()),
        "verdicts": verdicts,
        "models": models,
        "images": folder.read_json("images.json"),
        "figures": {name: png and _data_uri(png) for name, png in pngs.items()},
        "config_toml": to_toml(config),
        "config": config,
        "timings": folder.read_json("timings.json"),
        "n_rows": len(rows),
        "complete": (folder.root / "verdicts.json").is_file(),
        "flagged_table": _flagged_table(verdicts, methods) if verdicts else None,
        "summary_table": _summary_table(verdicts, methods) if verdicts else None,
    }
    html = _template().render(**context)
    path = folder.root / "report.html"
    atomic_write_text(path, html)
    return path


def draw_figures(folder: RunFolder, models: list[dict[str, Any]], methods: list[str], rows, precisions) -> dict[str, bytes]:
    """Every figure of the report: {name: PNG bytes, or None where the run holds nothing to draw yet}."""
    names = [m["name"] for m in models]
    out = {
        "examples": _example_grid(folder, names, methods),
        "measures": figures.measure_distributions(rows, precisions, methods),
        "similarity": figures.similarity_distributions(rows, precisions, methods),
        "sanity": figures.sanity_curves(rows, _sanity_layers(folder, names), methods),
        "deletion_insertion": figures.deletion_insertion_curves(_curves(folder, names, methods), precisions, methods),
    }
    return out


def _example_grid(folder: RunFolder, models: list[str], methods: list[str]) -> bytes | None:
    """The study's first EXAMPLES images, with every stored map of them."""
    info = folder.read_json("images.json")
    if info is None:
        return None
    maps = {}
    for model in models:
        for method in methods:
            stored = folder.read_all_maps(model, method)
            if stored:
                maps[(model, method)] = stored["maps"][:EXAMPLES]
    if not maps:
        return None
    images = _load_example_images(folder, info)
    titles = [f"#{i} {info['classes'][label]}" for i, label in zip(info["indices"][:EXAMPLES], _example_labels(folder, info))]
    return figures.example_grid(images, maps, models, methods, titles)


def _load_example_images(folder: RunFolder, info: dict[str, Any]) -> np.ndarray:
    """The example images (E, C, H, W), from the run's own copy (examples.npz), written by the runner."""
    path = folder.root / "examples.npz"
    with np.load(path, allow_pickle=False) as data:
        return data["images"][:EXAMPLES]


def _example_labels(folder: RunFolder, info: dict[str, Any]) -> list[int]:
    with np.load(folder.root / "examples.npz", allow_pickle=False) as data:
        return data["labels"][:EXAMPLES].tolist()


def _sanity_layers(folder: RunFolder, models: list[str]) -> dict[str, list[str]]:
    out = {}
    for model in models:
        layers = folder.read_json(f"sanity_layers_{model}.json")
        if layers:
            out[model] = layers
    return out


def _curves(folder: RunFolder, models: list[str], methods: list[str]) -> dict[tuple[str, str], dict[str, np.ndarray]]:
    out = {}
    for model in models:
        for method in methods:
            c = folder.read_all_curves(model, method)
            if c:
                out[(model, method)] = {"fractions": c["fractions"][: c["deletion"].shape[1]],
                                        "deletion": c["deletion"], "insertion": c["insertion"]}
    return out


def _flagged_table(verdicts: dict[str, Any], methods: list[str]) -> dict[str, Any]:
    """{"models": [...], "methods": [...], "cells": {(model, method): fraction}} for the template."""
    flagged = verdicts.get("flagged", [])
    models = list(dict.fromkeys(f["model"] for f in flagged))
    cells = {(f["model"], f["method"]): f["fraction"] for f in flagged}
    return {"models": models, "methods": [m for m in methods if any(k[1] == m for k in cells)], "cells": cells}


def _summary_table(verdicts: dict[str, Any], methods: list[str]) -> dict[str, Any]:
    """Mean [CI] of every measure per method and precision, as rows of the template's table."""
    summary = verdicts.get("summary", [])
    measures = list(dict.fromkeys(s["measure"] for s in summary))
    cells = {(s["measure"], s["method"], s["precision"]): s for s in summary}
    return {"measures": measures, "methods": [m for m in methods if any(k[1] == m for k in cells)], "cells": cells}


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


def _template() -> jinja2.Template:
    env = jinja2.Environment(loader=jinja2.PackageLoader("binsight.report", "templates"),
                             autoescape=jinja2.select_autoescape(["html"]), undefined=jinja2.StrictUndefined)
    env.filters["num"] = _num
    return env.get_template("report.html")


def _num(value: Any, digits: int = 3) -> str:
    """A number for the page: signed fixed precision, or an en dash for a missing one."""
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "–"
    return f"{value:+.{digits}f}"
