"""verdicts.json as the page shows it: read only through ``StudyVerdicts.from_json``, turned into plain dicts.

Every number goes through :func:`number`, so that an undefined value reads "undefined", never "nan";
statuses are shown exactly as computed (the :class:`~binsight.study.verdicts.Status` value).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from binsight.report import names
from binsight.study.verdicts import Estimate, Part, StudyVerdicts, Verdict


def read_verdicts(path: Path) -> tuple[StudyVerdicts | None, str]:
    """(the verdicts in ``path``, "") or (None, why not); the reason is "" when the file does not exist."""
    if not path.is_file():
        return None, ""
    try:
        return StudyVerdicts.from_json(path.read_text(encoding="utf-8")), ""
    except ValueError as e:  # VerdictError (a BinsightError): names the problem and what to do
        return None, str(e)


def number(value: Any, digits: int = 3, *, signed: bool = True) -> str:
    """A number for the page: fixed precision, "undefined" for a missing or non-finite one."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "undefined"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def estimate_view(e: Estimate | None) -> dict[str, Any] | None:
    """{"value", "low", "high", "confidence", "covers", "effect", "n_images"} as display strings (None if absent)."""
    if e is None:
        return None
    return {"value": number(e.value), "low": number(e.low), "high": number(e.high),
            "confidence": f"{e.confidence:.0%}", "covers": e.covers,
            "effect": None if e.effect is None else number(e.effect, 2), "n_images": e.n_images}


def part_view(part: Part) -> dict[str, Any]:
    return {
        "name": part.name, "label": _part_label(part.name), "question": part.question, "status": part.status.value,
        "estimate": estimate_view(part.estimate), "bound": None if part.bound is None else number(part.bound),
        "sentence": part.sentence, "reading": part.reading,
        "levels": [(name, estimate_view(e)) for name, e in part.levels.items()],
        "comparisons": [part_view(c) for c in part.comparisons],
    }


def _part_label(name: str) -> str:
    """A part named after a measure ("road_lerf") gets the measure's reader name too."""
    label = names.label(name)
    return name if label == name else f"{names.short_label(name)} ({name})"


def covers_of(parts: list[dict[str, Any]]) -> set[str]:
    """Every distinct "covers" text of these parts and their comparisons."""
    found = set()
    for p in parts:
        if p["estimate"]:
            found.add(p["estimate"]["covers"])
        found |= covers_of(p["comparisons"])
    return found


def parts_confidence(parts: list[dict[str, Any]]) -> str:
    """The confidence level of the parts' intervals ("95%"), or "" if none has one."""
    return next((p["estimate"]["confidence"] for p in parts if p["estimate"]), "")


def verdict_view(v: Verdict) -> dict[str, Any]:
    return {
        "id": v.id, "title": v.title, "finding": v.finding, "status": v.status.value, "reading": v.reading,
        "sentence": v.sentence, "fragile": v.fragile,
        "parts": [part_view(p) for p in v.parts], "checks": [part_view(p) for p in v.checks],
        "robustness": [{"setting": r.setting, "status": r.status.value, "reading": r.reading, "changed": r.changed}
                       for r in v.robustness],
    }


def robustness_table(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """{"settings": [...], "rows": [{"id", "title", "status", "fragile", "cells": {setting: robustness row}}]}."""
    settings = list(dict.fromkeys(r["setting"] for v in verdicts for r in v["robustness"]))
    rows = [{"id": v["id"], "title": v["title"], "status": v["status"], "fragile": v["fragile"],
             "cells": {r["setting"]: r for r in v["robustness"]}} for v in verdicts]
    return {"settings": settings, "rows": [r for r in rows if r["cells"]]}


def css_class(status: str) -> str:
    """"partly held" -> "partly-held" (the page colours statuses by class)."""
    return status.replace(" ", "-")
