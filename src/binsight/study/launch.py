"""The two steps before a run's stages, each explicit: joining the job's process group and claiming the
run folder.

Several processes (``torchrun --nproc-per-node K -m binsight study ...``): :func:`join_processes` sets up
the process group (a single process sets up nothing) and :func:`claim_folder` lets rank 0 claim the folder
(:meth:`RunFolder.create`, holding its lock) while the other ranks learn whether it could (a broadcast
status) and join it, or stop with an error when it could not.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from binsight import distributed
from binsight.errors import BinsightError
from binsight.study.plan import StudyPlan
from binsight.study.store import RunFolder, RunFolderError


@dataclass
class ProcessGroup:
    """This process's place in the job: the device it computes on, its rank of ``ranks``, and whether it
    set the process group up (and so leaves it, :meth:`leave`)."""

    device: torch.device
    rank: int
    ranks: int
    started: bool

    def leave(self) -> None:
        """Leave the process group this process set up (nothing otherwise; done once)."""
        if self.started:
            distributed.cleanup()
            self.started = False


def join_processes(plan: StudyPlan) -> ProcessGroup:
    """Join the process group of a torchrun job (each rank on its own GPU for a bare "cuda"); in a single
    process, the plan's device and nothing set up."""
    started = distributed.launched() and not distributed.is_distributed()
    device = torch.device(distributed.init(plan.config.run.device) if distributed.launched() else plan.device)
    return ProcessGroup(device, distributed.rank(), distributed.world_size(), started)


def claim_folder(plan: StudyPlan, out: str | Path, group: ProcessGroup) -> RunFolder:
    """Rank 0 claims ``out`` for the plan's configuration; the other ranks join it once rank 0 could
    (else every rank raises: rank 0 its own error, the others a :class:`RunFolderError` saying so)."""
    if group.ranks == 1:
        return RunFolder.create(out, plan.config, hash_=plan.hash)
    folder, error = None, None
    if group.rank == 0:
        try:
            folder = RunFolder.create(out, plan.config, hash_=plan.hash)
        except BinsightError as e:
            error = e
    if distributed.broadcast_int(0 if error is None and group.rank == 0 else 1) != 0:
        if error is not None:
            raise error
        raise RunFolderError(f"rank 0 could not claim {out} (its message says why); nothing was run")
    return folder if folder is not None else RunFolder.open_for_rank(out, plan.config, hash_=plan.hash)
