"""The study's tidy rows as the verdicts read them (:class:`Table`), and one model set's view of them
(:class:`Context`: the models, the settings and the crossed intervals' deletion rows that set shares)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Callable, Sequence

import numpy as np

from binsight.study.inference import CrossedEstimate, JackknifeDesign, crossed_interval, defined_images, jackknife_design
from binsight.study.stats import Draws, Estimate, Stat
from binsight.study.formats import Row
from binsight.study.names import UNDEFINED
from binsight.study.verdicts.records import ModelInfo
from binsight.study.verdicts.settings import VerdictSettings

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


class Context:
    """The table, one set of models (FP models and one surrogate's BNNs), the settings, and the crossed
    intervals' deletion rows every statistic of that set shares."""

    def __init__(self, table: Table, models: Sequence[ModelInfo], settings: VerdictSettings, methods: Sequence[str],
                 samples: dict[str, int] | None = None):
        self.table, self.models, self.settings, self.methods = table, tuple(models), settings, tuple(methods)
        self.samples = dict(samples or {})  # method label -> its Monte Carlo sample count (the convergence check)

    def memo(self, key: tuple, compute: Callable[[], Any]) -> Any:
        """``compute()`` once per model set, confidence and ``key`` (shared by every context of the same
        table, so that the robustness rows reuse the statistics they share)."""
        full = (tuple(m.name for m in self.models), self.settings.confidence, *key)
        if full not in self.table.cache:
            self.table.cache[full] = compute()
        return self.table.cache[full]

    def replace(self, *, models: Sequence[ModelInfo] | None = None, settings: VerdictSettings | None = None) -> "Context":
        return Context(self.table, self.models if models is None else models, settings or self.settings, self.methods,
                       self.samples)

    def count(self, precision: str) -> int:
        return sum(m.precision == precision for m in self.models)

    def pairs(self, measure: str, method: str) -> np.ndarray | None:
        return self.table.pairs(measure, method, self.models)

    def singles(self, measure: str, method: str) -> np.ndarray | None:
        return self.table.singles(measure, method, self.models)

    def crossed(self, statistic: Callable[..., Stat], *arrays: np.ndarray) -> Estimate | None:
        """The crossed t-interval (:func:`~binsight.study.inference.crossed_interval`) of a statistic of
        ``arrays`` (single (M, K) or pair (M, M, K) values of this context's models), as an Estimate.

        ``statistic(draws, *arrays)`` returns the :class:`~binsight.study.stats.Stat` on the deletion rows
        given as ``draws`` (e.g. ``pair_mean(values, draws, "fp", "bnn")``; its effect is kept); the arrays
        it gets hold only the image columns where every one of them has a value. None with fewer than 2
        such images or where the statistic is undefined on the sample.
        """
        keep = defined_images(*arrays)
        if keep.sum() < 2:
            return None
        design, draws = self.jackknife(int(keep.sum()))
        with np.errstate(invalid="ignore", divide="ignore"):
            stat = statistic(draws, *(a[..., keep] for a in arrays))
        return as_estimate(crossed_interval(stat.values, design, self.settings.confidence), stat.effect)

    def jackknife(self, n_images: int) -> tuple[JackknifeDesign, Draws]:
        """(design, draws) of the deletion rows for this context's models and ``n_images`` images: the
        design's weights as :class:`~binsight.study.stats.Draws`, so that ``stats``' means run on them."""
        precisions = tuple(m.precision for m in self.models)

        def make():
            design = jackknife_design(precisions, n_images)
            return design, Draws(precisions, design.models, design.images, self.settings.confidence)
        return self.memo(("jackknife", n_images), make)


def as_estimate(c: CrossedEstimate | None, effect: float | None = None) -> Estimate | None:
    """A crossed interval as the verdicts' :class:`~binsight.study.stats.Estimate` (n_resamples 0; se, df
    and the variance split kept)."""
    if c is None:
        return None
    split = {"models": float(c.split.models), "images": float(c.split.images), "residual": float(c.split.residual)}
    return Estimate(c.value, c.low, c.high, c.confidence, c.covers, c.n_images, 0, effect, se=c.se, df=c.df,
                    split=split)
