"""Stage ``pairs``: whole-map, object-mask and image-shuffled similarity of the maps of every pair of models.

Every pair of base models for each explanation method; for a method in the robustness check, also every
pair within each surrogate's model set (the FP models and the BNNs explained with that surrogate).

A method with a seed check (:func:`~binsight.study.stages.maps.seed_check_specs`) adds one kind of pair:
each base model with itself from two starts, its maps of the method against its seed check's maps of the
same images, stored with ``model == model_b`` under the seed check's label (``neuromask-start1``): the
method's start-to-start baseline (docs/verdicts.md), with its image-shuffled chance level as every pair.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

from binsight.metrics import localisation, similarity
from binsight.study.context import RunContext, StudyImages
from binsight.study.errors import RunFolderError
from binsight.study.formats import Row, to_rows
from binsight.study.measures import pair_values
from binsight.study.plan import MethodSpec, StudyModel, StudyPlan
from binsight.study.stages.maps import seed_check_specs

PairUnit = tuple[StudyModel, StudyModel, MethodSpec]


class PairsStage:
    name = "pairs"

    def run(self, ctx: RunContext) -> None:
        if not ctx.config.measures.similarity:
            return
        checks = {check.label: spec.label for spec, check in seed_check_specs(ctx.plan)}
        units = pair_units(ctx.plan, ctx.models) + start_pair_units(ctx.plan, ctx.models)
        todo = [(a, b, spec) for a, b, spec in ctx.mine(units)
                if not ctx.folder.units.done("pairs", (a.name, b.name, spec.label))]
        with ctx.progress(len(todo), "pairs") as bar:
            for a, b, spec in todo:
                # a seed check's pair: a model's maps of the method against its seed check's
                rows = pair_rows(ctx, a.name, b.name, spec.label, ctx.images, first=checks.get(spec.label, ""))
                ctx.folder.units.save("pairs", (a.name, b.name, spec.label), rows)
                bar.update()


def pair_units(plan: StudyPlan, models: Sequence[StudyModel]) -> list[PairUnit]:
    """(a, b, method): every pair of base models for each explanation method, and for a method in the
    robustness check every pair within each surrogate's model set (see the module docstring)."""
    config = plan.config
    base = [m for m in models if not m.is_variant]
    units, seen = [], set()
    for spec in (s for s in plan.methods if not s.chance and s.label in config.methods.run):
        sets = [base] + ([surrogate_set(models, s) for s in config.verdicts.robustness_surrogates]
                         if spec.robustness else [])
        for group in sets:
            for i, a in enumerate(group):
                for b in group[i + 1:]:
                    if (a.name, b.name, spec.label) not in seen:
                        seen.add((a.name, b.name, spec.label))
                        units.append((a, b, spec))
    return units


def start_pair_units(plan: StudyPlan, models: Sequence[StudyModel]) -> list[PairUnit]:
    """(model, the same model, seed check): every base model of each method with a seed check."""
    return [(m, m, check) for _, check in seed_check_specs(plan) for m in models if not m.is_variant]


def surrogate_set(models: Sequence[StudyModel], surrogate: str) -> list[StudyModel]:
    """FP models, and the BNNs explained with ``surrogate`` (a base model or its variant)."""
    return [m for m in models if m.precision == "fp" or (m.precision == "bnn" and m.surrogate == surrogate)]


def pair_rows(ctx: RunContext, a: str, b: str, label: str, data: StudyImages, *, first: str = "") -> list[Row]:
    """Pair measures of the maps of models ``a`` and ``b`` on every image ``label`` explains; with ``first``
    (a seed check's pair), model ``a``'s maps of method ``first`` on those images against ``b``'s of
    ``label``."""
    ma, mb = ctx.folder.maps.read_all(a, first or label), ctx.folder.maps.read_all(b, label)
    if first and ma and mb:  # the method explains more images than its seed check: its first ones
        ma = {k: v[: mb["images"].size] for k, v in ma.items()}
    if not ma or not mb or not np.array_equal(ma["images"], mb["images"]):
        raise RunFolderError(f"maps of {a} ({first or label}) and {b} ({label}) cover different images; delete "
                             f"{ctx.folder.root / 'maps'} entries of one of them and rerun")
    n = ma["images"].size
    masks = None if data.masks is None else data.masks[:n]
    perm = similarity.shuffled_pairs(n, seed=ctx.config.data.seed) if n >= 2 else None
    grown = None if masks is None else localisation.dilate(masks, ctx.config.measures.mask_dilation)
    values = pair_values(torch.from_numpy(ma["maps"]), torch.from_numpy(mb["maps"]), top_k=ctx.config.measures.top_k,
                         masks=grown, perm=perm, tie_seed=ctx.config.data.seed)
    return to_rows(values, ma["images"], method=label, model=a, model_b=b)
