"""Deciding: a comparison's status from where its interval lies against a bound, a part's from its
comparisons, a verdict's from its parts (:func:`combine`), and the sentences that say so."""

from __future__ import annotations

from typing import Sequence

from binsight.study.inference import one_sided_p
from binsight.study.stats import Estimate
from binsight.study.verdicts.records import (HELD, INCONCLUSIVE, NOT_HELD, NOT_MEASURED, PARTLY_HELD, Part, Status,
                                             Verdict)

def at_least(est: Estimate | None, bound: float) -> Status:
    """held if the whole interval is above ``bound``; not held if none of it is (it lies at or below);
    inconclusive if it straddles the bound."""
    if est is None:
        return NOT_MEASURED
    if est.low > bound:
        return HELD
    if est.high <= bound:
        return NOT_HELD
    return INCONCLUSIVE


def p_of(est: Estimate | None, bound: float, *, below: bool = False) -> float | None:
    """The one-sided p-value that the true value lies above ``bound`` (``below``: below it), from a crossed
    interval's standard error and degrees of freedom (the t tail of (estimate - bound) / se); None for an
    estimate without them. A zero standard error gives 0 when the estimate is on the claimed side, else 1."""
    if est is None or est.se is None or est.df is None:
        return None
    gap = (bound - est.value) if below else (est.value - bound)
    if est.se == 0:
        return 0.0 if gap > 0 else 1.0
    return one_sided_p(gap / est.se, est.df)


def invert(status: Status) -> Status:
    """The status of the opposite statement (held <-> not held)."""
    return {HELD: NOT_HELD, NOT_HELD: HELD}.get(status, status)


def combine(statuses: Sequence[Status]) -> Status:
    """The status of several parts: held if all hold, not held if none does, partly held if some hold and
    some do not, inconclusive otherwise (some inconclusive, no disagreement); parts not measured are left
    out (all not measured: not measured)."""
    measured = [s for s in statuses if s != NOT_MEASURED]
    if not measured:
        return NOT_MEASURED
    if all(s == HELD for s in measured):
        return HELD
    if all(s == NOT_HELD for s in measured):
        return NOT_HELD
    if HELD in measured and NOT_HELD in measured or PARTLY_HELD in measured:
        return PARTLY_HELD
    return INCONCLUSIVE


def conjunction(statuses: Sequence[Status]) -> Status:
    """The status of "all of these": held if all hold, not held if any does not, else inconclusive
    (not measured left out)."""
    measured = [s for s in statuses if s != NOT_MEASURED]
    if not measured:
        return NOT_MEASURED
    if NOT_HELD in measured:
        return NOT_HELD
    return HELD if all(s == HELD for s in measured) else INCONCLUSIVE


def words(status: Status) -> str:
    return {HELD: "held", NOT_HELD: "did not hold", PARTLY_HELD: "partly held", INCONCLUSIVE: "was inconclusive",
            NOT_MEASURED: "was not measured"}[status]


def comparison(name: str, question: str, est: Estimate | None, bound: float, *, below: bool = False,
               describe: str = "") -> Part:
    """A part that asks whether ``est`` lies above ``bound`` (``below``: below it), with the one-sided
    p-value of that claim (:func:`p_of`); its sentence names the estimate ``describe`` (default: ``name``)."""
    status = at_least(est, bound)
    status = invert(status) if below else status
    if est is None:
        return Part(name, question, NOT_MEASURED, None, bound, f"{describe or name}: not measured.")
    side = "below" if below else "above"
    sentence = f"{describe or name} = {est.text()} ({est.confidence:.0%} interval over {est.covers}), {side} {bound:+.3g}? {words(status)}."
    return Part(name, question, status, est, bound, sentence, p_value=p_of(est, bound, below=below))


def reading_of(parts: Sequence[Part]) -> str:
    """The parts' common reading; with different readings, each part's, headed "measures disagree" only
    when some part holds and another does not (otherwise "by measure": e.g. every part inconclusive, one
    of them not reproducible)."""
    read = [p for p in parts if p.reading]
    readings = {p.reading for p in read}
    if not readings:
        return ""
    if len(readings) == 1:
        return readings.pop()
    statuses = {p.status for p in read}
    head = "measures disagree" if HELD in statuses and NOT_HELD in statuses else "by measure"
    return f"{head}: " + "; ".join(f"{p.name} {p.reading}" for p in read)


def primary_p(parts: Sequence[Part]) -> float | None:
    """The p-value of "every one of these parts' claims holds": the largest of theirs (an intersection-union
    test); None when one of them has none."""
    p_values = [p.p_value for p in parts]
    return max(p_values) if p_values and all(p is not None for p in p_values) else None


def make_verdict(number: int, title: str, finding: str, parts: Sequence[Part], reading: str, why_missing: str,
                 checks: Sequence[Part] = (), primary: Sequence[str] = ()) -> Verdict:
    """A verdict decided by its ``primary`` parts (by name; the others are secondary and shown only)."""
    decisive = [p for p in parts if p.name in primary]
    status = combine([p.status for p in decisive])
    names = ", ".join(primary)
    if status == NOT_MEASURED:
        missing = f"{why_missing} (primary: {names})" if primary else why_missing
        return Verdict(number, title, finding, NOT_MEASURED, tuple(parts), "", f"Not measured: {missing}.",
                       checks=tuple(checks), primary=tuple(primary))
    summary = ", ".join(f"{p.name} {p.status.value}" for p in decisive)
    secondary = [p for p in parts if p.name not in primary and p.status != NOT_MEASURED]
    rest = f"; secondary: {', '.join(f'{p.name} {p.status.value}' for p in secondary)}" if secondary else ""
    reading_text = f" Reading: {reading}." if reading else ""
    sentence = f"The finding {words(status)} on its primary test ({summary}{rest}).{reading_text}"
    return Verdict(number, title, finding, status, tuple(parts), reading, sentence, checks=tuple(checks),
                   primary=tuple(primary), p_value=primary_p(decisive) if decisive else None)
