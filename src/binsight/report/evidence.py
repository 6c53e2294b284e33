"""The report's section on ground truth (a study on planted data): each model's intervention test
(interventions.json), per method and precision the share of nonsensical maps with a known answer (the
checks of verdict 5, verdicts.json), and the worst example maps beside their ground-truth masks. Shown only when the
run holds interventions.json (:mod:`binsight.study.stages.evidence`)."""

from __future__ import annotations

from typing import Any

import numpy as np

from binsight.report import figures, names
from binsight.report.data import RunData, example_maps
from binsight.report.render import number
from binsight.study.stages.evidence import failed_checks
from binsight.study.verdicts import StudyVerdicts

GROUND_TRUTH = "ground truth"
"""The column of the example figures that shows the planted window."""
STORED, SHOWN = 8, 3
"""Example images read from examples.npz (the images stage keeps 8), and how many of the worst are drawn."""


def has_interventions(run: RunData) -> bool:
    return run.folder.files.exists("interventions.json")


def evidence_figures(run: RunData, methods: list[str]) -> dict[str, bytes | None]:
    """A figure for each of the :data:`SHOWN` worst example images (:func:`worst_examples`) that has its
    planted window: rows = methods, columns = the window (drawn as a map that puts the row's largest
    magnitude on it and nothing elsewhere), then every base model's map, FP models first; one colour
    scale per row."""
    examples = run.folder.records.read_examples(STORED) if has_interventions(run) else {}
    if "masks" not in examples or not run.images:
        return {}
    shown = [m for m in methods if m in run.setting("methods", "run", default=[])]
    models = sorted(run.base_models, key=lambda m: run.precisions.get(m, "") != "fp")
    results = run.folder.records.read_interventions() or {}
    stored = [int(i) for i in run.images.indices[: len(examples["masks"])]]
    maps = {(model, method): example_maps(run.folder, model, method, stored) for model in models for method in shown}
    titles = {GROUND_TRUTH: "planted window\n(ground truth)",
              **{m: f"{m} ({run.precisions.get(m, '?').upper()})" + ("" if m in results and results[m].passed else
                                                                    "\nno known answer (left out)") for m in models}}
    out = {}
    for rank, (e, mass) in enumerate(worst_examples(run, stored, results, shown)):
        per_image = {k: v[e] for k, v in maps.items() if v is not None}
        for method in shown:
            row = [np.abs(v) for (model, meth), v in per_image.items() if meth == method]
            top = max((float(r.max()) for r in row), default=1.0) or 1.0
            per_image[(GROUND_TRUTH, method)] = examples["masks"][e, 0].astype(np.float64) * top
        title = (f"image #{stored[e]}: the maps beside the planted window; the mean share of mass on it "
                 f"{_share(mass)} (worst {rank + 1} of {len(stored)} stored examples)")
        out[f"evidence_{rank}"] = figures.example_grid(examples["images"][e], title, per_image, [GROUND_TRUTH, *models],
                                                       titles, shown, set())
    return out


def worst_examples(run: RunData, stored: list[int], results: dict, methods: list[str]) -> list[tuple[int, float]]:
    """(position in the stored examples, mean energy_inside) of the :data:`SHOWN` examples whose maps by
    the BNN models that passed their test (else every model that passed, else every model) miss the
    known answer the most:
    the least mass on the window on the shortcut, the most on the decoy's irrelevant pattern."""
    passed = [m for m in run.base_models if m in results and results[m].passed]
    pool = [m for m in passed if run.precisions.get(m) == "bnn"] or passed or run.base_models
    rows = run.table.where(measure="energy_inside", model_b="")
    keep = np.isin(rows["model"], pool) & np.isin(rows["method"], methods)
    mass = [float(np.mean(v)) if (v := rows["value"][keep & (rows["image"] == i)]).size else np.nan for i in stored]
    decoy = any(r.scenario == "decoy" for r in results.values())
    order = sorted((e for e in range(len(stored)) if np.isfinite(mass[e])), key=lambda e: -mass[e] if decoy else mass[e])
    return [(e, mass[e]) for e in order[:SHOWN]]


def evidence_view(run: RunData, sv: StudyVerdicts | None) -> dict[str, Any] | None:
    """The section's tables: {"tests": one row per model's intervention test, "shares": one row per method
    and precision (nonsensical maps), "sentence": verdict 5's}; None without interventions.json."""
    results = run.folder.records.read_interventions() if has_interventions(run) else None
    if not results:
        return None
    tests = [{"model": name, "precision": run.precisions.get(name, "?").upper(), "scenario": r.scenario,
              "status": r.status, "n": r.n_images, "accuracy": _share(r.accuracy),
              "accuracy_removed": _share(r.accuracy_removed), "follows_swap": _share(r.follows_swap),
              "changed_by_removal": _share(r.changed_by_removal), "changed_by_swap": _share(r.changed_by_swap),
              "failed": failed_checks(r)} for name, r in results.items()]
    verdict = next((v for v in sv.verdicts if v.id == 5), None) if sv is not None else None
    shares = [{"name": names.method_label(c.name.split(":")[0]) + c.name[c.name.index(":"):],
               "share": _share(c.estimate.value), "interval": f"[{_share(c.estimate.low)}, {_share(c.estimate.high)}]",
               "covers": c.estimate.covers} for c in (verdict.checks if verdict else ()) if c.estimate is not None]
    return {"tests": tests, "shares": shares, "sentence": verdict.sentence if verdict else "",
            "scenario": next(iter(results.values())).scenario}


def _share(value: float) -> str:
    return f"{100 * value:.1f} %" if np.isfinite(value) else number(value)
