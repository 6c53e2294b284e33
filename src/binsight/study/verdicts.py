"""The verdicts on the paper's findings, decided from two-level bootstrap intervals (see docs/verdicts.md).

Input: the tidy rows of a study and its models (:class:`ModelInfo`). Every estimate is a mean over models
and images with an interval from :mod:`binsight.study.stats` (models resampled within each precision,
then images); every difference is computed from the same draws as its terms. A comparison's status comes
from where its interval lies against a bound; a part combines its comparisons, a verdict its parts
(:func:`combine`). Which method each verdict is about is a setting (:class:`VerdictSettings`), so that
no method is named here.

1. Similarity (Gradient): FP-vs-BNN against FP-vs-FP, BNN-vs-BNN and the image-shuffled chance level,
   per similarity measure (and inside the object where measured); a reading per measure.
2. Noise (SmoothGrad): BNN minus FP noise, relative to FP noise, per noise measure; a convergence check
   with more samples says whether the difference is Monte Carlo noise.
3. GradCAM: FP-vs-BNN below GradCAM's own within-precision baselines; BNN maps below chance more often
   than FP maps (degenerate maps counted apart).
4. Faithfulness (NeuroMask): better than every other method on measures that do not use its own
   perturbation (ROAD, deletion / insertion onto blur); against the chance maps as a check.

Each verdict is recomputed under every explanation surrogate of the BNNs, every single measure, and half
and twice the margins; a verdict whose status changes under one of them is fragile.
"""

from __future__ import annotations

import dataclasses
import enum
import functools
import json
import types
import typing
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np

from binsight.errors import BinsightError
from binsight.study.config import VerdictsConfig
from binsight.study.stats import (Draws, Estimate, Stat, difference, draw, effect_size, estimate, pair_mean,
                                  relative_difference, single_mean)
from binsight.study.store import Row

__all__ = ["Status", "Estimate", "Part", "Verdict", "Robustness", "StudyVerdicts", "ModelInfo", "VerdictSettings",
           "VerdictError", "compute_verdicts", "combine"]

UNDEFINED = ":undefined"
PRECISIONS = ("fp", "bnn")


class VerdictError(BinsightError):
    """Inputs the verdicts cannot use (a model of unknown precision, a name given twice, bad JSON)."""


class Status(str, enum.Enum):
    """The status of a comparison, a part or a verdict."""

    HELD = "held"
    NOT_HELD = "not held"
    PARTLY_HELD = "partly held"
    INCONCLUSIVE = "inconclusive"
    NOT_MEASURED = "not measured"


HELD, NOT_HELD, PARTLY_HELD, INCONCLUSIVE, NOT_MEASURED = (Status.HELD, Status.NOT_HELD, Status.PARTLY_HELD,
                                                         Status.INCONCLUSIVE, Status.NOT_MEASURED)

# readings of a similarity comparison
ALIKE, DIFFER, UNSTABLE, UNDECIDED = "alike", "BNN maps differ from FP maps", "maps unstable across seeds", "inconclusive"
# readings of the convergence check
MODEL_PROPERTY, MONTE_CARLO, CANNOT_TELL = "a property of the model", "Monte Carlo noise", "cannot tell"


@dataclass(frozen=True)
class ModelInfo:
    """A model of the study as the table names it.

    precision: "fp" or "bnn". group: its seed or group label. surrogate: the sign surrogate its maps were
    computed with ("" for FP, "own" for a BNN whose sign cannot be switched). A BNN explained with another
    surrogate is a variant named ``f"{base}+{surrogate}"``.
    """

    name: str
    precision: str
    group: str = ""
    surrogate: str = ""

    @property
    def is_variant(self) -> bool:
        return "+" in self.name


_CONFIG = VerdictsConfig()  # the configuration's defaults: one source for both


@dataclass(frozen=True)
class VerdictSettings:
    """Everything the verdicts read from the configuration, with its defaults (the configuration's own,
    plus ``chance_map_methods``, which only the verdicts use).

    Margins: similarity_margin (an FP-vs-BNN similarity at most this far below a within-precision baseline
    counts as "as similar"), chance_margin (how far above the image-shuffled chance level a similarity
    must be), noise_margin (a BNN-minus-FP noise difference, as a fraction of FP noise, that counts as
    noisier), below_chance_margin (a difference of below-chance fractions that counts), faithfulness_margin
    (a faithfulness difference, in the measure's units, that counts as better). Methods: the method each
    verdict is about, the convergence method (more samples of the noise method) and the chance maps.
    lower_is_better: the faithfulness measures where a lower value is better.
    """

    similarity_measures: tuple[str, ...] = tuple(_CONFIG.similarity_measures)
    noise_measures: tuple[str, ...] = tuple(_CONFIG.noise_measures)
    faithfulness_measures: tuple[str, ...] = tuple(_CONFIG.faithfulness_measures)
    lower_is_better: tuple[str, ...] = tuple(_CONFIG.lower_is_better)
    similarity_method: str = _CONFIG.similarity_method
    noise_method: str = _CONFIG.noise_method
    convergence_method: str = _CONFIG.convergence_method
    gradcam_method: str = _CONFIG.gradcam_method
    faithfulness_method: str = _CONFIG.faithfulness_method
    chance_map_methods: tuple[str, ...] = ("random", "smooth-random")
    similarity_margin: float = _CONFIG.similarity_margin
    chance_margin: float = _CONFIG.chance_margin
    noise_margin: float = _CONFIG.noise_margin
    below_chance_margin: float = _CONFIG.below_chance_margin
    faithfulness_margin: float = _CONFIG.faithfulness_margin
    confidence: float = _CONFIG.confidence
    n_resamples: int = _CONFIG.n_resamples
    seed: int = _CONFIG.seed

    @classmethod
    def from_config(cls, config: VerdictsConfig | None) -> "VerdictSettings":
        """Settings from a :class:`VerdictsConfig`; a field it lacks keeps the default above."""
        values = {}
        for f in dataclasses.fields(cls):
            if config is not None and hasattr(config, f.name):
                value = getattr(config, f.name)
                values[f.name] = tuple(value) if isinstance(value, (list, tuple)) else value
        return cls(**values)

    def scaled_margins(self, factor: float) -> "VerdictSettings":
        """These settings with every margin multiplied by ``factor``."""
        names = ("similarity_margin", "chance_margin", "noise_margin", "below_chance_margin", "faithfulness_margin")
        return dataclasses.replace(self, **{n: getattr(self, n) * factor for n in names})


@dataclass(frozen=True)
class Part:
    """One tested statement: its status, estimate and bound, in a sentence.

    estimate and bound: the interval and the value it is compared with. A similarity part (which
    combines its ``comparisons``, each with its own bound) gives the FP-vs-BNN mean and no bound; a
    faithfulness part gives its comparison with the closest competitor and the margin. reading: what the
    numbers support, where a part has readings (similarity parts, convergence). levels: the means the
    comparisons are made of (e.g. "FP-vs-BNN", "FP", "BNN": their estimates). comparisons: the
    sub-statements a part combines.
    """

    name: str
    question: str
    status: Status
    estimate: Estimate | None
    bound: float | None
    sentence: str
    reading: str = ""
    levels: dict[str, Estimate] = field(default_factory=dict)
    comparisons: tuple["Part", ...] = ()


@dataclass(frozen=True)
class Robustness:
    """A verdict recomputed under one alternative setting; ``changed``: its status differs from the verdict's."""

    setting: str
    status: Status
    reading: str
    changed: bool


@dataclass(frozen=True)
class Verdict:
    """One finding of the paper and what the study found.

    status: from ``parts`` (:func:`combine`). reading: what the numbers support, in a few words. checks:
    parts shown with the verdict that do not decide its status (chance comparisons, convergence,
    degenerate maps). robustness: the verdict under alternative settings; fragile: some of them changed
    its status.
    """

    id: int
    title: str
    finding: str
    status: Status
    parts: tuple[Part, ...]
    reading: str
    sentence: str
    robustness: tuple[Robustness, ...] = ()
    fragile: bool = False
    checks: tuple[Part, ...] = ()


@dataclass(frozen=True)
class PairValue:
    """The mean of one pair measure over the images of one model pair (kind: "fp-bnn", "fp-fp", "bnn-bnn")."""

    method: str
    measure: str
    model: str
    model_b: str
    kind: str
    mean: float
    n_images: int


@dataclass(frozen=True)
class PairAgreement:
    """The fraction of images on which two models predict the same class."""

    model: str
    model_b: str
    fraction: float
    n_images: int


@dataclass(frozen=True)
class Predictions:
    """How often the models predict the same class: all of them (``all_agree``) and pair by pair;
    ``accuracy``: each model's fraction of correct predictions on the explained images."""

    all_agree: float | None
    n_images: int
    pairs: tuple[PairAgreement, ...]
    accuracy: dict[str, float]


@dataclass(frozen=True)
class UndefinedCount:
    """How many values of one measure were undefined (e.g. a correlation with a constant map)."""

    measure: str
    method: str
    model: str
    model_b: str
    count: int


@dataclass(frozen=True)
class StudyVerdicts:
    """Everything verdicts.json holds. ``to_json`` writes strict JSON; ``from_json`` reads it back."""

    verdicts: tuple[Verdict, ...]
    per_pair: tuple[PairValue, ...]
    predictions: Predictions
    undefined: tuple[UndefinedCount, ...]
    settings: VerdictSettings

    def to_json(self) -> str:
        """Strict JSON (no NaN): statuses as their words, estimates as objects."""
        return json.dumps(_encode(self), indent=2, allow_nan=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> "StudyVerdicts":
        """The object :meth:`to_json` wrote; raises :class:`VerdictError` for text that is not one."""
        try:
            return _decode(cls, json.loads(text))
        except (ValueError, TypeError, KeyError) as e:
            raise VerdictError(f"verdicts.json cannot be read ({e}); recompute it with `binsight study`") from None


def _encode(obj: Any) -> Any:
    if isinstance(obj, enum.Enum):
        return obj.value
    if dataclasses.is_dataclass(obj):
        return {f.name: _encode(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): _encode(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_encode(v) for v in obj]
    if isinstance(obj, (float, np.floating)):
        return float(obj) if np.isfinite(obj) else None
    if isinstance(obj, np.integer):
        return int(obj)
    return obj


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _decode(hint: Any, data: Any) -> Any:
    """An instance of type ``hint`` (dataclass, enum, tuple[X, ...], dict[str, X], X | None, scalar)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if data is None and type(None) in args:
            return None
        return _decode(next(a for a in args if a is not type(None)), data)
    if dataclasses.is_dataclass(hint):
        hints = _hints(hint)
        return hint(**{f.name: _decode(hints[f.name], data[f.name]) for f in dataclasses.fields(hint) if f.name in data})
    if isinstance(hint, type) and issubclass(hint, enum.Enum):
        return hint(data)
    if origin is tuple:
        return tuple(_decode(args[0], v) for v in data)
    if origin is dict:
        return {k: _decode(args[1], v) for k, v in data.items()}
    if hint is float:
        if data is None:
            return float("nan")
        return float(data)
    if hint in (int, str, bool) and not isinstance(data, hint):
        raise TypeError(f"expected {hint.__name__}, got {type(data).__name__}")
    return data


# ------------------------------------------------------------------------------------------------------
# the table


class Table:
    """The tidy rows as vectors over one image axis: ``vector(measure, method, model, model_b)`` (K,) with NaN
    where no value exists; ``images``: the sorted image indices of every row."""

    def __init__(self, rows: Sequence[Row]):
        self.images = np.array(sorted({r.image for r in rows}), dtype=np.int64)
        position = {int(img): k for k, img in enumerate(self.images)}
        self._vectors: dict[tuple[str, str, str, str], np.ndarray] = {}
        self.cache: dict[tuple, Any] = {}  # statistics shared by the contexts of one computation
        self.undefined: dict[tuple[str, str, str, str], int] = defaultdict(int)
        self.rows = [r for r in rows if r.step == 0]
        self.methods = {r.method for r in self.rows if r.method and not r.measure.endswith(UNDEFINED)}
        for r in self.rows:
            if r.measure.endswith(UNDEFINED):
                self.undefined[(r.measure[: -len(UNDEFINED)], r.method, r.model, r.model_b)] += 1
                continue
            key = (r.measure, r.method, r.model, r.model_b)
            if key not in self._vectors:
                self._vectors[key] = np.full(len(self.images), np.nan)
            self._vectors[key][position[r.image]] = r.value

    def vector(self, measure: str, method: str, model: str, model_b: str = "") -> np.ndarray | None:
        return self._vectors.get((measure, method, model, model_b))

    def keys(self) -> list[tuple[str, str, str, str]]:
        return list(self._vectors)

    def singles(self, measure: str, method: str, models: Sequence[ModelInfo]) -> np.ndarray | None:
        """(M, K) values of ``models``; None when none of them has a value."""
        vectors = [self.vector(measure, method, m.name) for m in models]
        if all(v is None for v in vectors):
            return None
        return np.stack([np.full(len(self.images), np.nan) if v is None else v for v in vectors])

    def pairs(self, measure: str, method: str, models: Sequence[ModelInfo]) -> np.ndarray | None:
        """(M, M, K) symmetric pair values of ``models`` (either order in the table); None when none exists."""
        m = len(models)
        out = np.full((m, m, len(self.images)), np.nan)
        found = False
        for i, a in enumerate(models):
            for j, b in enumerate(models[i + 1:], start=i + 1):
                v = self.vector(measure, method, a.name, b.name)
                v = self.vector(measure, method, b.name, a.name) if v is None else v
                if v is not None:
                    out[i, j] = out[j, i] = v
                    found = True
        return out if found else None


# ------------------------------------------------------------------------------------------------------
# deciding


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


def _words(status: Status) -> str:
    return {HELD: "held", NOT_HELD: "did not hold", PARTLY_HELD: "partly held", INCONCLUSIVE: "was inconclusive",
            NOT_MEASURED: "was not measured"}[status]


def comparison(name: str, question: str, est: Estimate | None, bound: float, *, below: bool = False,
               describe: str = "") -> Part:
    """A part that asks whether ``est`` lies above ``bound`` (``below``: below it); its sentence names the
    estimate ``describe`` (default: ``name``)."""
    status = at_least(est, bound)
    status = invert(status) if below else status
    if est is None:
        return Part(name, question, NOT_MEASURED, None, bound, f"{describe or name}: not measured.")
    side = "below" if below else "above"
    sentence = f"{describe or name} = {est.text()} ({est.confidence:.0%} interval over {est.covers}), {side} {bound:+.3g}? {_words(status)}."
    return Part(name, question, status, est, bound, sentence)


# ------------------------------------------------------------------------------------------------------
# a study's data for one model set


class Context:
    """The table, one set of models (FP models and one surrogate's BNNs), the settings and the draws."""

    def __init__(self, table: Table, models: Sequence[ModelInfo], settings: VerdictSettings, methods: Sequence[str]):
        self.table, self.models, self.settings, self.methods = table, tuple(models), settings, tuple(methods)
        precisions = tuple(m.precision for m in self.models)
        self.draws: Draws = self.memo(("draws", precisions), lambda: draw(
            precisions, len(table.images), n_resamples=settings.n_resamples, seed=settings.seed,
            confidence=settings.confidence))

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per model set, resampling settings and ``key`` (shared by every context of
        the same table, so that the robustness rows reuse the statistics they share)."""
        s = self.settings
        full = (tuple(m.name for m in self.models), s.n_resamples, s.seed, s.confidence, *key)
        if full not in self.table.cache:
            self.table.cache[full] = compute()
        return self.table.cache[full]

    def replace(self, *, models: Sequence[ModelInfo] | None = None, settings: VerdictSettings | None = None) -> "Context":
        return Context(self.table, self.models if models is None else models, settings or self.settings, self.methods)

    def count(self, precision: str) -> int:
        return sum(m.precision == precision for m in self.models)

    def pairs(self, measure: str, method: str) -> np.ndarray | None:
        return self.table.pairs(measure, method, self.models)

    def singles(self, measure: str, method: str) -> np.ndarray | None:
        return self.table.singles(measure, method, self.models)

    def estimate(self, stat: Stat) -> Estimate | None:
        return estimate(stat, self.draws)


def _common(*arrays: np.ndarray) -> list[np.ndarray]:
    """The arrays with every image column that one of them lacks entirely set to NaN."""
    has = np.logical_and.reduce([np.isfinite(a).reshape(-1, a.shape[-1]).any(axis=0) for a in arrays])
    return [np.where(has, a, np.nan) for a in arrays]


# ------------------------------------------------------------------------------------------------------
# verdict 1 (and 3a): similarity against the within-precision baselines and chance


def similarity_part(ctx: Context, method: str, measure: str, *, claim: str) -> Part | None:
    """FP-vs-BNN ``measure`` of ``method``'s maps against FP-vs-FP, BNN-vs-BNN and chance.

    claim "alike": held when FP-vs-BNN is within the margin of both baselines and above chance by the
    chance margin. claim "differ": held when FP-vs-BNN is below both baselines by more than the margin.
    None when the table has no FP-vs-BNN value of ``measure``.
    """
    s = ctx.settings
    e = ctx.memo(("similarity", method, measure), lambda: similarity_estimates(ctx, method, measure))
    if e is None:
        return None
    comps = [
        comparison("FP-vs-BNN minus FP-vs-FP", "Are FP-vs-BNN maps as alike as maps of two FP seeds?",
                   e["fb-ff"], -s.similarity_margin),
        comparison("FP-vs-BNN minus BNN-vs-BNN", "Are FP-vs-BNN maps as alike as maps of two BNN seeds?",
                   e["fb-bb"], -s.similarity_margin),
        comparison("FP-vs-BNN minus chance", "Are FP-vs-BNN maps more alike than maps of different images?",
                   e["fb-chance"], s.chance_margin),
        comparison("FP-vs-FP minus chance", "Do FP seeds agree beyond chance?", e["ff-chance"], s.chance_margin),
        comparison("BNN-vs-BNN minus chance", "Do BNN seeds agree beyond chance?", e["bb-chance"], s.chance_margin),
    ]
    reading = similarity_reading(*(c.status for c in comps))
    if comps[0].status == comps[1].status == NOT_MEASURED:
        status = NOT_MEASURED  # no within-precision baseline: nothing to compare FP-vs-BNN with
    elif claim == "alike":  # without a chance level, "alike" cannot be told from "alike as noise"
        chance = INCONCLUSIVE if comps[2].status == NOT_MEASURED else comps[2].status
        status = conjunction([comps[0].status, comps[1].status, chance])
    else:
        status = conjunction([invert(comps[0].status), invert(comps[1].status)])
    levels = {name: e[key] for name, key in (("FP-vs-BNN", "fb"), ("FP-vs-FP", "ff"), ("BNN-vs-BNN", "bb"),
                                             ("chance (FP-vs-BNN, images shuffled)", "fb-shuffled")) if e[key]}
    question = {"alike": f"Are {method} maps of FP and BNN models alike by {measure}?",
                "differ": f"Do {method} maps of FP and BNN models differ by {measure}, beyond seed-to-seed variation?"}[claim]
    sentence = _similarity_sentence(method, measure, levels, reading, comps, status)
    return Part(measure, question, status, e["fb"], None, sentence, reading, levels, tuple(comps))


def similarity_estimates(ctx: Context, method: str, measure: str) -> dict[str, Estimate | None] | None:
    """The pair means of ``measure`` (fb: FP-vs-BNN, ff: FP-vs-FP, bb: BNN-vs-BNN; "-shuffled": of the
    image-shuffled pairs) and their differences, from one set of draws; None without FP-vs-BNN values."""
    values = ctx.pairs(measure, method)
    if values is None or ctx.count("fp") == 0 or ctx.count("bnn") == 0:
        return None
    shuffled = ctx.pairs(f"{measure}_shuffled", method)
    if shuffled is not None:
        values, shuffled = _common(values, shuffled)
    kinds = {"fb": ("fp", "bnn"), "ff": ("fp", "fp"), "bb": ("bnn", "bnn")}
    stats = {k: pair_mean(values, ctx.draws, *kind) for k, kind in kinds.items()}
    if shuffled is not None:
        stats.update({f"{k}-shuffled": pair_mean(shuffled, ctx.draws, *kind) for k, kind in kinds.items()})
    out: dict[str, Estimate | None] = {k: ctx.estimate(v) for k, v in stats.items()}
    out["fb-ff"] = ctx.estimate(difference(stats["fb"], stats["ff"]))
    out["fb-bb"] = ctx.estimate(difference(stats["fb"], stats["bb"]))
    for k in kinds:
        shuffled_stat = stats.get(f"{k}-shuffled")
        out[f"{k}-chance"] = ctx.estimate(difference(stats[k], shuffled_stat)) if shuffled_stat else None
        out.setdefault(f"{k}-shuffled", None)
    return out


def similarity_reading(fp_fp: Status, bnn_bnn: Status, chance: Status, fp_stable: Status, bnn_stable: Status) -> str:
    """Which reading the statuses of the five similarity comparisons support.

    alike: FP-vs-BNN within the margin of both baselines and above chance. differ: below both baselines
    beyond the margin. unstable: FP-vs-BNN definitely not alike, but as low as one baseline, or a baseline
    is at chance, so the low similarity cannot be put down to precision. Otherwise inconclusive.
    """
    if fp_fp == bnn_bnn == chance == HELD:
        return ALIKE
    if fp_fp == NOT_HELD and bnn_bnn == NOT_HELD:
        return DIFFER
    not_alike = NOT_HELD in (fp_fp, bnn_bnn, chance)
    if not_alike and (HELD in (fp_fp, bnn_bnn) or NOT_HELD in (fp_stable, bnn_stable)):
        return UNSTABLE
    return UNDECIDED


def _similarity_sentence(method: str, measure: str, levels: dict[str, Estimate], reading: str,
                         comps: Sequence[Part], status: Status) -> str:
    means = "; ".join(f"{k} {e.value:.3f} [{e.low:.3f}, {e.high:.3f}]" for k, e in levels.items())
    why = {
        ALIKE: "FP-vs-BNN maps are as alike as maps of two seeds of either precision, and well above chance",
        DIFFER: "FP-vs-BNN maps are less alike than maps of two seeds of either precision, beyond the margin",
        UNSTABLE: "FP-vs-BNN maps are not alike, but maps of two seeds of one precision are no more alike "
                  "(or barely above chance), so the difference cannot be put down to precision",
        UNDECIDED: "the intervals do not decide between the readings",
    }[reading]
    causes = [f"{c.name.split(' minus ')[1]} as low as FP-vs-BNN" for c in comps[:2] if c.status == HELD]
    causes += [f"{c.name.split(' minus ')[0]} near chance" for c in comps[3:] if c.status == NOT_HELD]
    extra = f" ({', '.join(causes)})" if reading == UNSTABLE and causes else ""
    no_chance = " No image-shuffled chance level of this measure." if comps[2].status == NOT_MEASURED else ""
    return f"{method}, {measure}: {means}. Reading: {reading}{extra}: {why}.{no_chance} Status: {_words(status)}."


def similarity_parts(ctx: Context, method: str, *, claim: str) -> list[Part]:
    """A similarity part per configured measure, whole map then inside the object (where measured)."""
    parts = []
    for measure in ctx.settings.similarity_measures:
        for name in (measure, f"{measure}_object"):
            part = similarity_part(ctx, method, name, claim=claim)
            if part is not None:
                parts.append(part)
    return parts


def _reading_of(parts: Sequence[Part]) -> str:
    readings = {p.reading for p in parts if p.reading}
    if not readings:
        return ""
    if len(readings) == 1:
        return readings.pop()
    return "measures disagree: " + "; ".join(f"{p.name} {p.reading}" for p in parts)


def _verdict(number: int, title: str, finding: str, parts: Sequence[Part], reading: str, why_missing: str,
             checks: Sequence[Part] = ()) -> Verdict:
    status = combine([p.status for p in parts])
    if status == NOT_MEASURED:
        return Verdict(number, title, finding, NOT_MEASURED, tuple(parts), "", f"Not measured: {why_missing}.", checks=tuple(checks))
    counted = [p for p in parts if p.status != NOT_MEASURED]
    summary = ", ".join(f"{p.name} {p.status.value}" for p in counted)
    reading_text = f" Reading: {reading}." if reading else ""
    sentence = f"The finding {_words(status)} ({summary}).{reading_text}"
    return Verdict(number, title, finding, status, tuple(parts), reading, sentence, checks=tuple(checks))


def verdict_similarity(ctx: Context) -> Verdict:
    """Verdict 1: the similarity method's maps are alike for FP and BNN models."""
    method = ctx.settings.similarity_method
    parts = similarity_parts(ctx, method, claim="alike")
    return _verdict(1, f"{method}: FP and BNN maps look alike", FINDINGS[1], parts, _reading_of(parts),
                    f"needs FP-vs-BNN similarity of {method} maps")


# ------------------------------------------------------------------------------------------------------
# verdict 2: noise


def noise_difference(ctx: Context, method: str, measure: str, keep_method: str = "") -> tuple[Estimate | None, dict[str, Estimate]]:
    """(BNN mean - FP mean) / FP mean of ``measure`` of ``method``'s maps, on the images where
    ``keep_method`` has values of ``measure`` ("" = every image); and each precision's own mean."""
    return ctx.memo(("noise", method, measure, keep_method), lambda: _noise_difference(ctx, method, measure, keep_method))


def _noise_difference(ctx: Context, method: str, measure: str, keep_method: str) -> tuple[Estimate | None, dict[str, Estimate]]:
    values = ctx.singles(measure, method)
    if values is None or ctx.count("fp") == 0 or ctx.count("bnn") == 0:
        return None, {}
    keep = ctx.singles(measure, keep_method) if keep_method else None
    if keep is not None:
        values = np.where(np.isfinite(keep).any(axis=0), values, np.nan)
    fp, bnn = single_mean(values, ctx.draws, "fp"), single_mean(values, ctx.draws, "bnn")
    levels = {k: e for k, e in (("FP", ctx.estimate(fp)), ("BNN", ctx.estimate(bnn))) if e}
    if len(levels) < 2:
        return None, {}
    return ctx.estimate(relative_difference(bnn, fp)), levels


def noise_part(ctx: Context, measure: str) -> Part:
    s = ctx.settings
    diff, levels = noise_difference(ctx, s.noise_method, measure)
    means = ", ".join(f"{k} {e.value:.3g}" for k, e in levels.items())
    part = comparison(measure, f"Are {s.noise_method} maps of BNNs noisier by {measure}?", diff, s.noise_margin,
                      describe=f"{measure} of {s.noise_method} maps ({means}), BNN minus FP as a fraction of FP")
    return dataclasses.replace(part, levels=levels)


def convergence_check(ctx: Context, measure: str) -> Part:
    """The noise difference with the convergence method's maps against the noise method's on the same images.

    reading: a property of the model (the difference stays beyond the margin with more samples), Monte
    Carlo noise (it does with the noise method and does not with more samples), cannot tell (otherwise).
    """
    s = ctx.settings
    more = ctx.singles(measure, s.convergence_method)
    name = f"{measure} with {s.convergence_method}"
    if more is None:
        return Part(name, "Does the noise difference stay with more samples?", NOT_MEASURED, None, s.noise_margin,
                    f"{name}: not measured.")
    keep = np.isfinite(more).any(axis=0)
    many = comparison(name, f"Are BNN maps noisier by {measure} with {s.convergence_method}?",
                      noise_difference(ctx, s.convergence_method, measure)[0], s.noise_margin)
    few = comparison(f"{measure} with {s.noise_method} (same images)",
                     f"Are BNN maps noisier by {measure} with {s.noise_method} on the same images?",
                     noise_difference(ctx, s.noise_method, measure, s.convergence_method)[0], s.noise_margin)
    if many.status == HELD:
        reading = MODEL_PROPERTY
    elif many.status == NOT_HELD and few.status == HELD:
        reading = MONTE_CARLO
    else:
        reading = CANNOT_TELL
    sentence = (f"Convergence ({measure}, {int(keep.sum())} images): BNN minus FP as a fraction of FP, "
                f"{s.noise_method} {few.estimate.text() if few.estimate else 'n/a'}, {s.convergence_method} "
                f"{many.estimate.text() if many.estimate else 'n/a'}: the difference is {reading}.")
    return Part(name, "Does the noise difference stay with more samples?", many.status, many.estimate, s.noise_margin,
                sentence, reading, comparisons=(few, many))


def verdict_noise(ctx: Context) -> Verdict:
    """Verdict 2: the noise method's maps are noisier for BNNs (each noise measure a part)."""
    s = ctx.settings
    parts = [noise_part(ctx, m) for m in s.noise_measures]
    checks = [convergence_check(ctx, m) for m in s.noise_measures]
    readings = {c.reading for c in checks if c.status != NOT_MEASURED}
    reading = ("convergence: " + readings.pop()) if len(readings) == 1 else (
        "convergence: measures disagree" if readings else "convergence not measured")
    return _verdict(2, f"{s.noise_method}: BNN maps are noisier", FINDINGS[2], parts, reading,
                    f"needs {', '.join(s.noise_measures)} of {s.noise_method} maps of FP and BNN models", checks)


# ------------------------------------------------------------------------------------------------------
# verdict 3: GradCAM


def fraction_difference(ctx: Context, measure: str, method: str) -> tuple[Estimate | None, dict[str, Estimate]]:
    """BNN minus FP mean of the 0/1 ``measure`` of ``method``'s maps, and each precision's own mean."""
    return ctx.memo(("fraction", measure, method), lambda: _fraction_difference(ctx, measure, method))


def _fraction_difference(ctx: Context, measure: str, method: str) -> tuple[Estimate | None, dict[str, Estimate]]:
    values = ctx.singles(measure, method)
    if values is None or ctx.count("fp") == 0 or ctx.count("bnn") == 0:
        return None, {}
    fp, bnn = single_mean(values, ctx.draws, "fp"), single_mean(values, ctx.draws, "bnn")
    levels = {k: e for k, e in (("FP", ctx.estimate(fp)), ("BNN", ctx.estimate(bnn))) if e}
    return ctx.estimate(difference(bnn, fp)), levels


def verdict_gradcam(ctx: Context) -> Verdict:
    """Verdict 3: the GradCAM method's FP-vs-BNN maps differ beyond its own seed baselines (a part per
    similarity measure), and its BNN maps are below chance more often than its FP maps."""
    s = ctx.settings
    method = s.gradcam_method
    parts = similarity_parts(ctx, method, claim="differ")
    below, below_levels = fraction_difference(ctx, "below_chance", method)
    part = comparison("below chance", "Are BNN maps below chance more often than FP maps?", below, s.below_chance_margin,
                      describe=f"Fraction of non-degenerate {method} maps below chance{_fractions(below_levels)}, "
                               "BNN minus FP")
    parts.append(dataclasses.replace(part, levels=below_levels))
    degenerate, deg_levels = fraction_difference(ctx, "degenerate", method)
    check = comparison("degenerate", "Are BNN maps degenerate more often than FP maps?", degenerate, 0.0,
                       describe=f"Fraction of degenerate {method} maps (constant or flat; never tested against "
                                f"chance){_fractions(deg_levels)}, BNN minus FP")
    check = dataclasses.replace(check, levels=deg_levels)
    reading = _reading_of(parts[:-1])
    return _verdict(3, f"{method}: FP and BNN maps differ; some BNN maps below chance", FINDINGS[3], parts,
                    reading, f"needs FP-vs-BNN similarity and below-chance tests of {method} maps", [check])


def _fractions(levels: dict[str, Estimate]) -> str:
    return f" ({', '.join(f'{k} {e.value:.1%}' for k, e in levels.items())})" if levels else ""


# ------------------------------------------------------------------------------------------------------
# verdict 4: faithfulness


def method_difference(ctx: Context, measure: str, method: str, other: str) -> Estimate | None:
    """Mean over models and images of ``method`` minus ``other`` on ``measure``, paired by model and image,
    signed so that a positive value means ``method`` is better."""
    sign = -1.0 if measure in ctx.settings.lower_is_better else 1.0
    return ctx.memo(("methods", measure, method, other, sign), lambda: _method_difference(ctx, measure, method, other, sign))


def _method_difference(ctx: Context, measure: str, method: str, other: str, sign: float) -> Estimate | None:
    a, b = ctx.singles(measure, method), ctx.singles(measure, other)
    if a is None or b is None:
        return None
    diff = sign * (a - b)
    stat = single_mean(diff, ctx.draws)
    stat = dataclasses.replace(stat, effect=effect_size(stat.per_image))
    return ctx.estimate(stat)


def other_methods(ctx: Context) -> list[str]:
    s = ctx.settings
    skip = {s.faithfulness_method, s.convergence_method, *s.chance_map_methods}
    return [m for m in ctx.methods if m not in skip]


def faithfulness_part(ctx: Context, measure: str, against: Sequence[str]) -> Part:
    s = ctx.settings
    method = s.faithfulness_method
    comps = tuple(comparison(f"{method} minus {other}", f"Is {method} more faithful than {other} by {measure}?",
                             method_difference(ctx, measure, method, other), s.faithfulness_margin) for other in against)
    status = conjunction([c.status for c in comps])
    better = "lower" if measure in s.lower_is_better else "higher"
    images = max((c.estimate.n_images for c in comps if c.estimate), default=0)
    sentence = (f"{measure} ({better} is better), {method} minus each, positive = {method} better, on {images} images: "
                + "; ".join(f"{c.name.split(' minus ')[1]} {c.estimate.text() if c.estimate else 'not measured'}"
                            f" ({c.status.value})" for c in comps) + f". Status: {_words(status)}.")
    closest = min((c for c in comps if c.estimate), key=lambda c: c.estimate.value, default=None)
    return Part(measure, f"Is {method} more faithful than every other method by {measure}?", status,
                closest.estimate if closest else None, s.faithfulness_margin, sentence, comparisons=comps)


def verdict_faithfulness(ctx: Context) -> Verdict:
    """Verdict 4: the faithfulness method beats every other method on measures that do not use its own
    perturbation (a part per measure); its standing against the chance maps is a check."""
    s = ctx.settings
    method = s.faithfulness_method
    others = other_methods(ctx)
    parts = [faithfulness_part(ctx, m, others) for m in s.faithfulness_measures] if others else []
    chance = [m for m in s.chance_map_methods if m in ctx.table.methods]
    checks = [dataclasses.replace(faithfulness_part(ctx, m, chance), name=f"{m} against chance maps",
                                  question=f"Is {method} more faithful than the chance maps by {m}?")
              for m in s.faithfulness_measures] if chance else []
    return _verdict(4, f"{method}: more faithful than the other methods", FINDINGS[4], parts, "",
                    f"needs {method} and another method measured on {', '.join(s.faithfulness_measures)}", checks)


FINDINGS = {
    1: "The Gradient method produces very similar-looking maps for BNN and FP networks.",
    2: "SmoothGrad produces significantly noisier maps for BNNs.",
    3: "GradCAM maps differ between network types, and some BNNs give seemingly nonsensical explanations.",
    4: "(Not in the paper.) NeuroMask is more faithful than the other methods.",
}

VERDICTS: tuple[tuple[Callable[[Context], Verdict], str], ...] = (
    (verdict_similarity, "similarity_measures"),
    (verdict_noise, "noise_measures"),
    (verdict_gradcam, "similarity_measures"),
    (verdict_faithfulness, "faithfulness_measures"),
)


# ------------------------------------------------------------------------------------------------------
# robustness


def alternatives(ctx: Context, measures_field: str) -> list[tuple[str, Context]]:
    """(setting, context) for each surrogate variant set, each single measure, and half / twice the margins."""
    out = []
    base = [m for m in ctx.models if not m.is_variant]
    fp = [m for m in base if m.precision != "bnn"]
    variants = [m for m in ctx.models if m.is_variant and m.precision == "bnn"]
    for surrogate in sorted({m.surrogate for m in variants}):
        models = fp + [m for m in variants if m.surrogate == surrogate]
        out.append((f"BNNs explained with surrogate {surrogate}", ctx.replace(models=models)))
    base_ctx = ctx.replace(models=base)
    measures = getattr(ctx.settings, measures_field)
    if len(measures) > 1:
        for m in measures:
            out.append((f"{m} only", base_ctx.replace(settings=dataclasses.replace(ctx.settings, **{measures_field: (m,)}))))
    for factor, words in ((0.5, "half"), (2.0, "twice")):
        out.append((f"margins at {words} the default", base_ctx.replace(settings=ctx.settings.scaled_margins(factor))))
    return out


def with_robustness(verdict: Verdict, compute: Callable[[Context], Verdict], ctx: Context, measures_field: str) -> Verdict:
    """``verdict`` with its robustness rows; fragile when a measured row's status differs from its own."""
    if verdict.status == NOT_MEASURED:
        return verdict
    rows = []
    for setting, alt in alternatives(ctx, measures_field):
        v = compute(alt)
        changed = v.status != NOT_MEASURED and v.status != verdict.status
        rows.append(Robustness(setting, v.status, v.reading, changed))
    own = sorted(m.name for m in ctx.models if m.precision == "bnn" and not m.is_variant and m.surrogate == "own")
    if own:  # a foreign BNN's sign cannot be switched: the surrogate rows leave it out
        rows.append(Robustness("BNNs explained with another surrogate", NOT_MEASURED,
                               f"does not apply to {', '.join(own)}: the sign's backward is the model's own, "
                               "not switchable", False))
    fragile = any(r.changed for r in rows)
    sentence = verdict.sentence
    if fragile:
        sentence += " Fragile: its status changes with " + "; ".join(f"{r.setting} ({r.status.value})" for r in rows if r.changed) + "."
    return dataclasses.replace(verdict, robustness=tuple(rows), fragile=fragile, sentence=sentence)


# ------------------------------------------------------------------------------------------------------
# per-pair values, predictions, undefined counts


def per_pair_values(table: Table, models: Sequence[ModelInfo]) -> list[PairValue]:
    """Each model pair's mean of each pair measure and method."""
    precision = {m.name: m.precision for m in models}
    out = []
    for measure, method, a, b in sorted(table.keys()):
        if b and a in precision and b in precision:
            v = table.vector(measure, method, a, b)
            kind = "-".join(sorted((precision[a], precision[b]), key=PRECISIONS.index))
            n = int(np.isfinite(v).sum())
            if n:
                out.append(PairValue(method, measure, a, b, kind, float(np.nanmean(v)), n))
    return out


def predictions(table: Table, models: Sequence[ModelInfo]) -> Predictions:
    """Prediction agreement of the base models (variants share their base model's predictions)."""
    base = [m.name for m in models if not m.is_variant]
    pred = {n: table.vector("predicted", "", n) for n in base}
    pred = {n: v for n, v in pred.items() if v is not None}
    pairs = []
    names = list(pred)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            both = np.isfinite(pred[a]) & np.isfinite(pred[b])
            if both.any():
                pairs.append(PairAgreement(a, b, float(np.mean(pred[a][both] == pred[b][both])), int(both.sum())))
    all_agree, n = None, 0
    if len(names) >= 2:
        stacked = np.stack([pred[k] for k in names])
        every = np.isfinite(stacked).all(axis=0)
        n = int(every.sum())
        if n:
            all_agree = float(np.mean((stacked[:, every] == stacked[0, every]).all(axis=0)))
    accuracy = {}
    for name in base:
        v = table.vector("correct", "", name)
        if v is not None and np.isfinite(v).any():
            accuracy[name] = float(np.nanmean(v))
    return Predictions(all_agree, n, tuple(pairs), accuracy)


def undefined_counts(table: Table) -> list[UndefinedCount]:
    return [UndefinedCount(measure, method, a, b, count) for (measure, method, a, b), count in sorted(table.undefined.items())]


# ------------------------------------------------------------------------------------------------------
# everything


def check_models(models: Sequence[ModelInfo]) -> None:
    names = [m.name for m in models]
    if len(set(names)) != len(names):
        raise VerdictError(f"model names repeat: {sorted({n for n in names if names.count(n) > 1})}; give each model once")
    for m in models:
        if m.precision not in PRECISIONS:
            raise VerdictError(f"model {m.name!r}: precision {m.precision!r} is not one of 'fp', 'bnn'")


def compute_verdicts(rows: Sequence[Row], models: Sequence[ModelInfo], config: VerdictsConfig | VerdictSettings | None = None,
                     *, methods: Sequence[str] | None = None) -> StudyVerdicts:
    """The four verdicts, with robustness, per-pair values, prediction agreement and undefined counts.

    rows: the study's tidy rows. models: every model of the table, surrogate variants included (a
    variant's name holds "+"); the verdicts use the base models, the robustness rows each surrogate's
    variants in place of the base BNNs. config: a :class:`VerdictsConfig` (or settings; None: defaults).
    methods: the explanation methods the study ran (None: every method label in the rows); verdict 4
    compares the faithfulness method with each of them except the chance maps and the convergence
    method. The chance maps are found in the rows by their labels (``chance_map_methods``).
    """
    check_models(models)
    settings = config if isinstance(config, VerdictSettings) else VerdictSettings.from_config(config)
    table = Table(rows)
    if methods is None:
        methods = sorted(table.methods)
    ctx = Context(table, models, settings, methods)
    base_ctx = ctx.replace(models=[m for m in models if not m.is_variant])
    verdicts = tuple(with_robustness(compute(base_ctx), compute, ctx, field_name) for compute, field_name in VERDICTS)
    return StudyVerdicts(verdicts, tuple(per_pair_values(table, models)), predictions(table, models),
                         tuple(undefined_counts(table)), settings)
