"""Stage ``evidence``: on planted data, what each base model provably relies on, recorded before any map.

Only on a planted dataset (``data.name`` one of :data:`binsight.data.planted.SCENARIOS`: the scenario,
"shortcut" or "decoy", comes from the name); on any other dataset the stage does nothing.

1. The intervention test (:func:`binsight.metrics.evidence.intervention_test`) of every base model on the
   split the study draws from (every image of it, or ``models.test_subset`` images drawn with seed 0, as
   the models' accuracy), the swapped-in classes seeded by ``data.seed``. The results go to
   interventions.json (model name -> :class:`~binsight.metrics.evidence.InterventionResult`); a model
   already recorded there is not tested again, so a continued run computes nothing twice.
2. A warning per model that did not pass its scenario's test, naming the model, the scenario and the
   checks that failed: its maps have no known answer and the evidence verdict leaves it out.
3. One unit of rows per base model (``units/evidence/MODEL.csv``), per explained image: what the
   evidence verdict (:mod:`binsight.study.verdicts.evidence`) reads beside the localisation rows
   (``energy_inside``, ``pointing_game`` on the planted window grown by ``measures.mask_dilation``):

   - ``intervention_passed``: 1 if the model passed its test, else 0 (the same on every image);
   - ``pattern_relevant``: 1 on the shortcut (the window is the evidence the model uses), 0 on the decoy
     (the window is an irrelevant pattern the model ignores);
   - ``evidence_area``: the region's share of the image (what a map spreading its mass evenly puts on it,
     and the chance of winning the pointing game with a maximum placed at random);
   - ``edge_energy_inside``, ``edge_pointing_game``: the same measures of the edge map of the image
     (:func:`binsight.metrics.evidence.edge_map`), a map that ignores the model but finds a bright
     pattern on a dark background: the floor a map must beat to show it follows the model.
"""

from __future__ import annotations

import warnings

import numpy as np
import torch

from binsight._utils import BinsightWarning
from binsight.data import planted
from binsight.metrics import evidence as ev
from binsight.study.context import RunContext
from binsight.study.formats import Row, to_rows
from binsight.study.plan import StudyModel
from binsight.study.stages.images import dataset

INTERVENTIONS = "interventions.json"


class EvidenceStage:
    """Records each base model's intervention test and the evidence rows (module docs)."""

    name = "evidence"

    def run(self, ctx: RunContext) -> None:
        scenario = planted.SCENARIOS.get(ctx.config.data.name)
        if scenario is None:
            return
        if ctx.main:
            record_interventions(ctx, scenario)
        ctx.sync()
        results = ctx.folder.records.read_interventions() or {}
        if ctx.main:
            warn_failed(ctx.base, results)
        for m in ctx.mine(ctx.base):
            if not ctx.folder.units.done("evidence", m.name):
                ctx.folder.units.save("evidence", m.name, evidence_rows(ctx, m, results[m.name]))


def record_interventions(ctx: RunContext, scenario: str) -> None:
    """Test the base models interventions.json lacks, and write it with every base model's result."""
    results = ctx.folder.records.read_interventions() or {}
    todo = [m for m in ctx.base if m.name not in results]
    if not todo:
        return
    data = intervention_images(ctx)
    for m in todo:
        results[m.name] = ev.intervention_test(m.module, data.images, data.labels, data.masks, scenario,
                                               seed=ctx.config.data.seed, batch_size=ctx.plan.batch_size)
    ctx.folder.records.write_interventions({m.name: results[m.name] for m in ctx.base})


def intervention_images(ctx: RunContext):
    """The split the study draws from, with its planted windows: every image, or ``models.test_subset``
    of them (drawn with seed 0, the images the models' accuracy is measured on)."""
    ds = dataset(ctx.plan.images)
    subset = ctx.config.models.test_subset
    return ds.subset(subset, seed=0) if 0 < subset < len(ds) else ds


def failed_checks(result: ev.InterventionResult) -> str:
    """The checks of ``result`` that did not hold, in words (e.g. "follows_swap 0.412 (bound above 0.9): not held")."""
    return "; ".join(f"{c.name} {c.estimate:.3f} [{c.low:.3f}, {c.high:.3f}] (must be {'below' if c.below else 'above'} "
                     f"{c.bound:g}): {c.status}" for c in result.checks if c.status != "held")


def warn_failed(models: list[StudyModel], results: dict[str, ev.InterventionResult]) -> None:
    """One warning per base model that did not pass its scenario's intervention test."""
    for m in models:
        result = results.get(m.name)
        if result is not None and not result.passed:
            warnings.warn(f"model {m.name!r} did not pass the {result.scenario} intervention test ({result.status} on "
                          f"{result.n_images} images: {failed_checks(result)}): its maps have no known answer and the "
                          "evidence verdict leaves it out (interventions.json)", BinsightWarning, stacklevel=2)


def evidence_rows(ctx: RunContext, model: StudyModel, result: ev.InterventionResult) -> list[Row]:
    """The evidence rows of ``model`` on the explained images (module docs)."""
    data = ctx.images
    values = evidence_values(result, data.images, data.masks, dilation=ctx.config.measures.mask_dilation)
    return to_rows(values, data.indices, method="", model=model.name)


def evidence_values(result: ev.InterventionResult, images: torch.Tensor, masks: torch.Tensor, *,
                    dilation: int) -> dict[str, np.ndarray]:
    """Measure -> (N,) values of one model's evidence rows (module docs) on ``images`` (N, C, H, W) and
    their planted windows ``masks`` (bool (N, 1, H, W)), the region grown by ``dilation`` pixels."""
    edge = ev.evidence(ev.edge_map(images), masks, dilation=dilation)
    n = len(images)
    return {"intervention_passed": np.full(n, float(result.passed)),
            "pattern_relevant": np.full(n, float(result.scenario == "shortcut")),
            "evidence_area": edge.area, "edge_energy_inside": edge.mass, "edge_pointing_game": edge.pointing}
