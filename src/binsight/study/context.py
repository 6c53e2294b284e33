"""What the stages of one run share: the plan, the claimed folder, this process's place in the job, the
images and models as the stages produce them, and the run's timings.

Several processes (torchrun): the units of every stage, in a fixed order, go to ranks in turn
(:meth:`RunContext.mine`: unit i to rank i % K); every rank skips its units already done; all ranks wait
for each other after every stage (:meth:`RunContext.sync`); rank 0 alone (:attr:`RunContext.main`) writes
the shared files. A single process sets up nothing.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from binsight import distributed
from binsight.study.passes import KINDS, PassCounter
from binsight.study.plan import StudyModel, StudyPlan
from binsight.study.records import ImageSet, Timings
from binsight.study.store import RunFolder


@dataclass
class StudyImages:
    """The explained images: dataset indices (n,), images (n, C, H, W) in [0, 1], labels (n,), masks
    (n, 1, H, W) or None, class names, and their record (images.json)."""

    indices: np.ndarray
    images: torch.Tensor
    labels: torch.Tensor
    masks: torch.Tensor | None
    classes: list[str]
    record: ImageSet | None = None


@dataclass
class RunContext:
    """The shared state of one run. ``device``: where this process computes; ``rank`` of ``ranks``
    processes. ``images`` (set by the images stage), ``base`` (the base models) and ``models`` (with the
    surrogate variants; set by the models stage), ``verdicts`` (set by the verdicts stage on rank 0)."""

    plan: StudyPlan
    folder: RunFolder
    device: torch.device
    rank: int = 0
    ranks: int = 1
    images: StudyImages | None = None
    base: list[StudyModel] = field(default_factory=list)
    models: list[StudyModel] = field(default_factory=list)
    verdicts: Any = None
    timings: Timings = field(default_factory=Timings)
    _earlier: Timings | None = field(default=None, repr=False)

    @property
    def config(self):
        """The run's :class:`~binsight.study.config.StudyConfig` (as the plan resolved it)."""
        return self.plan.config

    @property
    def main(self) -> bool:
        """Whether this process writes the run's shared files (rank 0, or the only process)."""
        return self.rank == 0

    def mine(self, units: Sequence[Any]) -> list[Any]:
        """This rank's share of a stage's units (in their fixed order, unit i to rank i % K)."""
        return list(units[self.rank::self.ranks])

    def sync(self) -> None:
        """Wait for every rank (after a stage); nothing in a single process."""
        distributed.barrier()

    # -- progress and timings --------------------------------------------------------------------------
    @property
    def shows_progress(self) -> bool:
        """Progress bars on: ``run.progress``, and this is rank 0 (several ranks' bars on one terminal garble)."""
        return self.config.run.progress and self.rank == 0

    def progress(self, total: int, desc: str) -> tqdm:
        """A bar of this process's ``total`` units (under torchrun: rank 0's share, said in the label)."""
        label = desc if self.ranks == 1 else f"{desc} (process 1 of {self.ranks}, its share)"
        return tqdm(total=total, desc=label, unit="unit", disable=not self.shows_progress, leave=False)

    @contextlib.contextmanager
    def stage(self, name: str) -> Iterator[None]:
        """Time a stage: wall seconds and this process's CPU seconds, accumulated and saved to timings.json
        (on a shared machine CPU time tells the work apart from the waiting), and count the images its models
        saw, summed over the ranks (:mod:`binsight.study.passes`; a stage that raised is not counted)."""
        start, cpu = time.perf_counter(), time.process_time()
        try:
            with PassCounter() as counter:
                yield
            self.timings.add_passes(name, dict(zip(KINDS, distributed.sum_over_ranks([counter.counts[k] for k in KINDS]))))
        finally:
            self.timings.add_stage(name, time.perf_counter() - start, time.process_time() - cpu)
            self.save_timings()

    @contextlib.contextmanager
    def clock(self, name: str) -> Iterator[None]:
        """Accumulate this process's CPU seconds of the body under ``name`` (timings.json's ``cpu_by_method``)."""
        start = time.process_time()
        try:
            yield
        finally:
            self.timings.add_method_cpu(name, time.process_time() - start)

    def save_timings(self) -> None:
        """timings.json (rank 0): this invocation's stages and the earlier invocations' (read once)."""
        if not self.main:
            return
        if self._earlier is None:
            self._earlier = self.folder.records.read_timings() or Timings()
            self.timings.continued(self._earlier)
        self.timings.ranks = self.ranks
        self.folder.records.write_timings(self.timings)
