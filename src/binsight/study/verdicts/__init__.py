"""The verdicts on the paper's findings, decided from two-level bootstrap intervals (see docs/verdicts.md).

Input: the tidy rows of a study and its models (:class:`ModelInfo`). Every estimate is a mean over models
and images with an interval from :mod:`binsight.study.stats` (models resampled within each precision,
then images); every difference is computed from the same draws as its terms. A comparison's status comes
from where its interval lies against a bound; a part combines its comparisons, a verdict its parts
(:func:`combine`). Which method each verdict is about is a setting (:class:`VerdictSettings`), so that
no method is named here.

1. Similarity (Gradient): FP-vs-BNN against FP-vs-FP, BNN-vs-BNN and the image-shuffled chance level,
   per similarity measure (and inside the object where measured); a reading per measure.
2. Noise (SmoothGrad): BNN minus FP noise, relative to FP noise, per noise measure; a convergence check
   with more samples says whether the difference is Monte Carlo noise.
3. GradCAM: FP-vs-BNN below GradCAM's own within-precision baselines; BNN maps below chance more often
   than FP maps (degenerate maps counted apart).
4. Faithfulness (NeuroMask): better than every other method on measures that do not use its own
   perturbation (ROAD, deletion / insertion onto blur); against the chance maps as a check.

Each verdict is recomputed under every explanation surrogate of the BNNs, every single measure, and half
and twice the margins; a verdict whose status changes under one of them is fragile.

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
