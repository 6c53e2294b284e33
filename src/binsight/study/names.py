"""Names shared by the study, the verdicts and the report, each spelled here once.

Model names: a model of a run is named by the own-model rule, :data:`binsight.models.factory.NAME_PATTERN`
(``[A-Za-z0-9][A-Za-z0-9_.-]*``, at most :data:`MAX_NAME` characters), and never holds ``..`` or ``+``
(a name is one path component of the run folder, :func:`validate_model_name`);
``BASE+SURROGATE`` names a BNN explained with another sign surrogate than its own (:func:`variant_name`),
``fp-N+matched`` an FP model trained to the accuracy of the BNN of its seed (:data:`MATCHED_FP`), and
:func:`is_variant` is the one answer to "is this a variant (no model of the default set)?". :data:`UNDEFINED` marks a
measure's undefined values in the table (``"spearman:undefined"``); :data:`FOREIGN_SURROGATE` is the
surrogate recorded for a BNN whose sign binsight cannot switch; :data:`PRECISIONS` are
:data:`binsight.models.PRECISIONS` (as readers write them: :data:`binsight.study.stats.PRECISION_NAMES`).
The chance-map labels are the names of :data:`binsight.study.measures.CHANCE_MAPS` (``chance_labels()``);
a method's seed check (its maps from a second starting draw) is stored under :func:`seed_check_label`.
"""

from __future__ import annotations

import re
from typing import Iterable

from binsight.models import PRECISIONS
from binsight.models.factory import NAME_PATTERN
from binsight.study.errors import RunFolderError

__all__ = ["PRECISIONS", "UNDEFINED", "FOREIGN_SURROGATE", "MAX_NAME", "VARIANT_SEP", "PREDICTED_SUFFIX",
           "MATCHED_FP", "SEED_CHECK_SUFFIX", "predicted_label", "seed_check_label", "validate_model_name",
           "variant_name", "split_variant", "is_variant", "check_unique_names"]

UNDEFINED = ":undefined"
"""Suffix of a measure's name for the count of its undefined values (``"MEASURE:undefined"`` rows of value 1)."""
FOREIGN_SURROGATE = "own"
"""The surrogate recorded for a BNN whose sign cannot be switched (not a binsight BNN)."""
MAX_NAME = 64
VARIANT_SEP = "+"
SEED_CHECK_SUFFIX = "-start1"
"""Suffix of the method label a seed check's maps and start-to-start pairs are stored under."""


def seed_check_label(method: str) -> str:
    """The label of ``method``'s seed check: its maps explained from the model's second starting draw
    (explainer option ``start=1``), e.g. ``"neuromask-start1"``."""
    return f"{method}{SEED_CHECK_SUFFIX}"


PREDICTED_SUFFIX = "@predicted"
"""Suffix of a method label for its maps of each model's predicted class (stage ``predicted``; the
verdicts' robustness row "each model explains its predicted class"), e.g. ``"gradient@predicted"``."""
MATCHED_FP = "matched"
"""The variant suffix of an accuracy-matched FP model: ``fp-0+matched`` (the verdicts' robustness row "FP
models matched to the BNNs' accuracy"; ``models.matched_fp``)."""


def predicted_label(method: str) -> str:
    """The method label of ``method``'s predicted-class maps (:data:`PREDICTED_SUFFIX`)."""
    return f"{method}{PREDICTED_SUFFIX}"


def validate_model_name(name: object) -> str:
    """``name`` if it is a safe model name: ``[A-Za-z0-9][A-Za-z0-9_.-]*``, at most 64 characters, no
    ``..``; raises :class:`RunFolderError` naming the problem otherwise. ``+`` is reserved for variants."""
    if not isinstance(name, str) or not name:
        raise RunFolderError(f"model name {name!r}: give a non-empty name of letters, digits, '_', '.' and '-'")
    if len(name) > MAX_NAME:
        raise RunFolderError(f"model name {name[:20]!r}...: {len(name)} characters, at most {MAX_NAME} allowed")
    if VARIANT_SEP in name:
        raise RunFolderError(f"model name {name!r}: '+' is reserved for surrogate variants (BASE+SURROGATE); "
                             "choose a name without it")
    if not NAME_PATTERN.fullmatch(name) or ".." in name:
        raise RunFolderError(f"model name {name!r}: use only letters, digits, '_', '.' and '-', starting with a letter "
                             "or digit (a name is never a path)")
    return name


def variant_name(base: str, surrogate: str) -> str:
    """The table name ``BASE+SURROGATE`` of model ``base`` explained with sign surrogate ``surrogate``."""
    validate_model_name(base)
    if not isinstance(surrogate, str) or not re.fullmatch(r"[a-z][a-z0-9_-]*", surrogate):
        raise RunFolderError(f"surrogate {surrogate!r}: expected a surrogate name such as 'ste' or 'approx'")
    return f"{base}{VARIANT_SEP}{surrogate}"


def split_variant(name: str) -> tuple[str, str]:
    """(base, surrogate) of a variant name; (name, "") for a plain model name. Validates both parts."""
    base, sep, surrogate = name.partition(VARIANT_SEP)
    if sep:
        return base, variant_name(base, surrogate)[len(base) + 1:]
    return validate_model_name(name), ""


def is_variant(name: str) -> bool:
    """Whether ``name`` is a surrogate variant (``BASE+SURROGATE``) rather than a model of the default set."""
    return VARIANT_SEP in name


def check_unique_names(names: Iterable[str]) -> list[str]:
    """The names (validated) if no two are equal, also ignoring case (they would share a file on a
    case-insensitive disk); raises :class:`RunFolderError` naming the clash otherwise."""
    seen: dict[str, tuple[int, str]] = {}
    out = []
    for i, name in enumerate(names):
        split_variant(name)
        key = name.casefold()
        if key in seen:
            j, other = seen[key]
            same = "the same name" if other == name else f"names equal but for case ({other!r})"
            raise RunFolderError(f"models {j + 1} and {i + 1} have {same} {name!r}; give every model a unique name "
                                 "(automatic names are PRECISION-POSITION, e.g. 'fp-1')")
        seen[key] = (i, name)
        out.append(name)
    return out
