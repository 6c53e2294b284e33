"""The verdicts as text, from the typed :class:`~binsight.study.verdicts.StudyVerdicts`, for every surface in
one place: the terminal table ``binsight study`` prints (:func:`verdict_table`), the README's findings
(:func:`verdict_markdown`) and the HTML report's rows (:func:`verdict_view`, plain dicts of display
strings for the page's template).

One rule says when a part's own statistic is shown beside the levels it compares
(:func:`shows_statistic`); every number goes through :func:`number` (the page, the findings) or
:meth:`~binsight.study.stats.Estimate.text` (intervals), so that an undefined value reads "undefined",
never "nan"; statuses are shown exactly as computed (the :class:`~binsight.study.verdicts.Status` value).
"""

from __future__ import annotations

import math
from typing import Any

from binsight.report import names
from binsight.study.stats import PRECISION_NAMES
from binsight.study.verdicts import Estimate, Part, StudyVerdicts, Verdict


def number(value: Any, digits: int = 3, *, signed: bool = True) -> str:
    """A number for the page: fixed precision, "undefined" for a missing or non-finite one."""
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return "undefined"
    return f"{value:+.{digits}f}" if signed else f"{value:.{digits}f}"


def shows_statistic(part: Part) -> bool:
    """Whether a part's own statistic is shown: it has one and it is not one of the levels it compares
    (a similarity part's FP-vs-BNN mean is a level; said once)."""
    return part.estimate is not None and part.estimate not in part.levels.values()


# ------------------------------------------------------------------------------------------------------
# the terminal


def verdict_table(verdicts: StudyVerdicts) -> str:
    """The verdicts as fixed-width text: number, full title and status (with "fragile" where a robustness
    setting changes it), then each part's status and reading; a part that compares levels (FP-vs-BNN,
    FP-vs-FP, ...) lists every level with its interval on the next line, any other part its statistic
    [interval] and the bound it is compared with."""
    rows = verdicts.verdicts
    width = max([len("finding")] + [len(v.title) for v in rows])
    lines = [f"{'#':<2} {'finding':<{width}}  status"]
    for v in rows:
        status = v.status.value + (", fragile" if v.fragile else "") + _primary_note(v)
        lines.append(f"{v.id:<2} {v.title:<{width}}  {status}")
        for part in v.parts:
            lines += _table_part(part, _role(v, part))
        for check in v.checks:
            lines += _table_part(check, "check")
    return "\n".join(lines)


def _primary_note(v: Verdict) -> str:
    """" (primary spearman, Holm-adjusted p 0.003)" for a verdict decided on primary parts; "" otherwise."""
    if not v.primary:
        return ""
    adjusted = f", Holm-adjusted p {v.adjusted_p:.3g}" if v.adjusted_p is not None else ""
    return f" (primary {' + '.join(v.primary)}{adjusted})"


def _role(v: Verdict, part: Part) -> str:
    """"primary" or "secondary" for a verdict decided on primary parts; "" otherwise."""
    if not v.primary:
        return ""
    return "primary" if part.name in v.primary else "secondary"


def _table_part(part: Part, role: str = "") -> list[str]:
    reading = f" ({part.reading})" if part.reading not in ("", part.status.value) else ""
    compared = shows_statistic(part)
    text = f"  {part.estimate.text()} ({_level(part.estimate)})" if compared else ""
    bound = f", bound {part.bound:+.3f}" if compared and part.bound is not None else ""
    tag = f" [{role}]" if role else ""
    lines = [f"     - {part.name}{tag}: {part.status.value}{reading}{text}{bound}"]
    if part.levels:
        shown = "; ".join(f"{name} {level.text()}" for name, level in part.levels.items())
        lines.append(f"         {shown} ({_level(next(iter(part.levels.values())))})")
    return lines


def _level(estimate: Estimate) -> str:
    return f"{estimate.confidence:.0%} CI"


# ------------------------------------------------------------------------------------------------------
# the README's findings (Markdown)


def verdict_markdown(v: Verdict) -> list[str]:
    """The verdict's line (status, reading), one line per part and check (status, the statistic it decides
    on, the levels it compares, its reading), and the settings that change its status."""
    status = v.status.value + (", **fragile**" if v.fragile else "")
    reading = f" Reading: {v.reading}." if v.reading and v.reading != "-" else ""
    lines = [f"{v.id}. **{v.title}**: *{status}*{_primary_note(v)}.{reading}"]
    for part in v.parts:
        role = _role(v, part)
        lines.append(f"   - {role + ', ' if role else ''}{_markdown_part(part)}")
    for check in v.checks:
        lines.append(f"   - check, {_markdown_part(check)}")
    changed = [r.setting for r in v.robustness if r.changed and not r.secondary]
    if changed:
        lines.append(f"   - status changes under: {', '.join(changed)}")
    secondary = [f"{r.setting} ({r.status.value})" for r in v.robustness if r.changed and r.secondary]
    if secondary:
        lines.append(f"   - a secondary measure alone gives another status (not fragile): {', '.join(secondary)}")
    return lines


def _markdown_part(part: Part) -> str:
    text = f"{part.name}: *{part.status.value}*"
    if shows_statistic(part):
        bound = "" if part.bound is None else f" (bound {number(part.bound)})"
        text += f", {part.estimate.text()}{bound}"
    if part.levels:
        text += "; " + ", ".join(f"{name} {e.text()}" for name, e in part.levels.items())
    if part.reading:
        text += f"; reading: {part.reading}"
    return text


# ------------------------------------------------------------------------------------------------------
# the HTML report (display strings for the template)


def estimate_view(e: Estimate | None, counts: dict[str, int] | None = None) -> dict[str, Any] | None:
    """{"value", "low", "high", "confidence", "covers", "effect", "n_images"} as display strings (None if
    absent); "covers" as :func:`covers_shown` makes it true for ``counts`` models per precision."""
    if e is None:
        return None
    split = ", ".join(f"{k} {v:.3g}" for k, v in e.split.items())
    return {"value": number(e.value), "low": number(e.low), "high": number(e.high),
            "confidence": f"{e.confidence:.0%}",
            "covers": covers_shown(e.covers, counts or {}) + (f"; variance: {split}" if split else ""),
            "effect": None if e.effect is None else number(e.effect, 2), "n_images": e.n_images}


def part_view(part: Part, counts: dict[str, int] | None = None) -> dict[str, Any]:
    return {
        "name": part.name, "label": _part_label(part.name), "question": part.question, "status": part.status.value,
        "estimate": estimate_view(part.estimate, counts), "bound": None if part.bound is None else number(part.bound),
        "sentence": part.sentence, "reading": part.reading,
        "levels": [(name, estimate_view(e, counts)) for name, e in part.levels.items()],
        "comparisons": [part_view(c, counts) for c in part.comparisons],
    }


def _part_label(name: str) -> str:
    """A part named after a measure ("road_lerf") gets the measure's reader name too."""
    label = names.label(name)
    return name if label == name else f"{names.short_label(name)} ({name})"


def verdict_view(v: Verdict, counts: dict[str, int] | None = None) -> dict[str, Any]:
    """The verdict as display strings, parts marked primary / secondary; ``counts`` (models per precision)
    make the intervals' "covers" true (:func:`covers_shown`)."""
    parts = []
    for p in v.parts:
        view, role = part_view(p, counts), _role(v, p)
        parts.append(dict(view, label=f"{view['label']} [{role}]") if role else view)
    return {
        "id": v.id, "title": v.title + _primary_note(v), "finding": v.finding, "status": v.status.value,
        "reading": v.reading, "sentence": v.sentence, "fragile": v.fragile,
        "parts": parts, "checks": [part_view(p, counts) for p in v.checks],
        "robustness": [{"setting": r.setting + (" (secondary)" if r.secondary else ""), "status": r.status.value,
                        "reading": r.reading, "changed": r.changed and not r.secondary}
                       for r in v.robustness],
    }


def covers_shown(covers: str, counts: dict[str, int]) -> str:
    """An interval's "covers" text as the run's model counts make it true: where it says models are
    "resampled within precision" and a precision has exactly 2 models, it says that this precision's
    within-precision baseline varies with the images only."""
    pairs = [PRECISION_NAMES.get(p, p) for p, n in counts.items() if n == 2]
    if "(resampled within precision)" not in covers or not pairs:
        return covers
    baselines = " and ".join(f"{p}-vs-{p}" for p in pairs)
    said = "baselines, one pair of 2 models each, vary" if len(pairs) > 1 else "baseline, one pair of 2 models, varies"
    return covers.replace("(resampled within precision)",
                          f"(resampled within precision; the {baselines} {said} with the images only)")


def covers_of(parts: list[dict[str, Any]]) -> set[str]:
    """Every distinct "covers" text of these parts' views and their comparisons."""
    found = set()
    for p in parts:
        if p["estimate"]:
            found.add(p["estimate"]["covers"])
        found |= covers_of(p["comparisons"])
    return found


def parts_confidence(parts: list[dict[str, Any]]) -> str:
    """The confidence level of the parts' intervals ("95%"), or "" if none has one."""
    return next((p["estimate"]["confidence"] for p in parts if p["estimate"]), "")


def robustness_table(verdicts: list[dict[str, Any]]) -> dict[str, Any]:
    """{"settings": [...], "rows": [{"id", "title", "status", "fragile", "cells": {setting: robustness row}}]}."""
    settings = list(dict.fromkeys(r["setting"] for v in verdicts for r in v["robustness"]))
    rows = [{"id": v["id"], "title": v["title"], "status": v["status"], "fragile": v["fragile"],
             "cells": {r["setting"]: r for r in v["robustness"]}} for v in verdicts]
    return {"settings": settings, "rows": [r for r in rows if r["cells"]]}


def css_class(status: str) -> str:
    """"partly held" -> "partly-held" (the page colours statuses by class)."""
    return status.replace(" ", "-")
