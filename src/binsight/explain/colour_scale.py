"""The colour scale a saliency map is drawn on (its colour map and range of raw values), and the text drawn
beside it.

One rule for every picture binsight draws (``binsight explain`` overlays and the report's figures):

* a signed map (values of both signs carry meaning) uses the diverging map ``RdBu_r`` centred at 0
  (``vmin = -vmax``, ``vmax`` the largest magnitude): red positive, blue negative, white 0;
* an unsigned map uses ``inferno`` from 0 (or its minimum, when a value is below 0) to its maximum;
* a scale of zero width (all-zero or empty maps) is widened to 1.

Several maps drawn on one scale (:func:`scale_of` of all of them) can be compared by eye. Whether maps are
drawn signed is the caller's choice (an explainer's ``signed`` option) or, for maps whose method is not
known, :func:`has_negative`.

Text: every title and label a picture shows goes through :func:`plain_text`, so that a name holding ``$``
(a file, class or model name) is drawn as written, never read as matplotlib's math (which draws ``$x$`` in
italics and fails on an odd pair such as ``a$b$c`` beside other text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

NEGATIVE_TOLERANCE = 1e-6
"""A value counts as negative (:func:`has_negative`) below ``-NEGATIVE_TOLERANCE`` times the largest magnitude."""


@dataclass(frozen=True)
class Scale:
    """The colour scale of a map: raw values ``vmin`` .. ``vmax``; ``signed`` maps are centred at 0."""

    vmin: float
    vmax: float
    signed: bool

    @property
    def cmap(self) -> str:
        return "RdBu_r" if self.signed else "inferno"


def _finite_values(maps: Sequence[np.ndarray]) -> np.ndarray:
    """Every finite value of ``maps`` in one flat array ([0] when there is none)."""
    finite = [m[np.isfinite(m)].ravel() for m in maps]
    values = np.concatenate(finite) if finite else np.zeros(1)
    return values if values.size else np.zeros(1)


def scale_of(maps: Sequence[np.ndarray], *, signed: bool) -> Scale:
    """One scale covering every map in ``maps`` (float arrays (H, W); NaN and infinite values ignored):
    symmetric about 0 when ``signed``, else 0 .. max (or min .. max when a value is below 0)."""
    values = _finite_values(maps)
    if signed:
        top = float(np.abs(values).max()) or 1.0
        return Scale(-top, top, True)
    low, high = min(0.0, float(values.min())), float(values.max())
    return Scale(low, high if high > low else low + 1.0, False)


def has_negative(maps: Sequence[np.ndarray]) -> bool:
    """Whether any finite value of ``maps`` lies below 0 by more than float noise
    (:data:`NEGATIVE_TOLERANCE` of the largest magnitude): such maps are drawn signed."""
    values = _finite_values(maps)
    low, high = float(values.min()), float(values.max())
    return low < -NEGATIVE_TOLERANCE * max(abs(low), abs(high), float(np.finfo(np.float32).tiny))


def plain_text(text: str) -> str:
    """``text`` as matplotlib draws it literally: every ``$`` escaped (``\\$``), so that no part of it is
    read as math."""
    return str(text).replace("$", r"\$")
