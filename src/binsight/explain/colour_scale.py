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

Units: several maps share a scale only where their values measure the same thing (:func:`unit_of`):
Gradient, SmoothGrad (its plain variant) and Captum's Saliency are input gradients; NeuroMask is a mask in
[0, 1]; any other method is in units of its own (GradCAM's weighted activations near 0.01 drawn on
NeuroMask's 0 .. 1 would look black). :func:`unit_groups` groups methods by unit.

Text: every title and label a picture shows goes through :func:`plain_text`, so that a name holding ``$``
(a file, class or model name) is drawn as written, never read as matplotlib's math (which draws ``$x$`` in
italics and fails on an odd pair such as ``a$b$c`` beside other text).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np

NEGATIVE_TOLERANCE = 1e-6
"""A value counts as negative (:func:`has_negative`) below ``-NEGATIVE_TOLERANCE`` times the largest magnitude."""


UNITS = {"gradient": "input gradient", "smoothgrad": "input gradient", "captum:Saliency": "input gradient",
         "neuromask": "mask value in [0, 1]"}
"""What the values of a method's maps measure, for the methods that share a unit with another."""


def unit_of(method: str, options: Mapping[str, Any] | None = None) -> str:
    """What ``method``'s map values measure (:data:`UNITS`; a SmoothGrad variant other than the plain one,
    or a method not listed, is a unit of its own, named after it)."""
    variant = (options or {}).get("variant", "smoothgrad")
    if method == "smoothgrad" and variant != "smoothgrad":
        return f"smoothgrad {variant}"
    return UNITS.get(method, method)


def unit_groups(methods: Sequence[str], options: Mapping[str, Mapping[str, Any]] | None = None) -> list[list[str]]:
    """``methods`` grouped by :func:`unit_of` (with each method's ``options``), in the order first met."""
    groups: dict[str, list[str]] = {}
    for method in methods:
        groups.setdefault(unit_of(method, (options or {}).get(method)), []).append(method)
    return list(groups.values())


def shared_scale_note(groups: Sequence[Sequence[str]]) -> str:
    """The ``note:`` for ``--shared-scale`` when the methods' units differ ("" when they agree)."""
    if len(groups) < 2:
        return ""
    listed = "; ".join(", ".join(g) for g in groups)
    return (f"--shared-scale: these methods' maps are in different units ({listed}): each group keeps a colour "
            "scale of its own; a method alone in its group stays on its own scale")


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
