"""The report's figures, drawn with matplotlib (Agg) from a run folder's files; each returns PNG bytes.

Every function takes what it draws as plain arrays and dicts and returns ``None`` when there is nothing
to draw (a partial run), so that the report shows what exists.
"""

from __future__ import annotations

import io
from collections import defaultdict
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from binsight.study.store import Row  # noqa: E402

PRECISION_COLOURS = {"fp": "#1f77b4", "bnn": "#d62728"}
PAIR_COLOURS = {"fp-bnn": "#9467bd", "fp-fp": "#1f77b4", "bnn-bnn": "#d62728"}


def to_png(fig: plt.Figure) -> bytes:
    """Render and close ``fig``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def example_grid(images: np.ndarray, maps: dict[tuple[str, str], np.ndarray], models: Sequence[str],
                 methods: Sequence[str], titles: Sequence[str]) -> bytes | None:
    """Rows: each example image x each model; columns: the image, then each method's map.

    images: (E, C, H, W) in [0, 1]; maps[(model, method)]: (E, 1, H, W) (missing pairs are left blank).
    """
    if images.shape[0] == 0 or not maps:
        return None
    n_rows, n_cols = images.shape[0] * len(models), 1 + len(methods)
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(1.3 * n_cols, 1.3 * n_rows), squeeze=False)
    for e in range(images.shape[0]):
        for j, model in enumerate(models):
            row = axes[e * len(models) + j]
            row[0].imshow(_as_rgb(images[e]), cmap="gray", vmin=0, vmax=1)
            row[0].set_ylabel(f"{titles[e]}\n{model}", fontsize=7)
            for k, method in enumerate(methods, start=1):
                m = maps.get((model, method))
                if m is not None and e < m.shape[0]:
                    row[k].imshow(m[e, 0], cmap="inferno")
                if e == 0 and j == 0:
                    row[k].set_title(method, fontsize=8)
            for ax in row:
                ax.set_xticks([])
                ax.set_yticks([])
    axes[0][0].set_title("image", fontsize=8)
    fig.subplots_adjust(wspace=0.05, hspace=0.05)
    return to_png(fig)


def _as_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) for one channel, (H, W, 3) for three."""
    return image[0] if image.shape[0] == 1 else np.clip(image.transpose(1, 2, 0), 0, 1)


def measure_distributions(rows: Sequence[Row], precisions: dict[str, str], methods: Sequence[str]) -> bytes | None:
    """Box plots of each single-map measure: per method, one box per precision (values over images x models)."""
    data: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.model_b == "" and r.step == 0 and r.measure != "degenerate" and np.isfinite(r.value):
            data[r.measure][(r.method, precisions.get(r.model, "?"))].append(r.value)
    if not data:
        return None
    measures = sorted(data)
    fig, axes = _subplots(len(measures), width=5.0, height=2.8)
    for ax, measure in zip(axes, measures):
        _boxes(ax, data[measure], methods, ("fp", "bnn"), PRECISION_COLOURS)
        ax.set_title(measure, fontsize=9)
    return to_png(fig)


def similarity_distributions(rows: Sequence[Row], precisions: dict[str, str], methods: Sequence[str]) -> bytes | None:
    """Box plots of each similarity measure: per method, one box per kind of pair (FP-BNN, FP-FP, BNN-BNN)."""
    data: dict[str, dict[tuple[str, str], list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        if r.model_b and np.isfinite(r.value):
            kind = "-".join(sorted((precisions.get(r.model, "?"), precisions.get(r.model_b, "?")), key=["fp", "bnn"].index))
            data[r.measure][(r.method, kind)].append(r.value)
    if not data:
        return None
    measures = sorted(data)
    fig, axes = _subplots(len(measures), width=5.0, height=2.8)
    for ax, measure in zip(axes, measures):
        _boxes(ax, data[measure], methods, tuple(PAIR_COLOURS), PAIR_COLOURS)
        ax.set_title(f"{measure} between two models' maps", fontsize=9)
    return to_png(fig)


def _boxes(ax: plt.Axes, groups: dict[tuple[str, str], list[float]], methods: Sequence[str], kinds: Sequence[str],
           colours: dict[str, str]) -> None:
    """Grouped box plot: methods along x, one coloured box per kind."""
    width = 0.8 / len(kinds)
    shown = [m for m in methods if any((m, k) in groups for k in kinds)]
    for j, kind in enumerate(kinds):
        positions = [i + (j - (len(kinds) - 1) / 2) * width for i, m in enumerate(shown) if (m, kind) in groups]
        values = [groups[(m, kind)] for m in shown if (m, kind) in groups]
        if values:
            bp = ax.boxplot(values, positions=positions, widths=width * 0.9, patch_artist=True, showfliers=False)
            for patch in bp["boxes"]:
                patch.set_facecolor(colours[kind])
                patch.set_alpha(0.6)
            ax.plot([], [], color=colours[kind], lw=6, alpha=0.6, label=kind)
    ax.set_xticks(range(len(shown)), shown, fontsize=7, rotation=20)
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=6, loc="best")


def _subplots(n: int, width: float, height: float, cols: int = 2):
    rows = -(-n // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(width * cols, height * rows), squeeze=False)
    flat = axes.ravel()
    for ax in flat[n:]:
        ax.axis("off")
    fig.tight_layout(h_pad=2.0)
    return fig, flat[:n]


def sanity_curves(rows: Sequence[Row], layers: dict[str, list[str]], methods: Sequence[str]) -> bytes | None:
    """Mean Spearman similarity of the randomised map to the original, per layer randomised, per model."""
    curves: dict[str, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    for r in rows:
        if r.measure == "sanity_spearman" and np.isfinite(r.value):
            curves[r.method][r.model][r.step].append(r.value)
    shown = [m for m in methods if m in curves]
    if not shown:
        return None
    fig, axes = _subplots(len(shown), width=5.0, height=3.0)
    for ax, method in zip(axes, shown):
        for model, steps in sorted(curves[method].items()):
            xs = sorted(steps)
            ax.plot(xs, [np.mean(steps[s]) for s in xs], marker="o", ms=3, label=model,
                    color=PRECISION_COLOURS.get(model.split("-")[0]), alpha=0.8)
        names = layers.get(sorted(curves[method])[0], [])
        if names:
            ax.set_xticks(range(1, len(names) + 1), names, fontsize=6, rotation=45, ha="right")
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0, color="grey", lw=0.5)
        ax.set_title(f"{method}: similarity to the original map", fontsize=9)
        ax.set_xlabel("layers randomised, from the top (cumulative)", fontsize=7)
        ax.legend(fontsize=6)
    return to_png(fig)


def deletion_insertion_curves(curves: dict[tuple[str, str], dict[str, np.ndarray]], precisions: dict[str, str],
                              methods: Sequence[str]) -> bytes | None:
    """Mean deletion and insertion curves per method, one panel per precision and curve."""
    if not curves:
        return None
    fig, axes = plt.subplots(2, 2, figsize=(10, 6), squeeze=False)
    for col, precision in enumerate(("fp", "bnn")):
        for row, kind in enumerate(("deletion", "insertion")):
            ax = axes[row][col]
            for method in methods:
                parts = [c for (model, m), c in curves.items() if m == method and precisions.get(model) == precision]
                if parts:
                    mean = np.concatenate([p[kind] for p in parts]).mean(axis=0)
                    ax.plot(parts[0]["fractions"], mean, label=method, ls="--" if method in ("random", "gaussian") else "-")
            ax.set_title(f"{precision.upper()}: {kind} (mean over images and models)", fontsize=9)
            ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "restored"), fontsize=7)
            ax.set_ylabel("p(class c)", fontsize=7)
            ax.legend(fontsize=6)
    fig.tight_layout()
    return to_png(fig)
