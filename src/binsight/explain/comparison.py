"""The figure ``binsight explain --model A --model B ...`` writes for each image: every model's maps of it.

Rows are models, columns are methods after a first column with the image as the row's model takes it
(its channels and size). Each row is labelled with the model's name, precision and surrogate, its
prediction with its probability, and the class its maps explain; each column with its method. Every map is
drawn over its image on its column's colour scale (one scale per method, shared by all models:
:mod:`binsight.explain.colour_scale`), with the scale's colour bar of raw values under the column. A
degenerate map is drawn flat and labelled, as in a single overlay. All text goes through
:func:`~binsight.explain.colour_scale.plain_text`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from binsight.explain.colour_scale import Scale, plain_text

ALPHA = 0.55
"""Opacity of a map over its image (as in :mod:`binsight.explain.overlay`)."""
CELL = 2.0
"""Inches per panel."""


@dataclass(frozen=True)
class Panel:
    """One model's map of the image by one method: ``pixels`` (H, W, C) in [0, 1] as the model takes the
    image, ``raw`` (H, W) map values, ``degenerate`` the reason it ranks no pixel ("" for a usable map)."""

    pixels: np.ndarray
    raw: np.ndarray
    degenerate: str = ""


@dataclass(frozen=True)
class Row:
    """One model's row: ``label`` (its lines: name, precision and surrogate; prediction; class explained)
    and its panels by method (a method it has no map of is left empty)."""

    label: str
    panels: dict[str, Panel]


def comparison_figure(title: str, rows: Sequence[Row], methods: Sequence[str], scales: dict[str, Scale]):
    """The matplotlib Figure (Agg) of ``rows`` x (the image, then ``methods``), each method on
    ``scales[method]``, titled ``title``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    cols = len(methods) + 1
    fig = Figure(figsize=(CELL * cols + 1.6, CELL * len(rows) + 1.4), dpi=110, layout="constrained")
    fig.suptitle(plain_text(title), fontsize=10)
    axes = fig.subplots(len(rows), cols, squeeze=False)
    mappables = {}
    for r, row in enumerate(rows):
        first = next(iter(row.panels.values()), None)
        _image(axes[r][0], first.pixels if first is not None else None)
        axes[r][0].set_ylabel(plain_text(row.label), fontsize=7, rotation=0, ha="right", va="center")
        for c, method in enumerate(methods, start=1):
            panel = row.panels.get(method)
            shown = _panel(axes[r][c], panel, scales[method]) if panel is not None else None
            if shown is not None:
                mappables.setdefault(method, shown)
    axes[0][0].set_title("image", fontsize=9)
    for c, method in enumerate(methods, start=1):
        axes[0][c].set_title(plain_text(method), fontsize=9)
        if mappables.get(method) is not None:
            bar = fig.colorbar(mappables[method], ax=axes[-1][c], orientation="horizontal", fraction=0.08, pad=0.04)
            bar.solids.set_alpha(1.0)
            bar.ax.tick_params(labelsize=6)
            bar.set_label("raw values", fontsize=7)
    return fig


def save_comparison(path: str | Path, title: str, rows: Sequence[Row], methods: Sequence[str],
                    scales: dict[str, Scale]) -> None:
    """Write :func:`comparison_figure` as a PNG at ``path``."""
    comparison_figure(title, rows, methods, scales).savefig(path, format="png")


def _image(ax, pixels: np.ndarray | None) -> None:
    if pixels is not None:
        _show_pixels(ax, pixels)
    ax.set_xticks([])
    ax.set_yticks([])


def _show_pixels(ax, pixels: np.ndarray) -> None:
    if pixels.shape[2] == 1:
        ax.imshow(pixels[:, :, 0], cmap="gray", vmin=0, vmax=1)
    else:
        ax.imshow(np.clip(pixels, 0, 1))


def _panel(ax, panel: Panel, scale: Scale):
    """Draw one map over its image; return the colour mapping drawn (None for a degenerate map)."""
    _show_pixels(ax, panel.pixels)
    ax.axis("off")
    if panel.degenerate:
        ax.imshow(np.full(panel.raw.shape, 0.5), cmap="gray", vmin=0, vmax=1, alpha=ALPHA)
        ax.text(0.5, 0.5, plain_text(f"degenerate map\n({panel.degenerate})"), transform=ax.transAxes,
                ha="center", va="center", fontsize=7, bbox={"facecolor": "white", "alpha": 0.85, "edgecolor": "none"})
        return None
    return ax.imshow(panel.raw, cmap=scale.cmap, vmin=scale.vmin, vmax=scale.vmax, alpha=ALPHA)
