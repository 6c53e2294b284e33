"""The verdicts on the paper's findings, decided from measured intervals, never assumed.

Every estimate is a mean over images of a per-image quantity (for comparisons: a per-image difference,
so that the bootstrap is paired by image), with a seeded percentile bootstrap interval. Each verdict's
status is one of ``held``, ``not held``, ``inconclusive`` (or ``not measured`` when the run lacks what it
needs), decided by where the interval lies against a stated margin:

1. Gradient: FP-vs-BNN similarity minus FP-vs-FP (seed-to-seed) similarity. The paper: "very similar".
   held when the interval's lower end is above -margin; not held when its upper end is below -margin.
2. SmoothGrad: BNN noise minus FP noise. The paper: "significantly noisier for BNNs". held when the
   lower end is above the negligible difference (noise_margin x mean FP noise); not held when the upper
   end is below it. Also a Wilcoxon signed-rank p-value.
3. GradCAM: (a) its FP-vs-BNN similarity minus Gradient's (the paper: GradCAM maps differ between network
   types: held when the upper end is below -margin); (b) the flagged fraction of BNN maps minus that of FP
   maps (the paper: some BNN maps are nonsensical: held when the lower end is above 0).
4. NeuroMask (not in the paper): the same measurements, and its faithfulness (insertion minus deletion
   area) and localisation (energy on the object) against each other method; "NeuroMask is more faithful
   than every other method" held when every interval's lower end is above 0.

A map is flagged ("nonsensical") when it is degenerate, or when it does worse than the random map of the
same model on the same image on both deletion area (higher) and localisation (less energy on the object);
where no foreground masks exist, on deletion area alone.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
from scipy import stats

from binsight.study.config import VerdictsConfig
from binsight.study.store import Row

HELD, NOT_HELD, INCONCLUSIVE, NOT_MEASURED = "held", "not held", "inconclusive", "not measured"


@dataclass(frozen=True)
class ModelInfo:
    """A model's name in the table and its precision ("fp" or "bnn")."""

    name: str
    precision: str


class Table:
    """The tidy rows indexed for lookups: values per image for one (measure, method, model, model_b, step)."""

    def __init__(self, rows: Sequence[Row]):
        self._index: dict[tuple, dict[int, float]] = defaultdict(dict)
        for r in rows:
            self._index[(r.measure, r.method, r.model, r.model_b, r.step)][r.image] = r.value

    def values(self, measure: str, method: str, model: str, model_b: str = "", step: int = 0) -> dict[int, float]:
        """{image: value}; empty if nothing was measured."""
        return self._index.get((measure, method, model, model_b, step), {})

    def keys(self) -> list[tuple]:
        return list(self._index)


# ------------------------------------------------------------------------------------------------------
# statistics


def bootstrap_mean(x: np.ndarray, cfg: VerdictsConfig) -> tuple[float, float, float]:
    """(mean, low, high): the mean of ``x`` (one value per image) with a percentile bootstrap interval.

    ``cfg.n_resamples`` resamples of the images with replacement, seeded by ``cfg.seed``. Undefined (NaN)
    values are left out; NaN for no data.
    """
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(cfg.seed)
    means = np.concatenate([x[rng.integers(0, x.size, (n, x.size))].mean(axis=1)
                            for n in _batches(cfg.n_resamples, max(1, 2_000_000 // x.size))])
    alpha = (1 - cfg.confidence) / 2
    low, high = np.quantile(means, [alpha, 1 - alpha])
    return float(x.mean()), float(low), float(high)


def _batches(total: int, size: int) -> list[int]:
    return [min(size, total - start) for start in range(0, total, size)]


def wilcoxon_p(diffs: np.ndarray) -> float:
    """Two-sided Wilcoxon signed-rank p-value of paired differences; 1.0 when every difference is 0."""
    diffs = np.asarray(diffs, dtype=np.float64)
    if diffs.size == 0:
        return float("nan")
    if not np.any(diffs != 0):
        return 1.0
    return float(stats.wilcoxon(diffs, zero_method="wilcox").pvalue)


def paired(a: dict[int, float], b: dict[int, float]) -> np.ndarray:
    """a - b on the images both have, in image order (float64); undefined (NaN) differences left out."""
    common = sorted(set(a) & set(b))
    diffs = np.array([a[i] - b[i] for i in common], dtype=np.float64)
    return diffs[np.isfinite(diffs)]


def mean_over(dicts: Sequence[dict[int, float]]) -> dict[int, float]:
    """Per image, the mean over the dicts that have it (e.g. over the seeds of a precision).

    Undefined values (NaN, e.g. the Spearman correlation of a constant map) are left out.
    """
    sums: dict[int, list[float]] = defaultdict(list)
    for d in dicts:
        for i, v in d.items():
            if np.isfinite(v):
                sums[i].append(v)
    return {i: float(np.mean(v)) for i, v in sums.items()}


# ------------------------------------------------------------------------------------------------------
# per-image quantities


def pair_similarity(table: Table, models: Sequence[ModelInfo], method: str, measure: str, kind: str) -> dict[int, float]:
    """Per image, the mean similarity over the model pairs of ``kind``: "fp-bnn", "fp-fp" or "bnn-bnn"."""
    want = tuple(sorted(kind.split("-")))
    dicts = []
    for i, a in enumerate(models):
        for b in models[i + 1:]:
            if tuple(sorted((a.precision, b.precision))) == want:
                dicts.append(table.values(measure, method, a.name, b.name) or table.values(measure, method, b.name, a.name))
    return mean_over(dicts)


def precision_mean(table: Table, models: Sequence[ModelInfo], method: str, measure: str, precision: str) -> dict[int, float]:
    """Per image, the mean of ``measure`` over the models of ``precision``."""
    return mean_over([table.values(measure, method, m.name) for m in models if m.precision == precision])


def flagged_maps(table: Table, model: str, method: str) -> dict[int, float]:
    """Per image, 1.0 if the map of ``model`` and ``method`` is flagged as nonsensical, else 0.0.

    Flagged = degenerate, or worse than the random map on deletion area (higher) and on localisation
    (lower energy on the object); on deletion area alone when there is no localisation measure.
    """
    degenerate = table.values("degenerate", method, model)
    deletion, rand_deletion = table.values("deletion_auc", method, model), table.values("deletion_auc", "random", model)
    energy, rand_energy = table.values("energy_inside", method, model), table.values("energy_inside", "random", model)
    flags = {}
    for i in degenerate:
        worse_deletion = i in rand_deletion and i in deletion and deletion[i] > rand_deletion[i]
        worse_energy = (energy[i] < rand_energy[i]) if (i in energy and i in rand_energy) else not rand_energy
        flags[i] = float(degenerate[i] > 0 or (worse_deletion and worse_energy))
    return flags


def faithfulness_score(table: Table, model: str, method: str) -> dict[int, float]:
    """Per image, insertion area minus deletion area (higher = more faithful), in [-1, 1]."""
    ins, dele = table.values("insertion_auc", method, model), table.values("deletion_auc", method, model)
    return {i: ins[i] - dele[i] for i in sorted(set(ins) & set(dele))}


# ------------------------------------------------------------------------------------------------------
# deciding


def interval(diffs: np.ndarray, cfg: VerdictsConfig) -> dict[str, Any]:
    """{"estimate", "ci": [low, high], "n"} of the mean of per-image values."""
    est, low, high = bootstrap_mean(diffs, cfg)
    return {"estimate": est, "ci": [low, high], "n": int(np.asarray(diffs).size)}


def decide_at_least(ci: Sequence[float], bound: float) -> str:
    """held if the whole interval is above ``bound``; not held if it is wholly below; else inconclusive."""
    low, high = ci
    if not np.isfinite(low):
        return INCONCLUSIVE
    if low > bound:
        return HELD
    if high < bound:
        return NOT_HELD
    return INCONCLUSIVE


def decide_below(ci: Sequence[float], bound: float) -> str:
    """held if the whole interval is below ``bound``; not held if it is wholly at or above; else inconclusive."""
    low, high = ci
    if not np.isfinite(low):
        return INCONCLUSIVE
    if high < bound:
        return HELD
    if low >= bound:
        return NOT_HELD
    return INCONCLUSIVE


def _fmt(iv: dict[str, Any]) -> str:
    return f"{iv['estimate']:+.3f} [{iv['ci'][0]:+.3f}, {iv['ci'][1]:+.3f}]"


def _combine(statuses: Sequence[str]) -> str:
    if all(s == HELD for s in statuses):
        return HELD
    if all(s == NOT_HELD for s in statuses):
        return NOT_HELD
    return INCONCLUSIVE


def _not_measured(number: int, title: str, finding: str, why: str) -> dict[str, Any]:
    return {"id": number, "title": title, "finding": finding, "status": NOT_MEASURED, "estimate": None,
            "ci": None, "n": 0, "sentence": f"Not measured: {why}.", "details": {}}


# ------------------------------------------------------------------------------------------------------
# the four verdicts

FINDINGS = {
    1: "The Gradient method produces very similar-looking maps for BNN and FP networks.",
    2: "SmoothGrad produces significantly noisier maps for BNNs.",
    3: "GradCAM maps differ between network types, and some BNNs give seemingly nonsensical explanations.",
    4: "(Not in the paper.) NeuroMask is more faithful than the other three methods.",
}


def _has_pairs(models: Sequence[ModelInfo], kind: str) -> bool:
    a, b = kind.split("-")
    na, nb = (sum(m.precision == p for m in models) for p in (a, b))
    return na >= 2 if a == b else (na >= 1 and nb >= 1)


def verdict_similarity(table: Table, models: Sequence[ModelInfo], method: str, cfg: VerdictsConfig,
                       number: int, title: str) -> dict[str, Any]:
    """FP-vs-BNN similarity of ``method``'s maps against the FP-vs-FP seed baseline (verdict 1)."""
    measure = cfg.similarity_measure
    if not (_has_pairs(models, "fp-bnn") and _has_pairs(models, "fp-fp")):
        return _not_measured(number, title, FINDINGS[number], "needs at least two FP models and one BNN")
    fb, ff = (pair_similarity(table, models, method, measure, k) for k in ("fp-bnn", "fp-fp"))
    bb = pair_similarity(table, models, method, measure, "bnn-bnn")
    if not fb or not ff:
        return _not_measured(number, title, FINDINGS[number], f"no {measure} similarity of {method} maps in the table")
    iv = interval(paired(fb, ff), cfg)
    status = decide_at_least(iv["ci"], -cfg.similarity_margin)
    words = {
        HELD: "held: FP-vs-BNN maps are as similar as maps of two FP seeds (within the margin)",
        NOT_HELD: "did not hold: FP-vs-BNN maps are less similar than maps of two FP seeds, beyond the margin",
        INCONCLUSIVE: "was inconclusive: the interval straddles the margin",
    }[status]
    sentence = (f"{method} FP-vs-BNN minus FP-vs-FP {measure} = {_fmt(iv)} ({cfg.confidence:.0%} CI, "
                f"margin {cfg.similarity_margin}); the finding {words}.")
    details = {"fp_bnn": interval(np.array(list(fb.values())), cfg), "fp_fp": interval(np.array(list(ff.values())), cfg),
               "bnn_bnn": interval(np.array(list(bb.values())), cfg) if bb else None, "measure": measure,
               "margin": cfg.similarity_margin}
    return {"id": number, "title": title, "finding": FINDINGS[number], "status": status, **iv,
            "sentence": sentence, "details": details}


def verdict_noise(table: Table, models: Sequence[ModelInfo], method: str, cfg: VerdictsConfig,
                  number: int, title: str) -> dict[str, Any]:
    """BNN noise minus FP noise of ``method``'s maps, paired by image, with a Wilcoxon p-value (verdict 2)."""
    measure = cfg.noise_measure
    fp, bnn = (precision_mean(table, models, method, measure, p) for p in ("fp", "bnn"))
    if not fp or not bnn:
        return _not_measured(number, title, FINDINGS[number], f"needs {measure} of {method} maps of FP and BNN models")
    diffs = paired(bnn, fp)
    iv = interval(diffs, cfg)
    negligible = cfg.noise_margin * float(np.mean(list(fp.values())))
    status = decide_at_least(iv["ci"], negligible)
    p = wilcoxon_p(diffs)
    words = {
        HELD: "held: BNN maps are noisier, beyond a negligible difference",
        NOT_HELD: "did not hold: BNN maps are not noisier than FP maps by more than a negligible difference",
        INCONCLUSIVE: "was inconclusive: the interval straddles the negligible difference",
    }[status]
    sentence = (f"{method} BNN minus FP {measure} = {_fmt(iv)} ({cfg.confidence:.0%} CI; negligible below "
                f"{negligible:.3g} = {cfg.noise_margin:.0%} of FP noise; Wilcoxon p = {p:.2g}); the finding {words}.")
    details = {"fp": interval(np.array(list(fp.values())), cfg), "bnn": interval(np.array(list(bnn.values())), cfg),
               "wilcoxon_p": p, "negligible": negligible, "measure": measure}
    return {"id": number, "title": title, "finding": FINDINGS[number], "status": status, **iv,
            "sentence": sentence, "details": details}


def verdict_flagged(table: Table, models: Sequence[ModelInfo], method: str, cfg: VerdictsConfig) -> dict[str, Any]:
    """Per-image flagged fraction of BNN maps minus that of FP maps: interval and status (> 0 = held)."""
    fp = mean_over([flagged_maps(table, m.name, method) for m in models if m.precision == "fp"])
    bnn = mean_over([flagged_maps(table, m.name, method) for m in models if m.precision == "bnn"])
    iv = interval(paired(bnn, fp), cfg)
    return {**iv, "status": decide_at_least(iv["ci"], 0.0),
            "fp_fraction": float(np.mean(list(fp.values()))) if fp else float("nan"),
            "bnn_fraction": float(np.mean(list(bnn.values()))) if bnn else float("nan")}


def verdict_gradcam(table: Table, models: Sequence[ModelInfo], cfg: VerdictsConfig) -> dict[str, Any]:
    """Verdict 3: GradCAM's FP-vs-BNN similarity against Gradient's, and flagged BNN against FP maps."""
    title = "GradCAM differs between FP and BNN; some BNN maps are nonsensical"
    measure = cfg.similarity_measure
    cam = pair_similarity(table, models, "gradcam", measure, "fp-bnn")
    grad = pair_similarity(table, models, "gradient", measure, "fp-bnn")
    if not cam or not grad:
        return _not_measured(3, title, FINDINGS[3], f"needs FP-vs-BNN {measure} of both gradcam and gradient maps")
    iv = interval(paired(cam, grad), cfg)
    differ = decide_below(iv["ci"], -cfg.similarity_margin)
    flagged = verdict_flagged(table, models, "gradcam", cfg)
    status = _combine([differ, flagged["status"]])
    sentence = (
        f"GradCAM minus Gradient FP-vs-BNN {measure} = {_fmt(iv)}: the first part {_part(differ)}; "
        f"flagged BNN minus FP GradCAM maps = {_fmt(flagged)} (BNN {flagged['bnn_fraction']:.1%}, "
        f"FP {flagged['fp_fraction']:.1%}): the second part {_part(flagged['status'])}; overall the finding "
        f"{_status_words(status)}."
    )
    details = {"similarity_vs_gradient": {**iv, "status": differ}, "flagged_bnn_minus_fp": flagged,
               "gradcam_fp_bnn_minus_fp_fp": _seed_baseline(table, models, "gradcam", cfg)}
    return {"id": 3, "title": title, "finding": FINDINGS[3], "status": status, **iv, "sentence": sentence,
            "details": details}


def _seed_baseline(table: Table, models: Sequence[ModelInfo], method: str, cfg: VerdictsConfig) -> dict[str, Any] | None:
    fb = pair_similarity(table, models, method, cfg.similarity_measure, "fp-bnn")
    ff = pair_similarity(table, models, method, cfg.similarity_measure, "fp-fp")
    return interval(paired(fb, ff), cfg) if fb and ff else None


def _part(status: str) -> str:
    return {HELD: "held", NOT_HELD: "did not hold", INCONCLUSIVE: "was inconclusive"}[status]


def _status_words(status: str) -> str:
    return {HELD: "held", NOT_HELD: "did not hold", INCONCLUSIVE: "was inconclusive (the parts disagree or "
            "an interval straddles its bound)"}[status]


def verdict_neuromask(table: Table, models: Sequence[ModelInfo], methods: Sequence[str], cfg: VerdictsConfig) -> dict[str, Any]:
    """Verdict 4: NeuroMask's own FP/BNN measurements and its standing against the other methods."""
    title = "NeuroMask: as the others, and is it more faithful?"
    others = [m for m in ("gradient", "smoothgrad", "gradcam") if m in methods]
    if "neuromask" not in methods or not others:
        return _not_measured(4, title, FINDINGS[4], "needs neuromask and at least one other method")
    names = [m.name for m in models]
    faith = {m: mean_over([faithfulness_score(table, n, m) for n in names]) for m in ["neuromask", *others]}
    energy = {m: mean_over([table.values("energy_inside", m, n) for n in names]) for m in ["neuromask", *others]}
    against = {m: interval(paired(faith["neuromask"], faith[m]), cfg) for m in others}
    local = {m: interval(paired(energy["neuromask"], energy[m]), cfg) for m in others if energy[m]}
    statuses = [decide_at_least(iv["ci"], 0.0) for iv in against.values()]
    status = HELD if all(s == HELD for s in statuses) else NOT_HELD if any(s == NOT_HELD for s in statuses) else INCONCLUSIVE
    worst = min(against, key=lambda m: against[m]["ci"][0])
    sentence = (
        "Faithfulness (insertion minus deletion area), NeuroMask minus "
        + ", ".join(f"{m} {_fmt(iv)}" for m, iv in against.items())
        + (("; energy on the object, NeuroMask minus " + ", ".join(f"{m} {_fmt(iv)}" for m, iv in local.items()))
           if local else "; no foreground masks, so no localisation")
        + f". NeuroMask is more faithful than every other method: {_status_words(status)}."
    )
    details = {
        "faithfulness_vs": against, "energy_inside_vs": local,
        "similarity_fp_bnn_minus_fp_fp": _seed_baseline(table, models, "neuromask", cfg),
        "noise_bnn_minus_fp": verdict_noise(table, models, "neuromask", cfg, 4, title),
        "flagged_bnn_minus_fp": verdict_flagged(table, models, "neuromask", cfg),
    }
    return {"id": 4, "title": title, "finding": FINDINGS[4], "status": status, **against[worst],
            "estimate_of": f"neuromask minus {worst} faithfulness (the closest competitor)",
            "sentence": sentence, "details": details}


# ------------------------------------------------------------------------------------------------------
# everything


def flagged_fractions(table: Table, models: Sequence[ModelInfo], methods: Sequence[str]) -> list[dict[str, Any]]:
    """The fraction of flagged maps per model and method: [{"model", "precision", "method", "fraction", "n"}]."""
    out = []
    for m in models:
        for method in methods:
            flags = flagged_maps(table, m.name, method)
            if flags:
                out.append({"model": m.name, "precision": m.precision, "method": method,
                            "fraction": float(np.mean(list(flags.values()))), "n": len(flags)})
    return out


def summary(table: Table, models: Sequence[ModelInfo], methods: Sequence[str], cfg: VerdictsConfig) -> list[dict[str, Any]]:
    """Mean and interval of every single-model measure per method and precision (models averaged per image)."""
    measures = sorted({k[0] for k in table.keys() if k[3] == "" and k[4] == 0})
    out = []
    for measure in measures:
        for method in methods:
            for precision in ("fp", "bnn"):
                per_image = precision_mean(table, models, method, measure, precision)
                if per_image:
                    iv = interval(np.array([per_image[i] for i in sorted(per_image)]), cfg)
                    out.append({"measure": measure, "method": method, "precision": precision, **iv})
    return out


def compute_verdicts(rows: Sequence[Row], models: Sequence[ModelInfo], methods: Sequence[str],
                     cfg: VerdictsConfig) -> dict[str, Any]:
    """Everything verdicts.json holds: the four verdicts, flagged fractions and the per-method summary."""
    table = Table(rows)
    verdicts = [
        verdict_similarity(table, models, "gradient", cfg, 1, "Gradient: FP and BNN maps look alike")
        if "gradient" in methods else _not_measured(1, "Gradient", FINDINGS[1], "gradient was not run"),
        verdict_noise(table, models, "smoothgrad", cfg, 2, "SmoothGrad: BNN maps are noisier")
        if "smoothgrad" in methods else _not_measured(2, "SmoothGrad", FINDINGS[2], "smoothgrad was not run"),
        verdict_gradcam(table, models, cfg),
        verdict_neuromask(table, models, methods, cfg),
    ]
    return {
        "confidence": cfg.confidence,
        "n_resamples": cfg.n_resamples,
        "verdicts": _finite(verdicts),
        "flagged": flagged_fractions(table, models, methods),
        "summary": _finite(summary(table, models, methods, cfg)),
    }


def _finite(obj: Any) -> Any:
    """NaN and infinities as None, so that the JSON is strict."""
    if isinstance(obj, float):
        return obj if np.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj
