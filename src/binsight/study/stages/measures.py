"""Stage ``measures``: degeneracy, noise, faithfulness, localisation and the chance test (with its controls)
of every map chunk not yet measured (one unit per model x method x chunk, as the maps). The parts of the
chance test that do not depend on the maps (the unstructured chance maps' scores, the model-ignorant
controls) are scored once per network and chunk and shared by every method's maps and every surrogate
variant (:class:`SharedChance`); the controls are tested on the first ``measures.control_images`` images."""

from __future__ import annotations

import numpy as np
import torch

from binsight.metrics import chance
from binsight.study.context import RunContext
from binsight.study.formats import Row, to_rows
from binsight.study.measures import CONTROL_MEASURES, faithfulness_scores, map_values
from binsight.study.plan import MethodSpec, StudyModel
from binsight.study.stages.maps import map_units


class MeasuresStage:
    name = "measures"

    def run(self, ctx: RunContext) -> None:
        data = ctx.images
        todo = [(m, spec, c, s) for m, spec, c, s in ctx.mine(map_units(ctx.plan, ctx.models))
                if not measured(ctx, m, spec, c)]
        todo.sort(key=lambda unit: network_of(unit[0]))  # a BNN's surrogate variants right after it (stable)
        shared = SharedChance()
        with ctx.progress(len(todo), "measures") as bar:
            for m, spec, c, s in todo:
                bar.set_postfix_str(f"{m.name} {spec.label}")
                stored = ctx.folder.maps.load(m.name, spec.label, c, images=data.indices[s])
                masks = None if data.masks is None else data.masks[s]
                with ctx.clock(f"measures/{spec.label}"):
                    rows = measure_chunk(ctx, m, spec, c, stored, data.images[s], masks, shared)
                ctx.folder.units.save("measures", (m.name, spec.label, c), rows)
                bar.update()


def measured(ctx: RunContext, model: StudyModel, spec: MethodSpec, chunk: int) -> bool:
    """Whether a chunk's measures are done: its rows stored and, with faithfulness, its curves too."""
    return (ctx.folder.units.done("measures", (model.name, spec.label, chunk))
            and (not ctx.config.measures.faithfulness or ctx.folder.curves.done(model.name, spec.label, chunk)))


def network_of(model: StudyModel) -> str:
    """The network a model's forward pass is: a surrogate variant's is its base BNN's (the surrogate
    changes only the backward pass the maps are made with)."""
    return model.base or model.name


class SharedChance:
    """The chance tests (:class:`binsight.metrics.chance.ChanceTest`) of the current network, one per chunk,
    each shared by every method's maps of that chunk whose targets are the same (a method that explains
    other targets gets a test of its own), and by a BNN's surrogate variants (the same forward pass:
    :func:`network_of`). Sharing changes no value: a fresh test per method gives exactly the same results;
    it only scores the maps-independent parts once. Tests of the previous network are dropped when the
    network changes (the stage's units run network by network)."""

    def __init__(self):
        self.model, self.tests = None, {}

    def test(self, ctx: RunContext, model: StudyModel, chunk: int, images: torch.Tensor, targets: torch.Tensor,
             masks: torch.Tensor | None) -> chance.ChanceTest:
        """The chance test of ``images`` (on ctx's device), ``targets`` and ``masks`` of ``chunk``."""
        if network_of(model) != self.model:
            self.model, self.tests = network_of(model), {}
        test = self.tests.get(chunk)
        if test is None or not torch.equal(test.targets, targets.cpu().long()):
            ms = ctx.config.measures
            test = chance.ChanceTest(model.module, images, targets, masks, n_chance=ms.chance_maps, seed=chunk,
                                     percentages=ms.road_percentages, dilation=ms.mask_dilation,
                                     batch_size=ctx.plan.batch_size)
            self.tests[chunk] = test
        return test


def measure_chunk(ctx: RunContext, model: StudyModel, spec: MethodSpec, chunk: int, stored: dict[str, np.ndarray],
                  images: torch.Tensor, masks: torch.Tensor | None, shared: SharedChance | None = None) -> list[Row]:
    """Rows of every single-map measure for one chunk; writes the chunk's deletion / insertion curves.
    ``shared``: the chance tests shared with the other methods' chunks (None: a test of its own)."""
    ms = ctx.config.measures
    maps, targets = torch.from_numpy(stored["maps"]), torch.from_numpy(stored["targets"])
    values = map_values(maps, masks, noise_measures=ms.noise, localisation=ms.localisation, dilation=ms.mask_dilation)
    if ms.faithfulness:
        values.update(faithfulness_values(ctx, model, spec.label, chunk, images, maps, targets))
    if "unsettled" in stored:  # the explainer's own measure of maps that did not settle (verdicts.guards)
        values["unsettled"] = stored["unsettled"].astype(np.float64)
    rows = to_rows(values, stored["images"], method=spec.label, model=model.name)
    tested = chance_positions(ctx, spec, chunk, len(stored["images"]))
    if tested.numel():
        test = (shared or SharedChance()).test(ctx, model, chunk, images[tested].to(ctx.device), targets[tested],
                                                None if masks is None else masks[tested])
        rows += to_rows(test.test(maps[tested]).table_values(), stored["images"][tested.numpy()], method=spec.label,
                        model=model.name, omit_undefined=True)
        controlled = control_count(ctx, chunk, len(tested))
        if controlled:
            rows += to_rows(control_values(test.head(controlled), maps[tested[:controlled]]),
                            stored["images"][tested[:controlled].numpy()], method=spec.label, model=model.name)
    return rows


def chance_positions(ctx: RunContext, spec: MethodSpec, chunk: int, n: int) -> torch.Tensor:
    """Positions within a chunk of ``n`` images whose maps get the chance test: methods in
    ``measures.chance_methods``, on the first ``measures.chance_images`` images of the study."""
    if not spec.chance_test:
        return torch.zeros(0, dtype=torch.long)
    first = chunk * ctx.plan.chunk_size
    limit = ctx.config.measures.chance_images or ctx.config.data.n_images
    return torch.arange(n)[torch.arange(first, first + n) < limit]


def control_count(ctx: RunContext, chunk: int, tested: int) -> int:
    """How many of a chunk's ``tested`` chance-tested maps (the first ones) also get their controls tested:
    those among the first ``measures.control_images`` images of the study (none without
    ``measures.chance_controls``)."""
    ms = ctx.config.measures
    if not ms.chance_controls:
        return 0
    first = chunk * ctx.plan.chunk_size
    limit = ms.control_images or ms.chance_images or ctx.config.data.n_images
    return int(min(tested, max(0, limit - first)))


def control_values(test: chance.ChanceTest, maps: torch.Tensor) -> dict[str, np.ndarray]:
    """The chance test of each control of ``maps`` (:data:`binsight.study.measures.CONTROL_MEASURES`: 1 where
    the control was flagged nonsensical, 0 where not); the map's own test (``nonsensical``,
    ``not_better_chance``, ``chance_p_M``, ``chance_fraction_M``: :meth:`ChanceResult.table_values`) is
    written beside it by :func:`measure_chunk`."""
    return {CONTROL_MEASURES[name]: result.nonsensical.astype(np.float64) for name, result in test.controls(maps).items()}


def faithfulness_values(ctx: RunContext, model: StudyModel, label: str, chunk: int, images: torch.Tensor,
                        maps: torch.Tensor, targets: torch.Tensor) -> dict[str, np.ndarray]:
    """Deletion / insertion areas onto black (reference) and onto a blurred copy (curves saved to
    curves/), and ROAD most- and least-relevant-first (:func:`binsight.study.measures.faithfulness_scores`,
    tied pixels read as a group, ROAD's noise seeded by the chunk)."""
    ms = ctx.config.measures
    curves, values = faithfulness_scores(model.module, images.to(ctx.device), maps.to(ctx.device),
                                         targets.to(ctx.device), steps=ms.curve_steps,
                                         percentages=ms.road_percentages, batch_size=ctx.plan.batch_size, seed=chunk)
    ctx.folder.curves.save(model.name, label, chunk, fractions=curves["blur"].fractions,
                           deletion=curves["blur"].deletion, insertion=curves["blur"].insertion,
                           deletion_black=curves["black"].deletion, insertion_black=curves["black"].insertion)
    return values
