"""Stage ``maps``: the maps of every model x method x chunk not yet in maps/.

Base models get every method; surrogate variants only the methods in the robustness check; the chance
maps ("explained" by :data:`binsight.study.measures.CHANCE_MAPS`) only the base models. The runner knows
no method by name: it loops over the plan's method labels (:class:`~binsight.study.plan.MethodSpec`).

A method whose table sets ``seed_check_images`` (NeuroMask's, by default) also has a seed check: every base
model explains the method's first ``seed_check_images`` images again from its next starting draw (the
explainer's ``start`` option plus one; same chunks, so the same seeds and image positions), stored under
:func:`~binsight.study.names.seed_check_label` (``neuromask-start1``). Only the pairs stage reads these maps
(each model's start-to-start similarity); no single-map measure is taken of them.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch

import binsight.explain as explain_registry
from binsight.errors import BinsightError
from binsight.study.config import ConfigError, surrogate_names
from binsight.study.context import RunContext
from binsight.study.formats import iter_chunks
from binsight.study.measures import CHANCE_MAPS
from binsight.study.names import seed_check_label
from binsight.study.plan import MethodSpec, StudyModel, StudyPlan

MapUnit = tuple[StudyModel, MethodSpec, int, slice]
"""(model, method, chunk index, positions of the chunk's images among the study's)."""


class MapsStage:
    name = "maps"

    def run(self, ctx: RunContext) -> None:
        data = ctx.images
        units = map_units(ctx.plan, ctx.models) + seed_check_units(ctx.plan, ctx.models)
        todo = [u for u in ctx.mine(units)
                if not ctx.folder.maps.done(u[0].name, u[1].label, u[2], images=data.indices[u[3]])]
        with ctx.progress(len(todo), "maps") as bar:
            for m, spec, c, s in todo:
                bar.set_postfix_str(f"{m.name} {spec.label}")
                with ctx.clock(f"maps/{spec.label}"):
                    maps, targets, extras = explain(ctx, m, spec, data.images[s].to(ctx.device), data.labels[s],
                                                    chunk=c)
                unsettled = unsettled_flags(extras, len(maps))
                ctx.folder.maps.save(m.name, spec.label, c, maps=maps.cpu().numpy().astype(np.float32),
                                     targets=targets.cpu().numpy().astype(np.int64), images=data.indices[s].astype(np.int64),
                                     **({} if unsettled is None else {"unsettled": unsettled}))
                bar.update()


def map_units(plan: StudyPlan, models: Sequence[StudyModel]) -> list[MapUnit]:
    """(model, method, chunk, positions): base models get every method; surrogate variants only the
    methods in the robustness check."""
    units = []
    for m in models:
        for spec in plan.methods:
            if m.is_variant and not spec.robustness:
                continue
            units += [(m, spec, c, s) for c, s in iter_chunks(spec.n_images, plan.chunk_size)]
    return units


def seed_check_specs(plan: StudyPlan) -> list[tuple[MethodSpec, MethodSpec]]:
    """(method, its seed check) for each method whose table sets ``seed_check_images``: the seed check is
    the method's explainer and options from the next starting draw (``start`` + 1) on its first
    ``seed_check_images`` images, labelled :func:`~binsight.study.names.seed_check_label`."""
    out = []
    for spec in plan.methods:
        n = 0 if spec.chance else plan.config.methods.table(spec.label).seed_check_images
        if n and spec.label in plan.config.methods.run:
            options = {**spec.options, "start": int(spec.options.get("start", 0)) + 1}
            out.append((spec, MethodSpec(seed_check_label(spec.label), spec.explainer, options,
                                         min(n, spec.n_images), spec.seeded)))
    return out


def seed_check_units(plan: StudyPlan, models: Sequence[StudyModel]) -> list[MapUnit]:
    """(model, seed check, chunk, positions) of every base model (no surrogate variant) and seed check."""
    return [(m, check, c, s) for _, check in seed_check_specs(plan) for m in models if not m.is_variant
            for c, s in iter_chunks(check.n_images, plan.chunk_size)]


def explain(ctx: RunContext, model: StudyModel, spec: MethodSpec, x: torch.Tensor, labels: torch.Tensor, chunk: int,
            options: dict[str, Any] | None = None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """(maps (n, 1, H, W), targets (n,), the explainer's extras ({} for chance maps)) of ``spec`` for
    images ``x``: the true labels explained by default (``methods.target``), else each model's predicted
    class."""
    targets = labels.to(x.device) if ctx.config.methods.target == "label" else None
    if spec.chance:
        with torch.no_grad():
            targets = model.module(x).argmax(1) if targets is None else targets
        seed = ctx.config.data.seed * 100_003 + chunk
        maps = CHANCE_MAPS.get(spec.label)((x.shape[0], 1, x.shape[2], x.shape[3]), seed)
        return maps.to(x.device), targets, {}
    explanation = create_explainer(spec, model, chunk=chunk, batch_size=ctx.plan.batch_size,
                                   options=options).explain(x, targets)
    return explanation.maps, explanation.targets, explanation.extras


def unsettled_flags(extras: dict, n: int) -> np.ndarray | None:
    """(n,) float64 1 / 0 from an explanation's extras (``near_start`` or ``unconverged``), None without."""
    for key in ("near_start", "unconverged"):
        value = extras.get(key)
        if value is not None:
            return np.asarray(value.cpu() if hasattr(value, "cpu") else value, dtype=np.float64).reshape(n)
    return None


def create_explainer(spec: MethodSpec, model: StudyModel, *, chunk: int, batch_size: int,
                     options: dict[str, Any] | None = None):
    """The registered explainer of ``spec`` for ``model``: the method's options (or ``options``), the
    model's surrogate, ``batch_size`` and, for a seeded explainer, the chunk's index as seed. An option
    the explainer refuses is a :class:`ConfigError` naming the method's table."""
    kwargs = dict(spec.options if options is None else options)
    kwargs["batch_size"] = batch_size
    if model.surrogate in surrogate_names():  # binsight's surrogates; a foreign BNN's own one is left as it is
        kwargs["surrogate"] = model.surrogate
    if spec.seeded:
        kwargs["seed"] = chunk
    try:
        return explain_registry.get_explainer(spec.explainer, model.module, **kwargs)
    except ConfigError:
        raise
    except BinsightError as e:
        raise ConfigError(f"methods.{spec.label}: {e}") from None


def check_explainers(plan: StudyPlan, models: Sequence[StudyModel]) -> None:
    """Build every method's explainer once for each model before any map is computed, so that an option
    an explainer refuses (e.g. a GradCAM layer a model lacks) is reported before hours of work."""
    for spec in plan.methods:
        if not spec.chance:
            for m in models:
                create_explainer(spec, m, chunk=0, batch_size=plan.batch_size)
