"""The study: a plan, the explicit steps that start a run, then its stages in order.

:func:`run_study` is the whole of it: the configuration resolved once (:func:`binsight.study.plan.make_plan`),
the process group joined and the run folder claimed (:func:`open_run`, :mod:`binsight.study.launch`), then
every stage of :data:`binsight.study.stages.STAGES` over one shared
:class:`~binsight.study.context.RunContext` (:func:`run_stages`): data -> models -> predictions -> maps ->
measures -> pairs -> sanity -> verdicts. The report is built from the finished folder by the layer above
(``binsight.report``, called by the command line), so that the study never imports the report.

Every stage is a list of work units; a unit whose output file exists in the run folder is skipped, so a
stopped run continues where it stopped (see :mod:`binsight.study.store`). Under torchrun the units go to
the ranks in turn, all ranks wait for each other after every stage, and rank 0 alone writes the shared
files (models.json, measurements.csv, verdicts.json, timings.json); seeds depend on the unit only, so the
results do not depend on the number of processes.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

import torch

from binsight._utils import preserved_model
from binsight.study.config import StudyConfig, load_config
from binsight.study.context import RunContext
from binsight.study.launch import claim_folder, join_processes
from binsight.study.plan import StudyPlan, make_plan
from binsight.study.stages import STAGES
from binsight.study.verdicts import StudyVerdicts

__all__ = ["run_study", "open_run", "run_stages"]


def run_study(config: StudyConfig | str | Path | None, out: str | Path, *,
              models: Sequence[Any] = ()) -> StudyVerdicts | None:
    """Run (or continue) a study, e.g. from a notebook on models the caller holds; returns its verdicts
    (None on a torchrun rank other than 0; verdicts.json holds them too).

    config: a :class:`StudyConfig`, a TOML file or None (the default study). models: each a
    :class:`binsight.models.factory.ModelSpec` (built by its factory) or ``(module, spec)`` for a module
    already built (prepared by :func:`binsight.models.factory.model_from_module`); with models given (or
    ``[[models.own]]`` tables) nothing is trained. Every given module is left as it was (mode, weights,
    hooks, attributes). The report is built from ``out`` by ``binsight report``.
    """
    if not isinstance(config, StudyConfig):
        config = load_config(config)
    with contextlib.ExitStack() as stack:
        for item in models:
            if isinstance(item, tuple):
                stack.enter_context(preserved_model(item[0]))
        plan = make_plan(config, models=models)
        with open_run(plan, out) as ctx:
            return run_stages(ctx)


@contextlib.contextmanager
def open_run(plan: StudyPlan, out: str | Path) -> Iterator[RunContext]:
    """``with open_run(plan, out) as ctx:`` -- join the process group, claim ``out`` (holding its lock),
    set ``run.threads``; on exit release the lock and leave the group this call set up."""
    group = join_processes(plan)
    try:
        folder = claim_folder(plan, out, group)
        try:
            if plan.config.run.threads:
                torch.set_num_threads(plan.config.run.threads)
            yield RunContext(plan, folder, group.device, group.rank, group.ranks)
        finally:
            folder.close()
    finally:
        group.leave()


def run_stages(ctx: RunContext, stages: Sequence[Any] = STAGES) -> StudyVerdicts | None:
    """Record this invocation (run.json), run ``stages`` in order (each timed, every rank waiting for
    the others after each), save timings.json; the verdicts on rank 0, None on the others."""
    started = time.perf_counter()
    if ctx.main:
        ctx.folder.record_provenance(ctx.device)
    for stage in stages:
        with ctx.stage(stage.name):
            stage.run(ctx)
            ctx.sync()
    ctx.timings.stages["total_this_run"] = time.perf_counter() - started
    ctx.timings.cpu["total_this_run"] = sum(ctx.timings.cpu.values())
    ctx.save_timings()
    return ctx.verdicts if ctx.main else None
