"""What verdicts.json holds beside the verdicts: each model pair's mean of each pair measure, prediction
agreement and accuracy, and the counts of undefined values."""

from __future__ import annotations

from typing import Sequence

import numpy as np

from binsight.study.names import PRECISIONS
from binsight.study.verdicts.records import ModelInfo, PairAgreement, PairValue, Predictions, UndefinedCount
from binsight.study.verdicts.table import Table

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
