"""Stage ``matched`` (opt-in, ``models.matched_fp``): FP models trained to the accuracy of the BNN of their
seed, for the verdicts' robustness row "FP models matched to the BNNs' accuracy"
(:mod:`binsight.study.verdicts.controls`).

The FP recipe gives FP models a few points more test accuracy than the BNNs (default study: FP about
92.2-92.5 %, BNN about 89.3-89.7 %), so an FP-vs-BNN difference could be one of accuracy, not of
binarization. The control trains each trained FP model again, by the same recipe and seed, on fewer
training images, the sizes of the ladder ``models.matched_fp`` in ascending order (a size must be below the
FP model's own ``models.train_subset``, when that is set). The rule (:func:`choose_rung`): train the rungs
in order and stop at the first whose test accuracy reaches the BNN's; of the rungs trained, keep the one
whose accuracy is closest to the BNN's. Fewer training images rather than fewer epochs: the FP recipe
stopped after one epoch diverges (6 % test accuracy), and the recipe's schedule is set by its epochs.

The matched model of ``fp-N`` is the table's model ``fp-N+matched`` (FP, group N; its checkpoint copied to
models/fp-N.matched.safetensors, recorded in models.json after the base models); like a surrogate variant
it is explained only by the methods whose table sets ``robustness`` and paired within each surrogate's
model set, and the base verdicts never read it. Accuracy is test accuracy, measured as the models stage
measures it (the split the study draws its images from: those images are among the ones it counts). Each
rung is a cached model (``cached_model``'s key holds ``train_subset``), so a rerun trains nothing again.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

from binsight.models.checkpoint import load_checkpoint
from binsight.study.config import ConfigError
from binsight.study.context import RunContext
from binsight.study.names import MATCHED_FP, variant_name
from binsight.study.plan import StudyModel
from binsight.study.records import ModelRecord
from binsight.study.stages.maps import check_explainers
from binsight.study.stages.models import Obtained, model_accuracy, obtain, ready, record_checkpoint


class MatchedStage:
    name = "matched"

    def run(self, ctx: RunContext) -> None:
        pairs = matched_pairs(ctx)
        if not pairs:
            return
        if ctx.main:
            record_matched(ctx, pairs)
        ctx.sync()
        recorded = {r.name: r for r in ctx.folder.records.read_models() or []}
        models = []
        for fp, _ in pairs:
            record = recorded[variant_name(fp.name, MATCHED_FP)]
            module = load_checkpoint(ctx.folder.path(record.checkpoint))[0]
            models.append(StudyModel(record.name, "fp", fp.group, "", ready(ctx, module), base=fp.name, record=record))
        check_explainers(ctx.plan, models)
        ctx.models += models


def choose_rung(ladder: Sequence[int], accuracy_of: Callable[[int], float], target: float) -> tuple[int, float, list]:
    """(the chosen rung, its accuracy, [(rung, accuracy) of each rung trained]): the rungs in ascending order,
    stopping at the first whose accuracy reaches ``target``; of those trained, the closest to ``target``
    (the smaller rung on a tie)."""
    tried = []
    for rung in sorted(ladder):
        tried.append((rung, accuracy_of(rung)))
        if tried[-1][1] >= target:
            break
    rung, accuracy = min(tried, key=lambda t: (abs(t[1] - target), t[0]))
    return rung, accuracy, tried


def matched_pairs(ctx: RunContext) -> list[tuple[StudyModel, StudyModel]]:
    """(FP model, the BNN of its group) for each FP model this study trains (a seed) with a BNN of the
    same group; [] when ``models.matched_fp`` is empty."""
    if not ctx.config.models.matched_fp:
        return []
    trained = {s.name for s in ctx.plan.sources if s.trained}
    bnns = {m.group: m for m in ctx.base if m.precision == "bnn"}
    return [(m, bnns[m.group]) for m in ctx.base if m.precision == "fp" and m.name in trained and m.group in bnns]


def record_matched(ctx: RunContext, pairs: Sequence[tuple[StudyModel, StudyModel]]) -> None:
    """Obtain the matched model of every pair not yet in models.json, copy it into models/ and add its
    record to models.json (rank 0)."""
    recorded = ctx.folder.records.read_models() or []
    names = {r.name for r in recorded}
    added = []
    for fp, bnn in pairs:
        name = variant_name(fp.name, MATCHED_FP)
        if name not in names:
            added.append(matched_record(ctx, fp, bnn, name))
    if added:
        ctx.folder.records.write_models([*recorded, *added])


def matched_record(ctx: RunContext, fp: StudyModel, bnn: StudyModel, name: str) -> ModelRecord:
    """The record of ``fp``'s matched model (:func:`choose_rung` against ``bnn``'s recorded accuracy)."""
    source = next(s for s in ctx.plan.sources if s.name == fp.name)
    own_subset = ctx.config.models.train_subset
    ladder = list(ctx.config.models.matched_fp)
    if own_subset and max(ladder) >= own_subset:
        raise ConfigError(f"models.matched_fp: {max(ladder)} training images is not fewer than the FP models' "
                          f"models.train_subset = {own_subset}; give smaller sizes")
    target = bnn.record.accuracy if bnn.record and bnn.record.accuracy is not None else None
    if target is None:
        raise ConfigError(f"models.matched_fp: the accuracy of {bnn.name} is not recorded; it is what {fp.name} "
                          "is matched to")
    obtained: dict[int, Obtained] = {}

    def accuracy_of(rung: int) -> float:
        obtained[rung] = obtain(rung_context(ctx, rung), source)
        return model_accuracy(ctx, obtained[rung].module, obtained[rung].meta, trained=True)[0]

    rung, _, _ = choose_rung(ladder, accuracy_of, target)
    chosen = obtained[rung]
    record = record_checkpoint(ctx, dataclasses.replace(chosen, source=dataclasses.replace(
        source, name=f"{fp.name}.{MATCHED_FP}")))
    return dataclasses.replace(record, name=name, base=fp.name)


def rung_context(ctx: RunContext, rung: int) -> RunContext:
    """``ctx`` with ``models.train_subset`` set to ``rung`` (what :func:`obtain` trains on)."""
    config = ctx.config
    config = dataclasses.replace(config, models=dataclasses.replace(config.models, train_subset=rung))
    return dataclasses.replace(ctx, plan=dataclasses.replace(ctx.plan, config=config))


__all__: Sequence[str] = ["MatchedStage", "choose_rung", "matched_pairs"]
