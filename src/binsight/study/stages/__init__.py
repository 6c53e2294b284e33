"""The study's stages, in the order the runner runs them; each a small object with one job over the run's
shared :class:`~binsight.study.context.RunContext`: ``name`` (its key in timings.json) and ``run(ctx)``.

A stage's work is a list of units in a fixed order; a unit whose output is already in the run folder is
skipped (so a stopped run continues where it stopped), and under torchrun the units go to the ranks in
turn (:meth:`~binsight.study.context.RunContext.mine`). Units are computed with fixed seeds (a seeded
explainer gets the chunk's index, chance maps and ROAD too), so a unit recomputed after a stop gives the
same numbers as it would have the first time.
"""

from binsight.study.stages.evidence import EvidenceStage
from binsight.study.stages.images import ImagesStage
from binsight.study.stages.maps import MapsStage
from binsight.study.stages.matched import MatchedStage
from binsight.study.stages.measures import MeasuresStage
from binsight.study.stages.models import ModelsStage
from binsight.study.stages.pairs import PairsStage
from binsight.study.stages.predicted import PredictedStage
from binsight.study.stages.predictions import PredictionsStage
from binsight.study.stages.sanity import SanityStage
from binsight.study.stages.verdicts import VerdictsStage

STAGES = (ImagesStage(), ModelsStage(), MatchedStage(), EvidenceStage(), PredictionsStage(), MapsStage(),
          MeasuresStage(), PairsStage(), PredictedStage(), SanityStage(), VerdictsStage())
"""Every stage of a study, in order: images -> models -> matched (accuracy-matched FP models, opt-in) ->
evidence (planted data only) -> predictions -> maps -> measures -> pairs -> predicted (predicted-class maps
of the misclassified images) -> sanity -> verdicts."""

__all__ = ["STAGES", "ImagesStage", "ModelsStage", "MatchedStage", "EvidenceStage", "PredictionsStage", "MapsStage",
           "MeasuresStage", "PairsStage", "PredictedStage", "SanityStage", "VerdictsStage"]
