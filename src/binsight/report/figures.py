"""The report's figures, drawn with matplotlib (Agg); each function returns PNG bytes, or None with nothing to draw.

Figures are drawn WIDTH inches wide at DPI, i.e. at the page's full width (1200 px) and shown at 1:1, so a
FONT-point label reads like the page's own text. Every axis is named. Continuous measures are drawn as box
plots with black medians, 0/1 measures as proportions with Wilson intervals, maps of one image with one
colour scale across models (diverging and centred on 0 for signed maps) and a colour bar of raw values.
"""

from __future__ import annotations

import io
import statistics
import textwrap
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import LineCollection, PolyCollection  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from binsight._utils import flat_maps  # noqa: E402
from binsight.explain.colour_scale import has_negative, plain_text, scale_of  # noqa: E402
from binsight.report import names  # noqa: E402
from binsight.study.measures import chance_labels  # noqa: E402

WIDTH, DPI, FONT = 12.0, 100, 10
PRECISION_COLOURS = {"fp": "#4c78a8", "bnn": "#e45756"}
KIND_COLOURS = {"fp-fp": "#4c78a8", "bnn-bnn": "#e45756", "fp-bnn": "#b279a2", "shuffled": "#9d9d9d"}
SHORT_METHODS = {"smoothgrad-n200": "SmoothGrad (200 samples)", "random": "random (chance)",
                 "smooth-random": "smooth random (chance)"}
STYLE = {"font.size": FONT, "axes.titlesize": FONT + 1, "axes.labelsize": FONT, "xtick.labelsize": FONT - 1,
         "ytick.labelsize": FONT - 1, "legend.fontsize": FONT - 1, "figure.dpi": DPI}


def to_png(fig: plt.Figure) -> bytes:
    """Render (at DPI) and close ``fig``."""
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
        fig.legend(handles, [plain_text(label) for label in labels], loc="upper center", ncol=min(len(labels), 5),
                   frameon=False, bbox_to_anchor=(0.5, 1.0), fontsize=FONT)


def _wrap(text: str, width: int = 60) -> str:
    """``text`` wrapped at ``width`` characters, escaped to be drawn as written (:func:`plain_text`)."""
    return plain_text("\n".join(textwrap.wrap(text, width, break_long_words=False)))


def method_tick(method: str) -> str:
    """A method's name on an x axis (escaped: :func:`plain_text`)."""
    return plain_text(SHORT_METHODS.get(method) or names.method_label(method))


def _method_axis(ax: plt.Axes, methods: Sequence[str]) -> None:
    """Methods along x at 0, 1, ..., their names slanted so that long ones never overlap."""
    ax.set_xticks(range(len(methods)), [method_tick(m) for m in methods], rotation=25, ha="right",
                  rotation_mode="anchor")
    ax.set_xlim(-0.6, len(methods) - 0.4)
    ax.set_xlabel("method")


# ------------------------------------------------------------------------------------------------------
# example maps


def example_grid(image: np.ndarray, title: str, maps: dict[tuple[str, str], np.ndarray], models: Sequence[str],
                 model_titles: dict[str, str], methods: Sequence[str], degenerate: set[tuple[str, str]]) -> bytes | None:
    """One image and every model's map of it: rows = methods, columns = the image, then each model.

    image: (C, H, W) in [0, 1]; maps[(model, method)]: (H, W) raw map values, one size for all. Within a
    row (one method) every model's map shares one colour scale, with a colour bar of raw values:
    ``inferno`` from 0 for non-negative maps, ``RdBu_r`` centred on 0 for signed ones. Degenerate maps
    (``degenerate`` or flat within float noise) are drawn flat grey and labelled, never stretched. Each
    row is one image of its maps side by side (one axes a row: fast to draw).
    """
    methods = [m for m in methods if any((model, m) in maps for model in models)]
    if not methods:
        return None
    n = len(models)
    gap, label, bar, top, bottom = 0.1, 0.6, 0.85, 1.0, 0.1
    side = min(1.75, (WIDTH - 0.3 - label - bar - (n - 1) * gap) / (n + 1))
    height = top + bottom + len(methods) * (side + gap)
    fig = plt.figure(figsize=(WIDTH, height))
    x0 = (WIDTH - (side + label + n * side + (n - 1) * gap + bar)) / 2
    fig.text(0.5, 1 - 0.15 / height, plain_text(title), ha="center", va="top", fontsize=FONT + 2)
    ax = fig.add_axes(_inches(fig, x0, height - top - side, side, side))
    ax.imshow(_as_display(image), cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_title("image", fontsize=FONT)
    ax.set_axis_off()
    for r, method in enumerate(methods):
        y = height - top - (r + 1) * side - r * gap
        ax = fig.add_axes(_inches(fig, x0 + side + label, y, n * side + (n - 1) * gap, side))
        mappable = _map_row(ax, [maps.get((model, method)) for model in models],
                            [(model, method) in degenerate for model in models], gap / side)
        ax.set_ylabel(_wrap(names.method_label(method), 16), fontsize=FONT)
        if r == 0:
            for c, model in enumerate(models):
                ax.text((c + 0.5) / n, 1.03, plain_text(model_titles.get(model, model)), transform=ax.transAxes, ha="center",
                        va="bottom", fontsize=FONT - 1)
        if mappable is not None:
            cax = fig.add_axes(_inches(fig, x0 + side + label + n * side + (n - 1) * gap + 0.1, y + 0.05 * side,
                                       0.12, 0.9 * side))
            colour_bar = fig.colorbar(mappable, cax=cax)
            colour_bar.set_label("raw value", fontsize=FONT - 2)
            colour_bar.ax.tick_params(labelsize=FONT - 2)
    return to_png(fig)


def _inches(fig: plt.Figure, x: float, y: float, w: float, h: float) -> tuple[float, float, float, float]:
    """An axes rectangle given in inches from the bottom left, as figure fractions."""
    fw, fh = fig.get_size_inches()
    return x / fw, y / fh, w / fw, h / fh


def _map_row(ax: plt.Axes, maps: Sequence[np.ndarray | None], degenerate: Sequence[bool], gap: float):
    """Draw maps side by side on one shared colour scale; return the scale's mappable (None if none drawn)."""
    shape = next(m.shape for m in maps if m is not None)
    flat = [m is not None and (d or is_flat(m)) for m, d in zip(maps, degenerate)]
    live = [m for m, f in zip(maps, flat) if m is not None and not f]
    cmap_name, vmin, vmax = colour_scale(live)
    cmap, norm = plt.get_cmap(cmap_name), matplotlib.colors.Normalize(vmin, vmax)
    pad = max(1, round(gap * shape[1]))
    width = len(maps) * shape[1] + (len(maps) - 1) * pad
    mosaic = np.ones((shape[0], width, 4))
    for c, (m, f) in enumerate(zip(maps, flat)):
        x = c * (shape[1] + pad)
        centre = (x + shape[1] / 2 - 0.5, shape[0] / 2 - 0.5)
        if m is None or m.shape != shape:
            mosaic[:, x:x + shape[1], :3] = 0.93
            ax.text(*centre, "not computed", ha="center", va="center", color="#555", fontsize=FONT - 1)
        elif f:
            mosaic[:, x:x + shape[1], :3] = 0.55
            ax.text(*centre, f"degenerate\n(≈ {float(np.mean(m)):.3g})", ha="center", va="center", fontsize=FONT - 1)
        else:
            mosaic[:, x:x + shape[1]] = cmap(norm(m))
    ax.imshow(mosaic, interpolation="nearest", aspect="auto")
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_visible(False)
    return matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap) if live else None


def overlay_row(image: np.ndarray, title: str, maps: dict[str, np.ndarray], models: Sequence[str],
                model_titles: dict[str, str], degenerate: set[str]) -> bytes | None:
    """One method's maps of one image laid over the image (grey), one panel per model, one shared colour scale.

    image: (C, H, W) in [0, 1]; maps[model]: (H, W) raw values of the image's size. Degenerate maps are
    not overlaid: the panel shows the image alone, labelled.
    """
    shown = [m for m in models if m in maps]
    if not shown:
        return None
    flat = {m for m in shown if m in degenerate or is_flat(maps[m])}
    cmap_name, vmin, vmax = colour_scale([maps[m] for m in shown if m not in flat])
    side = min(2.4, (WIDTH - 1.2) / len(shown))
    fig, axes = _figure(1, len(shown), side, top=0.8, bottom=0.1, left=0.2, right=1.0, wspace=0.1)
    fig.suptitle(plain_text(title), fontsize=FONT + 2, y=1 - 0.1 / fig.get_figheight(), va="top")
    gray = _as_display(image)
    gray = gray if gray.ndim == 2 else gray.mean(axis=2)
    drawn = None
    for ax, model in zip(axes[0], shown):
        ax.imshow(gray, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        if model in flat:
            ax.text(0.5, 0.5, f"degenerate map\n(≈ {float(np.mean(maps[model])):.3g})", ha="center", va="center",
                    transform=ax.transAxes, fontsize=FONT - 1, color="white")
        else:
            drawn = ax.imshow(maps[model], cmap=cmap_name, vmin=vmin, vmax=vmax, alpha=0.6, interpolation="nearest")
        ax.set_title(plain_text(model_titles.get(model, model)), fontsize=FONT - 1)
        ax.set_xticks([])
        ax.set_yticks([])
    if drawn is not None:
        box = axes[0][-1].get_position()
        cax = fig.add_axes((box.x1 + 0.12 / WIDTH, box.y0, 0.14 / WIDTH, box.height))
        bar = fig.colorbar(drawn, cax=cax)
        bar.set_label("raw value", fontsize=FONT - 1)
    return to_png(fig)


def colour_scale(maps: Sequence[np.ndarray]) -> tuple[str, float, float]:
    """(colour map, vmin, vmax) shared by ``maps``: the rule of :mod:`binsight.explain.colour_scale` for maps
    of unknown sign (diverging and symmetric when any value is negative)."""
    scale = scale_of(maps, signed=has_negative(maps))
    return scale.cmap, scale.vmin, scale.vmax


def is_flat(m: np.ndarray) -> bool:
    """True when the map's range is within float noise of its magnitude (or it is all zero): the rule of the
    measures' degenerate maps (:func:`binsight._utils.flat_maps`), for a map they did not mark."""
    return bool(flat_maps(torch.from_numpy(np.asarray(m, dtype=np.float64))[None])[0])


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

    groups[measure][(method, kind)]: values (e.g. one per image and model); a measure with no groups is
    drawn as an empty panel that says so (to keep a grid's columns aligned). dots (optional, same keys):
    values drawn as black points over the boxes (e.g. each model pair's mean).
    """
    measures = list(groups)
    if not any(groups.values()):
        return None
    fig, axes = _panels(len(measures), cols, 3.2, top=1.0, bottom=1.5, hspace=2.0)
    used: dict[str, None] = {}
    for ax, measure in zip(axes, measures):
        if not groups[measure]:
            ax.text(0.5, 0.5, plain_text(f"{names.label(measure)}:\nnot measured"), ha="center", va="center", transform=ax.transAxes)
            ax.set_axis_off()
            continue
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
    fig, axes = _panels(len(measures), 2, 3.0, top=1.0, bottom=1.5, hspace=2.0)
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
    z = statistics.NormalDist().inv_cdf(0.5 + confidence / 2)
    p = ones / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


# ------------------------------------------------------------------------------------------------------
# sanity check and curves


def sanity_curves(curves: dict[str, dict[str, dict[str, dict[int, float]]]], layers: dict[str, list[str]],
                  precisions: dict[str, str]) -> bytes | None:
    """Rows = similarity measures, columns = methods: each model's similarity of the randomised map to the
    original, against the layers randomised so far.

    curves[measure][method][model] = {step: mean value}; step 0 is the un-randomised map (similarity 1
    with itself, drawn as the starting point); layers[model]: names of the layers randomised at steps 1, 2, ...
    """
    measures = [m for m in curves if curves[m]]
    methods = list(dict.fromkeys(method for m in measures for method in curves[m]))
    if not methods:
        return None
    fig, axes = _figure(len(measures), len(methods), 3.0, top=0.9, bottom=2.0, hspace=2.1, wspace=0.35, left=1.1,
                        sharey=True)
    for r, measure in enumerate(measures):
        for c, method in enumerate(methods):
            ax = axes[r][c]
            if method not in curves[measure]:
                ax.axis("off")
                continue
            _sanity_panel(ax, curves[measure][method], layers, precisions)
            ax.set_title(plain_text(names.method_label(method)), fontsize=FONT + 1)
        axes[r][0].set_ylabel(_wrap(names.label(measure), 28))
    fig.text(0.5, 0.1 / fig.get_figheight(), "layers randomised so far, from the output down (cumulative)",
             ha="center", va="bottom", fontsize=FONT)
    present = [p for p in PRECISION_COLOURS if p in precisions.values()]
    _legend(fig, [plt.Line2D([], [], color=PRECISION_COLOURS[p], marker="o", ms=3) for p in present],
            [f"{p.upper()} models (one line each)" for p in present])
    return to_png(fig)


def _sanity_panel(ax: plt.Axes, per_model: dict[str, dict[int, float]], layers: dict[str, list[str]],
                  precisions: dict[str, str]) -> None:
    for model, steps in sorted(per_model.items()):
        xs = [0, *sorted(steps)]
        ys = [1.0, *(steps[s] for s in sorted(steps))]
        ax.plot(xs, ys, marker="o", ms=3, color=PRECISION_COLOURS.get(precisions.get(model, ""), "#555"), alpha=0.8)
    last = max((max(s) for s in per_model.values() if s), default=0)
    names_ = layers.get(sorted(per_model)[0], [])
    ticks = ["none (original)", *(names_[:last] if len(names_) >= last else [str(s) for s in range(1, last + 1)])]
    ax.set_xticks(range(last + 1), ticks, rotation=40, ha="right", rotation_mode="anchor")
    ax.set_ylim(-1.05, 1.05)
    ax.axhline(0, color="grey", lw=0.6)
    ax.grid(alpha=0.3)


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
                    chance = method in chance_labels()
                    (line,) = ax.plot(got["fractions"], got[kind], ls="--" if chance else "-", color=cycle[j % len(cycle)])
                    lines.setdefault(method, line)
            ax.set_title(plain_text(f"{precision.upper()} models: {_curve_title(kind)}"), fontsize=FONT)
            ax.set_xlabel("fraction of pixels " + ("restored" if kind.startswith("insertion") else "removed"))
            ax.set_ylabel("probability of the\nexplained class")
            ax.grid(alpha=0.3)
    _legend(fig, list(lines.values()), [names.method_label(m) for m in lines])
    return to_png(fig)


def _curve_title(kind: str) -> str:
    """The run folder's curve keys (format 2): deletion / insertion onto a blurred copy, *_black onto black."""
    return {"deletion": "deletion onto a blurred copy", "insertion": "insertion from a blurred copy",
            "deletion_black": "deletion onto black (reference only)",
            "insertion_black": "insertion from black (reference only)"}.get(kind, kind)
