"""Controls for binarization: robustness rows that recompute a verdict with a confound of the FP-vs-BNN
comparison taken away (docs/verdicts.md, "Controls for binarization").

- :data:`ALL_CORRECT`: only the images every base model classifies correctly (the predictions stage's
  ``correct`` rows), so that no map explains a class its model got wrong. A filter of the table's images;
  not measured with fewer than ``all_correct_min_images`` images left.
- :data:`PREDICTED`: each model explains its own predicted class. The maps of a correctly classified image
  are the same maps, so only the misclassified images' maps are made again (stage ``predicted``); their
  rows are stored under the method label ``M@predicted`` (:func:`binsight.study.names.predicted_label`) for
  every image, and the row reads those labels in place of the methods' own. Not measured for a verdict
  whose methods have no such rows.
- :data:`MATCHED`: each FP model replaced by an FP model trained to the accuracy of the BNN of its seed
  (``models.matched_fp``; its table name ``fp-N+matched``, :func:`binsight.study.names.matched_name`). Not
  measured without them.

Each function returns the context the row is computed on, or the reason (a string) it is not measured.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from binsight.study.names import MATCHED_FP, predicted_label, split_variant
from binsight.study.verdicts.guards import verdict_methods
from binsight.study.verdicts.records import ModelInfo
from binsight.study.verdicts.table import Context, Table

ALL_CORRECT = "images every model classifies correctly"
PREDICTED = "each model explains its predicted class"
MATCHED = "FP models matched to the BNNs' accuracy"

METHOD_FIELDS = ("similarity_method", "noise_method", "convergence_method", "gradcam_method", "faithfulness_method")
"""The settings naming a method that the predicted-class row replaces by its ``@predicted`` label."""


def base_models(ctx: Context) -> list[ModelInfo]:
    """The models of the default set (no surrogate variants, no matched FP models)."""
    return [m for m in ctx.models if not m.is_variant]


def all_correct(ctx: Context) -> tuple[Table | None, int, int, str]:
    """(the table cut to the images every base model classifies correctly, how many remain, of how many
    images with every model's prediction, why there is none); computed once per table."""
    def make():
        models = base_models(ctx)
        correct = [ctx.table.vector("correct", "", m.name) for m in models]
        missing = [m.name for m, v in zip(models, correct) if v is None]
        if not models or missing:
            return None, 0, 0, f"no predictions of {', '.join(missing) or 'any model'} (stage predictions)"
        stacked = np.stack(correct)
        predicted = np.isfinite(stacked).all(axis=0)
        keep = predicted & (stacked > 0.5).all(axis=0)
        images = set(ctx.table.images[keep].tolist())
        return Table([r for r in ctx.table.rows if r.image in images]), int(keep.sum()), int(predicted.sum()), ""
    key = ("all-correct", tuple(m.name for m in base_models(ctx)))
    if key not in ctx.table.cache:
        ctx.table.cache[key] = make()
    return ctx.table.cache[key]


def all_correct_context(ctx: Context) -> tuple[Context | str, str]:
    """(the base models' context on the images every one of them classifies correctly, or why the row is
    not measured; "n of N images" for its reading)."""
    table, n, total, why = all_correct(ctx)
    if table is None:
        return why, ""
    least = ctx.settings.all_correct_min_images
    if n < least:
        return (f"{n} of {total} images are classified correctly by every model, fewer than "
                f"verdicts.all_correct_min_images = {least}"), ""
    return Context(table, base_models(ctx), ctx.settings, ctx.methods, ctx.samples), f"{n} of {total} images"


def predicted_context(ctx: Context, number: int) -> Context | str:
    """The base models' context with every method replaced by its predicted-class maps (``M@predicted``), or
    why the row is not measured for verdict ``number`` (its methods have no such rows). The checks' methods
    (the convergence check's, the surrogate-free check's) have none and need none: the row's status is the
    verdict's primary test, which does not read them."""
    s = ctx.settings
    checks = {s.convergence_method, s.surrogate_free_method, s.surrogate_free_convergence_method}
    needed = [m for m in dict.fromkeys(verdict_methods(ctx, number)) if m not in checks]
    missing = [m for m in needed if predicted_label(m) not in ctx.table.methods]
    if missing:
        return (f"no predicted-class maps of {', '.join(missing)} (verdicts.predicted_labels makes them for the "
                "similarity and noise methods, and not when methods.target is already \"predicted\")")
    settings = dataclasses.replace(s, **{f: predicted_label(getattr(s, f)) for f in METHOD_FIELDS})
    samples = {**ctx.samples, **{predicted_label(k): v for k, v in ctx.samples.items()}}
    return Context(ctx.table, base_models(ctx), settings, [predicted_label(m) for m in ctx.methods], samples)


def is_matched(model: ModelInfo) -> bool:
    """Whether ``model`` is an accuracy-matched FP model (``BASE+matched``)."""
    return model.precision == "fp" and model.is_variant and split_variant(model.name)[1] == MATCHED_FP


def matched_context(ctx: Context) -> Context | str:
    """The context with each base FP model replaced by its accuracy-matched FP model (and the base BNNs),
    or why the row is not measured (no matched model, or one missing)."""
    base = base_models(ctx)
    matched = {split_variant(m.name)[0]: m for m in ctx.models if is_matched(m)}
    if not matched:
        return ("no accuracy-matched FP models (models.matched_fp is off, or no FP model trained by the study has a "
                "BNN of its seed)")
    fp = [m for m in base if m.precision == "fp"]
    missing = [m.name for m in fp if m.name not in matched]
    if missing:
        return f"no accuracy-matched FP model of {', '.join(missing)}"
    return ctx.replace(models=[matched[m.name] for m in fp] + [m for m in base if m.precision == "bnn"])


def control_contexts(ctx: Context, number: int) -> list[tuple[str, Context | str, str]]:
    """(setting, the context of the row or why it is not measured, a note for its reading) of each control
    of verdict ``number``."""
    correct, note = all_correct_context(ctx)
    return [(ALL_CORRECT, correct, note), (PREDICTED, predicted_context(ctx, number), ""),
            (MATCHED, matched_context(ctx), "")]
