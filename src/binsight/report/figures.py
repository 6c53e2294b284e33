"""The report's figures, drawn with matplotlib (Agg); each function returns PNG bytes, or None with nothing to draw.

Figures are drawn WIDTH inches wide at DPI, i.e. at the page's full width (1200 px) and shown at 1:1, so a
FONT-point label reads like the page's own text. Every axis is named. Continuous measures are drawn as box
plots with black medians, 0/1 measures as proportions with Wilson intervals, maps of one image with one
colour scale across models (diverging and centred on 0 for signed maps) and a colour bar of raw values.
"""

from __future__ import annotations

import io
import textwrap
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
import numpy as np  # noqa: E402
from scipy import stats  # noqa: E402

from binsight.report import names  # noqa: E402

WIDTH, DPI, FONT = 12.0, 100, 10
PRECISION_COLOURS = {"fp": "#4c78a8", "bnn": "#e45756"}
KIND_COLOURS = {"fp-fp": "#4c78a8", "bnn-bnn": "#e45756", "fp-bnn": "#b279a2", "shuffled": "#9d9d9d"}
SHORT_METHODS = {"smoothgrad-n200": "SmoothGrad (200 samples)", "random": "random (chance)",
                 "smooth-random": "smooth random (chance)"}
STYLE = {"font.size": FONT, "axes.titlesize": FONT + 1, "axes.labelsize": FONT, "xtick.labelsize": FONT - 1,
         "ytick.labelsize": FONT - 1, "legend.fontsize": FONT - 1, "figure.dpi": DPI}


def to_png(fig: plt.Figure) -> bytes:
    """Render and close ``fig``."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    plt.close(fig)
    return buf.getvalue()


def _figure(rows: int, cols: int, height: float, *, top: float = 0.8, bottom: float = 0.9, left: float = 0.9,
            right: float = 0.2, hspace: float = 1.3, wspace: float = 0.9, **kw) -> tuple[plt.Figure, np.ndarray]:
    """WIDTH-wide figure of rows x cols panels, each ``height`` inches tall, margins and gaps in inches.

    Fixed margins (no constrained or tight layout, which draw the figure again to measure it).
    """
    total = rows * height + (rows - 1) * hspace + top + bottom
    panel_w = (WIDTH - left - right - (cols - 1) * wspace) / cols  # the mean panel width, as matplotlib counts it
    with plt.rc_context(STYLE):
        fig, axes = plt.subplots(rows, cols, figsize=(WIDTH, total), squeeze=False, **kw)
    fig.subplots_adjust(left=left / WIDTH, right=1 - right / WIDTH, top=1 - top / total, bottom=bottom / total,
                        hspace=hspace / height, wspace=wspace / panel_w)
    return fig, axes


def _legend(fig: plt.Figure, handles: list, labels: list[str]) -> None:
    """One legend for the whole figure, centred above the panels."""
    if handles:
        fig.legend(handles, labels, loc="upper center", ncol=min(len(labels), 5), frameon=False,
                   bbox_to_anchor=(0.5, 1.0), fontsize=FONT)


def _wrap(text: str, width: int = 60) -> str:
    return "\n".join(textwrap.wrap(text, width, break_long_words=False))


def method_tick(method: str) -> str:
    """A method's name on an x axis."""
    return SHORT_METHODS.get(method) or names.method_label(method)


def _method_axis(ax: plt.Axes, methods: Sequence[str]) -> None:
    """Methods along x at 0, 1, ..., their names slanted so that long ones never overlap."""
    ax.set_xticks(range(len(methods)), [method_tick(m) for m in methods], rotation=25, ha="right",
                  rotation_mode="anchor")
    ax.set_xlim(-0.6, len(methods) - 0.4)


# ------------------------------------------------------------------------------------------------------
# example maps


def example_grid(image: np.ndarray, title: str, maps: dict[tuple[str, str], np.ndarray], models: Sequence[str],
                 model_titles: dict[str, str], methods: Sequence[str], degenerate: set[tuple[str, str]]) -> bytes | None:
    """One image and every model's map of it: rows = methods, columns = the image, then each model.

    image: (C, H, W) in [0, 1]; maps[(model, method)]: (H, W) raw map values. Within a row (one method)
    every model's map shares one colour scale, with a colour bar of raw values: ``inferno`` from 0 for
    non-negative maps, ``RdBu_r`` centred on 0 for signed ones. Degenerate maps (``degenerate`` or flat
    within float noise) are drawn flat grey and labelled, never stretched.
    """
    methods = [m for m in methods if any((model, m) in maps for model in models)]
    if not methods:
        return None
    cols = 1 + len(models)
    left, right, gap, top, bottom, spacer = 0.1, 1.05, 0.08, 1.05, 0.1, 0.5
    side = min(1.7, (WIDTH - left - right - spacer - cols * gap) / cols)
    width = left + right + spacer + cols * side + cols * gap
    fig, axes = _figure(len(methods), cols + 1, side, top=top, bottom=bottom, left=left + (WIDTH - width) / 2,
                        right=right + (WIDTH - width) / 2, hspace=gap, wspace=gap,
                        gridspec_kw={"width_ratios": [1, spacer / side] + [1] * len(models)})
    for ax in axes[:, 1]:
        ax.axis("off")
    axes = np.delete(axes, 1, axis=1)
    fig.suptitle(title, fontsize=FONT + 2, y=1 - 0.12 / fig.get_figheight(), va="top")
    for r, method in enumerate(methods):
        row = axes[r]
        for ax in row:
            ax.set_xticks([])
            ax.set_yticks([])
        if r == 0:
            row[0].imshow(_as_display(image), cmap="gray", vmin=0, vmax=1)
            row[0].set_title("image", fontsize=FONT)
        else:
            row[0].axis("off")
        flat = {k for k in maps if k[1] == method and (k in degenerate or is_flat(maps[k]))}
        live = [maps[(model, method)] for model in models if (model, method) in maps and (model, method) not in flat]
        cmap, vmin, vmax = colour_scale(live)
        shown = None
        for c, model in enumerate(models, start=1):
            ax = row[c]
            if r == 0:
                ax.set_title(model_titles.get(model, model), fontsize=FONT - 1)
            key = (model, method)
            if key not in maps:
                ax.text(0.5, 0.5, "not computed", ha="center", va="center", transform=ax.transAxes, color="#777")
            elif key in flat:
                _draw_flat(ax, maps[key])
            else:
                shown = ax.imshow(maps[key], cmap=cmap, vmin=vmin, vmax=vmax)
        row[1].set_ylabel(_wrap(names.method_label(method), 16), fontsize=FONT)
        if shown is not None:
            box = row[-1].get_position()
            cax = fig.add_axes((box.x1 + 0.1 / WIDTH, box.y0 + 0.06 * box.height, 0.12 / WIDTH, 0.88 * box.height))
            bar = fig.colorbar(shown, cax=cax)
            bar.set_label("raw value", fontsize=FONT - 2)
            bar.ax.tick_params(labelsize=FONT - 2)
    return to_png(fig)


def colour_scale(maps: Sequence[np.ndarray]) -> tuple[str, float, float]:
    """(colour map, vmin, vmax) shared by ``maps``: diverging and symmetric when any value is negative."""
    if not maps:
        return "inferno", 0.0, 1.0
    low = min(float(m.min()) for m in maps)
    high = max(float(m.max()) for m in maps)
    scale = max(abs(low), abs(high), np.finfo(np.float32).tiny)
    if low < -1e-6 * scale:
        return "RdBu_r", -scale, scale
    return "inferno", min(0.0, low), high if high > 0 else 1.0


def is_flat(m: np.ndarray) -> bool:
    """True when the map's range is within float32 noise of its magnitude (or it is all zero)."""
    m = np.asarray(m, dtype=np.float64)
    magnitude = float(np.abs(m).max())
    return magnitude == 0.0 or float(m.max() - m.min()) <= 1e-4 * magnitude


def _draw_flat(ax: plt.Axes, m: np.ndarray) -> None:
    ax.imshow(np.zeros_like(m), cmap="gray", vmin=-1, vmax=1)
    ax.text(0.5, 0.5, f"degenerate\n(≈ {float(np.mean(m)):.3g})", ha="center", va="center", transform=ax.transAxes,
            fontsize=FONT - 1, color="black")


def _as_display(image: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W) for one channel, (H, W, 3) for three."""
    return image[0] if image.shape[0] == 1 else np.clip(image.transpose(1, 2, 0), 0, 1)


# ------------------------------------------------------------------------------------------------------
# distributions


def _panels(n: int, cols: int, height: float, **kw) -> tuple[plt.Figure, list[plt.Axes]]:
    rows = -(-n // cols)
    fig, axes = _figure(rows, cols, height, **kw)
    flat = list(axes.ravel())
    for ax in flat[n:]:
        ax.axis("off")
    return fig, flat[:n]


def box_panels(groups: dict[str, dict[tuple[str, str], np.ndarray]], methods: Sequence[str], kinds: Sequence[str],
               colours: dict[str, str], kind_labels: dict[str, str], *, cols: int = 2,
               dots: dict[str, dict[tuple[str, str], np.ndarray]] | None = None) -> bytes | None:
    """One panel per measure: methods along x, one box per kind (black median, whiskers at 1.5 IQR).

    groups[measure][(method, kind)]: values (e.g. one per image and model). dots (optional, same keys):
    values drawn as black points over the boxes (e.g. each model pair's mean).
    """
    measures = [m for m in groups if groups[m]]
    if not measures:
        return None
    fig, axes = _panels(len(measures), cols, 3.2, top=1.0, bottom=1.5, hspace=2.2)
    used: dict[str, None] = {}
    for ax, measure in zip(axes, measures):
        used.update(dict.fromkeys(_boxes(ax, groups[measure], methods, kinds, colours, (dots or {}).get(measure, {}))))
        ax.set_title(_wrap(names.label(measure), 62), fontsize=FONT)
        ax.set_ylabel(_wrap(names.axis_label(measure), 30))
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[k], alpha=0.55) for k in kinds if k in used]
    labels = [kind_labels.get(k, k) for k in kinds if k in used]
    if dots:
        handles.append(plt.Line2D([], [], marker="o", ls="", color="black", ms=4))
        labels.append("each model pair's mean over images")
    _legend(fig, handles, labels)
    return to_png(fig)


def _boxes(ax: plt.Axes, groups: dict[tuple[str, str], np.ndarray], methods: Sequence[str], kinds: Sequence[str],
           colours: dict[str, str], dots: dict[tuple[str, str], np.ndarray]) -> list[str]:
    """Draw the grouped boxes; return the kinds drawn."""
    shown = [m for m in methods if any((m, k) in groups for k in kinds)]
    present = [k for k in kinds if any((m, k) in groups for m in shown)]
    width = 0.8 / max(1, len(present))
    for j, kind in enumerate(present):
        offset = (j - (len(present) - 1) / 2) * width
        keys = [(i, m) for i, m in enumerate(shown) if (m, kind) in groups]
        _draw_boxes(ax, [i + offset for i, _ in keys], [groups[(m, kind)] for _, m in keys], width * 0.85, colours[kind])
        for i, m in keys:
            if (m, kind) in dots:
                d = dots[(m, kind)]
                ax.plot(np.full(d.size, i + offset), d, "o", ms=3.5, color="black", alpha=0.8, zorder=3)
    _method_axis(ax, shown)
    ax.grid(axis="y", alpha=0.3)
    return present


def _draw_boxes(ax: plt.Axes, xs: Sequence[float], values: Sequence[np.ndarray], width: float, colour: str) -> None:
    """Box plots as three collections: boxes (quartiles), whiskers (furthest values within 1.5 IQR), black medians."""
    boxes, whiskers, medians = [], [], []
    for x, v in zip(xs, values):
        v = np.asarray(v, dtype=np.float64)
        q1, med, q3 = np.percentile(v, [25, 50, 75])
        iqr = q3 - q1
        low = v[v >= q1 - 1.5 * iqr].min()
        high = v[v <= q3 + 1.5 * iqr].max()
        half = width / 2
        boxes.append([(x - half, q1), (x + half, q1), (x + half, q3), (x - half, q3)])
        whiskers += [[(x, low), (x, q1)], [(x, q3), (x, high)], [(x - half / 2, low), (x + half / 2, low)],
                     [(x - half / 2, high), (x + half / 2, high)]]
        medians.append([(x - half, med), (x + half, med)])
    ax.add_collection(PolyCollection(boxes, facecolors=colour, edgecolors="#333", alpha=0.55, linewidths=0.8))
    ax.add_collection(LineCollection(whiskers, colors="#333", linewidths=0.8))
    ax.add_collection(LineCollection(medians, colors="black", linewidths=2.0, zorder=3))
    ax.autoscale_view()


def proportion_panels(counts: dict[str, dict[tuple[str, str], tuple[int, int]]], methods: Sequence[str],
                      kinds: Sequence[str], colours: dict[str, str], kind_labels: dict[str, str], *,
                      confidence: float = 0.95) -> bytes | None:
    """One panel per 0/1 measure: the share of ones per method and kind, with a Wilson interval.

    counts[measure][(method, kind)] = (ones, n).
    """
    measures = [m for m in counts if counts[m]]
    if not measures:
        return None
    fig, axes = _panels(len(measures), 2, 3.0, top=1.0, bottom=1.5, hspace=2.2)
    used: dict[str, None] = {}
    for ax, measure in zip(axes, measures):
        groups = counts[measure]
        shown = [m for m in methods if any((m, k) in groups for k in kinds)]
        present = [k for k in kinds if any((m, k) in groups for m in shown)]
        used.update(dict.fromkeys(present))
        width = 0.8 / max(1, len(present))
        for j, kind in enumerate(present):
            offset = (j - (len(present) - 1) / 2) * width
            xs, ps, lo, hi = [], [], [], []
            for i, m in enumerate(shown):
                if (m, kind) in groups:
                    ones, n = groups[(m, kind)]
                    low, high = wilson_interval(ones, n, confidence=confidence)
                    xs.append(i + offset)
                    ps.append(ones / n)
                    lo.append(max(0.0, ones / n - low))
                    hi.append(max(0.0, high - ones / n))
            ax.errorbar(xs, ps, yerr=[lo, hi], fmt="o", ms=6, capsize=4, color=colours[kind])
        _method_axis(ax, shown)
        ax.set_ylim(-0.03, 1.03)
        ax.set_ylabel("share of maps")
        ax.set_title(_wrap(names.label(measure), 62), fontsize=FONT)
        ax.grid(axis="y", alpha=0.3)
    handles = [plt.Line2D([], [], marker="o", color=colours[k]) for k in kinds if k in used]
    _legend(fig, handles, [f"{kind_labels.get(k, k)} ({confidence:.0%} Wilson interval)" for k in kinds if k in used])
    return to_png(fig)


def wilson_interval(ones: int, n: int, *, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval of a proportion ones / n at ``confidence``; (0, 1) for n = 0."""
    if n <= 0:
        return 0.0, 1.0
    z = float(stats.norm.ppf(0.5 + confidence / 2))
    p = ones / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# ------------------------------------------------------------------------------------------------------
# sanity check and curves


def sanity_curves(curves: dict[str, dict[str, dict[int, float]]], layers: dict[str, list[str]],
                  precisions: dict[str, str], measure: str) -> bytes | None:
    """One panel per method: ``measure`` of the randomised map against the original, per layers randomised.

    curves[method][model] = {step: mean value}; step 0 is the un-randomised map (similarity 1 by
    definition, drawn as the starting point); layers[model]: names of the layers randomised at steps 1, 2, ...
    """
    methods = [m for m in curves if curves[m]]
    if not methods:
        return None
    fig, axes = _panels(len(methods), min(3, len(methods)), 3.2, top=0.9, bottom=1.6, hspace=2.2, wspace=0.9,
                        left=1.2)
    for ax, method in zip(axes, methods):
        for model, steps in sorted(curves[method].items()):
            xs = [0, *sorted(steps)]
            ys = [1.0, *(steps[s] for s in sorted(steps))]
            ax.plot(xs, ys, marker="o", ms=3, color=PRECISION_COLOURS.get(precisions.get(model, ""), "#555"), alpha=0.8)
        last = max(max(s) for s in curves[method].values() if s)
        model = sorted(curves[method])[0]
        layer_names = layers.get(model, [])
        ticks = ["none (original)", *(layer_names[:last] if len(layer_names) >= last else
                                      [str(s) for s in range(1, last + 1)])]
        ax.set_xticks(range(last + 1), ticks, rotation=40, ha="right", rotation_mode="anchor")
        ax.set_ylim(-1.05, 1.05)
        ax.axhline(0, color="grey", lw=0.6)
        ax.set_title(names.method_label(method), fontsize=FONT + 1)
        ax.set_ylabel(_wrap(names.label(measure), 30))
        ax.set_xlabel("randomised down to layer (cumulative, from the output)")
        ax.grid(alpha=0.3)
    present = [p for p in PRECISION_COLOURS if any(precisions.get(m) == p for c in curves.values() for m in c)]
    _legend(fig, [plt.Line2D([], [], color=PRECISION_COLOURS[p], marker="o", ms=3) for p in present],
            [f"{p.upper()} models (one line each)" for p in present])
    return to_png(fig)


def curve_panels(curves: dict[tuple[str, str], dict[str, np.ndarray]], methods: Sequence[str]) -> bytes | None:
    """Mean deletion / insertion curves: one panel per (curve kind, precision), one line per method.

    curves[(method, precision)] = {"fractions": (S,), kind: mean curve (S,), ...}.
    """
    kinds = list(dict.fromkeys(k for c in curves.values() for k in c if k not in ("fractions", "n")))
    precisions = [p for p in PRECISION_COLOURS if any(k[1] == p for k in curves)]
    if not kinds or not precisions:
        return None
    fig, axes = _figure(len(kinds), len(precisions), 3.0, top=1.1, hspace=1.0, sharey=True)
    lines: dict[str, plt.Line2D] = {}
    cycle = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for r, kind in enumerate(kinds):
        for c, precision in enumerate(precisions):
            ax = axes[r][c]
            for j, method in enumerate(methods):
                got = curves.get((method, precision))
                if got and kind in got:
                    chance = method in ("random", "smooth-random", "gaussian")
                    (line,) = ax.plot(got["fractions"], got[kind], ls="--" if chance else "-", color=cycle[j % len(cycle)])
                    lines.setdefault(method, line)
            ax.set_title(f"{precision.upper()} models: {_curve_title(kind)}", fontsize=FONT)
            ax.set_xlabel("fraction of pixels " + ("restored" if kind.startswith("insertion") else "removed"))
            ax.set_ylabel("probability of the\nexplained class")
            ax.grid(alpha=0.3)
    _legend(fig, list(lines.values()), [names.method_label(m) for m in lines])
    return to_png(fig)


def _curve_title(kind: str) -> str:
    return {"deletion": "deletion onto black", "insertion": "insertion from black",
            "deletion_blur": "deletion onto a blurred copy", "insertion_blur": "insertion from a blurred copy"}.get(kind, kind)
