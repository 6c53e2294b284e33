"""The report's section on ground truth (a study on planted data): each model's intervention test
(interventions.json), per method and precision the share of nonsensical maps with a known answer (the
checks of verdict 5, verdicts.json), and example maps beside their ground-truth masks. Shown only when the
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


def has_interventions(run: RunData) -> bool:
    return run.folder.files.exists("interventions.json")


def evidence_figures(run: RunData, methods: list[str]) -> dict[str, bytes | None]:
    """One figure per example image that has its planted window: rows = methods, columns = the window
    (drawn as a map that puts the row's largest magnitude on it and nothing elsewhere), then every base
    model's map, FP models first; one colour scale per row."""
    masks = run.examples.get("masks") if run.examples else None
    if not has_interventions(run) or masks is None or not run.images:
        return {}
    shown = [m for m in methods if m in run.setting("methods", "run", default=[])]
    models = sorted(run.base_models, key=lambda m: run.precisions.get(m, "") != "fp")
    indices = [int(i) for i in run.images.indices[: len(masks)]]
    maps = {(model, method): example_maps(run.folder, model, method, indices) for model in models for method in shown}
    results = run.folder.records.read_interventions() or {}
    titles = {GROUND_TRUTH: "planted window\n(ground truth)",
              **{m: f"{m} ({run.precisions.get(m, '?').upper()})" + ("" if m in results and results[m].passed else
                                                                    "\nno known answer (left out)") for m in models}}
    out = {}
    for e, index in enumerate(indices):
        per_image = {k: v[e] for k, v in maps.items() if v is not None}
        for method in shown:
            row = [np.abs(v) for (model, meth), v in per_image.items() if meth == method]
            top = max((float(r.max()) for r in row), default=1.0) or 1.0
            per_image[(GROUND_TRUTH, method)] = masks[e, 0].astype(np.float64) * top
        title = f"image #{index}: each model's maps beside the planted window, the evidence its known answer names"
        out[f"evidence_{e}"] = figures.example_grid(run.examples["images"][e], title, per_image, [GROUND_TRUTH, *models],
                                                    titles, shown, set())
    return out


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
