"""The verdicts on the paper's findings, decided from calibrated intervals (see docs/verdicts.md).

Input: the tidy rows of a study and its models (:class:`ModelInfo`). Every mean, difference and ratio gets
the crossed models-by-images t-interval of :mod:`binsight.study.inference` (computed on deletion rows
through the weighted means of :mod:`binsight.study.stats`; its variance split into models, images and
residual is kept with the estimate), every share of maps an exact interval clustered by model. A
comparison's status comes from where its interval lies against a bound; a part combines its comparisons,
a verdict its primary parts (:func:`combine`), then Holm's correction across the four findings' primary
tests. Which method each verdict is about, and its primary measure, are settings (:class:`VerdictSettings`),
so that no method is named here.

1. Similarity (Gradient): the scale-free reading per similarity measure (and inside the object where
   measured): FP-vs-BNN agreement beyond chance over the seed baselines' (each kind against its own
   image-shuffled chance level): alike, differ, not reproducible or inconclusive.
2. Noise (SmoothGrad): BNN minus FP noise, relative to FP noise, per noise measure (of the values and of the
   within-map ranks); a convergence check extrapolates the difference to infinitely many samples.
3. GradCAM: the reading of 1 with GradCAM's own baselines, claiming "differ"; BNN maps nonsensical (not
   better than chance, or degenerate) more often than FP maps, decided only when the planted controls
   behaved.
4. Faithfulness (NeuroMask): better than every other method on measures that do not use its own
   perturbation (ROAD, deletion / insertion onto blur), degenerate maps left out and counted, FP and BNN
   also apart; against the chance maps as a check.

Each verdict is recomputed under every explanation surrogate of the BNNs, every single measure, and half
and twice the margins; a verdict whose status changes under one of them (a secondary measure alone
excepted) is fragile.

Where things are: :mod:`~binsight.study.verdicts.records` (statuses, parts, verdicts, verdicts.json),
:mod:`~binsight.study.verdicts.settings` (:class:`VerdictSettings`), :mod:`~binsight.study.verdicts.table`
(the rows as vectors, one model set's :class:`Context`), :mod:`~binsight.study.verdicts.rules` (statuses
from intervals and bounds), one module per finding (:mod:`~binsight.study.verdicts.similarity`,
:mod:`~binsight.study.verdicts.noise`, :mod:`~binsight.study.verdicts.gradcam`,
:mod:`~binsight.study.verdicts.faithfulness`: its ``FINDING`` and one function ``Context -> Verdict``),
:mod:`~binsight.study.verdicts.robustness`, :mod:`~binsight.study.verdicts.summary` (per-pair values,
predictions, undefined counts) and :mod:`~binsight.study.verdicts.compute` (:data:`VERDICTS`, the list of
findings, and :func:`compute_verdicts`). A new verdict is a module with its finding and function, and one
line in :data:`VERDICTS`. Every name below is importable from ``binsight.study.verdicts``.
"""

from binsight.study.names import PRECISIONS, UNDEFINED
from binsight.study.stats import Estimate
from binsight.study.verdicts.compute import FINDINGS, VERDICTS, check_models, compute_verdicts
from binsight.study.verdicts.faithfulness import faithfulness_part, method_difference, other_methods, verdict_faithfulness
from binsight.study.verdicts.gradcam import nonsensical_part, nonsensical_rates, verdict_gradcam
from binsight.study.verdicts.noise import convergence_check, noise_difference, noise_part, verdict_noise
from binsight.study.verdicts.records import (ALIKE, CANNOT_TELL, DIFFER, HELD, INCONCLUSIVE, MODEL_PROPERTY, MONTE_CARLO,
                                             NOT_HELD, NOT_MEASURED, PARTLY_HELD, UNDECIDED, NOT_REPRODUCIBLE, ModelInfo,
                                             PairAgreement, PairValue, Part, Predictions, Robustness, Status,
                                             StudyVerdicts, UndefinedCount, Verdict, VerdictError)
from binsight.study.verdicts.robustness import alternatives, with_robustness
from binsight.study.verdicts.rules import at_least, combine, comparison, conjunction, invert, make_verdict, reading_of
from binsight.study.verdicts.settings import VerdictSettings
from binsight.study.verdicts.similarity import similarity_estimates, similarity_part, similarity_parts
from binsight.study.verdicts.summary import per_pair_values, predictions, undefined_counts
from binsight.study.verdicts.table import Context, Table

__all__ = [
    "Estimate", "FINDINGS", "VERDICTS", "check_models", "compute_verdicts", "faithfulness_part",
    "method_difference", "other_methods", "verdict_faithfulness", "nonsensical_part", "nonsensical_rates", "verdict_gradcam",
    "convergence_check", "noise_difference", "noise_part", "verdict_noise", "ALIKE", "CANNOT_TELL", "DIFFER",
    "HELD", "INCONCLUSIVE", "MODEL_PROPERTY", "MONTE_CARLO", "NOT_HELD", "NOT_MEASURED", "PARTLY_HELD",
    "PRECISIONS", "UNDECIDED", "UNDEFINED", "NOT_REPRODUCIBLE", "ModelInfo", "PairAgreement", "PairValue", "Part",
    "Predictions", "Robustness", "Status", "StudyVerdicts", "UndefinedCount", "Verdict", "VerdictError",
    "alternatives", "with_robustness", "at_least", "combine", "comparison", "conjunction", "invert", "make_verdict",
    "reading_of", "VerdictSettings", "similarity_estimates", "similarity_part", "similarity_parts",
    "per_pair_values", "predictions", "undefined_counts", "Context", "Table",
]
