"""The overlay PNG ``binsight explain`` writes: a saliency map over its image, with a colour bar of raw values.

A map is drawn on a colour scale (:class:`~binsight.explain.colour_scale.Scale`, the rule of
:mod:`binsight.explain.colour_scale`) in its own units, so that two overlays drawn on one scale
(``binsight explain --shared-scale``) can be compared by eye. A degenerate map (all zero, constant, flat,
not finite) is drawn flat, one gray over the image, and labelled with the reason, with no colour bar: it
ranks no pixel.

The title names the image, the model, its precision and surrogate, the predicted class with its
probability, and the class explained.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from binsight.explain.colour_scale import Scale

ALPHA = 0.55
"""Opacity of the map over the image."""


def title_lines(*, image: str, method: str, model: str, precision: str, surrogate: str | None,
                predicted: str, probability: float, target: str) -> str:
    """The overlay's title: image and method; model, precision, surrogate; prediction and the class explained."""
    kind = precision.upper() + (f", surrogate {surrogate}" if surrogate else "")
    return (f"{image} - {method}\n{model} ({kind})\n"
            f"predicted {predicted} (p = {probability:.2f}); explains {target}")


def save_overlay(path: str | Path, pixels: np.ndarray, saliency: np.ndarray, *, title: str, scale: Scale,
                 degenerate: str = "") -> None:
    """Write a PNG of ``saliency`` (H, W) over ``pixels`` (H, W, C) in [0, 1] on ``scale``, titled
    ``title``, with a colour bar of raw values; ``degenerate`` (a reason, "" for a usable map) draws the
    map flat and labels it."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.2, 4.0), dpi=110)
    ax = fig.add_subplot()
    if pixels.shape[2] == 1:
        ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(pixels, 0, 1))
    if degenerate:
        ax.imshow(np.full(saliency.shape, 0.5), cmap="gray", vmin=0, vmax=1, alpha=ALPHA)
        ax.text(0.5, 0.5, f"degenerate map\n({degenerate})", transform=ax.transAxes, ha="center", va="center",
                fontsize=10, color="black", bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"})
    else:
        shown = ax.imshow(saliency, cmap=scale.cmap, vmin=scale.vmin, vmax=scale.vmax, alpha=ALPHA)
        bar = fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
        bar.solids.set_alpha(1.0)
        bar.ax.tick_params(labelsize=8)
        bar.set_label("saliency (raw values)", fontsize=8)
    ax.set_title(title, fontsize=8)
    ax.axis("off")
    fig.savefig(path, format="png", bbox_inches="tight")
