"""Checking a study configuration: values of the right type that still cannot work are a :class:`ConfigError`.

The lists a key is checked against (explanation methods, datasets, architectures, precisions, sign
surrogates, measures) come from binsight's registries, so a method, dataset or surrogate registered there is
accepted here without an edit to this file.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
import typing
from typing import Any

from binsight.errors import BinsightError
from binsight.models import PRECISIONS
from binsight.study.config.sections import (CheckpointConfig, ConfigError, DataConfig, MeasuresConfig, MethodConfig,
                                            MethodsConfig, ModelsConfig, RunConfig, StudyConfig, VerdictsConfig)
from binsight.study.names import seed_check_label

TARGETS = ("label", "predicted")
AUTOMATIC_NAME = re.compile(r"(fp|bnn)-[0-9]+")
MAX_SEED = 2**32 - 1
"""Largest ``data.seed`` and ``verdicts.seed``: numpy's and torch's generators take it, and a chunk's seed
derived from it (``data.seed`` x 100 003 + chunk) stays within torch's 64-bit seeds."""
RUNNER_OPTIONS = frozenset({"model", "surrogate", "batch_size", "self"})
"""Explainer keyword options the runner sets itself (``seed`` too, for a ``seeded`` explainer)."""


def method_names() -> list[str]:
    """Registered explainer names; a family (Captum) as ``"family:NAME"``."""
    import binsight.explain as explain

    return list(explain.available()) + [f"{family}:NAME" for family in explain.families()]


def explainer_class(name: str) -> type | None:
    """The registered explainer class that ``name`` builds (``"captum:ClassName"`` included); None if unknown."""
    import binsight.explain as explain

    try:
        return explain.explainer_class(name)
    except BinsightError:
        return None


def explainer_options(cls: type) -> tuple[set[str], bool]:
    """(keyword options a user may set, whether any keyword is accepted) of an explainer class: its
    :func:`~binsight.explain.options.keyword_options` but those the runner sets itself."""
    from binsight.explain.options import keyword_options, takes_any_keyword

    taken = RUNNER_OPTIONS | ({"seed"} if cls.seeded else set())
    return set(keyword_options(cls)) - taken, takes_any_keyword(cls)


def dataset_names() -> list[str]:
    from binsight.data import available

    return list(available())


def arch_names() -> list[str]:
    from binsight.models import available

    return list(available())


def surrogate_names() -> list[str]:
    from binsight.nn import SURROGATES

    return SURROGATES.names()


def validate(config: StudyConfig) -> None:
    """Raise :class:`ConfigError` for values of the right type that still cannot work."""
    _validate_data(config.data)
    _validate_models(config.models)
    _validate_methods(config.methods, config.measures)
    _validate_measures(config.measures, config.methods)
    _validate_verdicts(config.verdicts)
    _validate_run(config.run)


def _validate_data(d: DataConfig) -> None:
    _one_of("data.name", d.name, dataset_names())
    _one_of("data.split", d.split, ("train", "test", "all"))
    _positive("data.n_images", d.n_images)
    for key in ("masks", "image_size", "channels"):
        if getattr(d, key) and d.name != "image-folder":
            raise ConfigError(f"data.{key}: only used with data.name = 'image-folder'")
    if d.image_size < 0 or d.channels not in (0, 1, 3):
        raise ConfigError("data.image_size must be >= 0 and data.channels 0, 1 or 3 (0 = the reader's default)")
    _seed("data.seed", d.seed)


def _validate_models(m: ModelsConfig) -> None:
    if not (m.checkpoints or m.own):
        _one_of("models.arch", m.arch, arch_names())
        if not m.precisions:
            raise ConfigError("models.precisions: give at least one of 'fp', 'bnn'")
        for i, p in enumerate(m.precisions):
            _one_of(f"models.precisions[{i}]", p, PRECISIONS)
        _unique("models.precisions", m.precisions)
        if not m.seeds:
            raise ConfigError("models.seeds: give at least one seed")
        for i, s in enumerate(m.seeds):
            if s < 0:
                raise ConfigError(f"models.seeds[{i}]: a seed must be >= 0, got {s}")
        _unique("models.seeds", m.seeds)
    for name in ("epochs_fp", "epochs_bnn", "train_batch_size", "train_subset", "test_subset"):
        if getattr(m, name) < 0:
            whole = "the whole split" if "subset" in name else "the recipe's"
            raise ConfigError(f"models.{name}: must be >= 0 (0 = {whole})")
    for name in ("lr_fp", "lr_bnn"):
        if not 0 <= getattr(m, name) <= max_lr():
            raise ConfigError(f"models.{name}: a learning rate in (0, {max_lr():g}], or 0 for the recipe's; "
                              f"got {getattr(m, name)}")
    _one_of("models.train_surrogate", m.train_surrogate, surrogate_names())
    if m.explain_surrogate:
        _one_of("models.explain_surrogate", m.explain_surrogate, surrogate_names())
    _validate_checkpoints(m.checkpoints)
    for i, size in enumerate(m.matched_fp):
        _positive(f"models.matched_fp[{i}]", size)
    _unique("models.matched_fp", m.matched_fp)
    own_specs(m)


def _validate_checkpoints(checkpoints: list[CheckpointConfig]) -> None:
    """Paths given, precisions known, names safe and unique and never of the automatic form."""
    names = []
    for i, ck in enumerate(checkpoints):
        key = f"models.checkpoints[{i}]"
        if not ck.path:
            raise ConfigError(f"{key}.path: give the checkpoint file (.safetensors)")
        if ck.precision:
            _one_of(f"{key}.precision", ck.precision, PRECISIONS)
        if ck.name:
            check_model_name(ck.name, f"{key}.name")
            names.append(ck.name)
    _unique("models.checkpoints names", names)


def own_specs(m: ModelsConfig) -> list[Any]:
    """The :class:`binsight.models.factory.ModelSpec` of each ``[[models.own]]`` table (relative weights
    paths taken from ``own_dir``); a table that is not a spec is a :class:`ConfigError` naming it."""
    from binsight.models.factory import ModelSpec, check_spec

    specs = []
    for i, table in enumerate(m.own):
        key = f"models.own[{i}]"
        try:
            spec = ModelSpec.from_dict(table, base_dir=m.own_dir or None)
            if spec.input_size is None:  # the dataset's, filled in by the runner; checked with a stand-in here
                check_spec(dataclasses.replace(spec, input_size=(1, 1, 1) if spec.mean is None else
                                               (len(spec.mean), 1, 1)), need_factory=True)
            else:
                check_spec(spec, need_factory=True)
        except (BinsightError, TypeError) as e:
            raise ConfigError(f"{key}: {e}") from None
        specs.append(spec)
    return specs


def check_model_name(name: str, key: str) -> None:
    """A model name of the configuration is never of the automatic form; the run folder's rule
    (``[A-Za-z0-9][A-Za-z0-9_.-]*``, at most 64 characters, never a path or a variant) is checked by the
    runner with the store's helper before anything is written."""
    if AUTOMATIC_NAME.fullmatch(name):
        raise ConfigError(f"{key}: {name!r} has the form of an automatic name (fp-N, bnn-N), which another "
                          "checkpoint may get; choose another name")


def _validate_methods(me: MethodsConfig, ms: MeasuresConfig) -> None:
    if not me.run:
        raise ConfigError("methods.run: give at least one method")
    _unique("methods.run", me.run)
    _one_of("methods.target", me.target, TARGETS)
    for i, name in enumerate(me.run):
        if name not in me.tables and explainer_class(name) is None:
            _one_of(f"methods.run[{i}]", name, tuple(method_names()))
    for name, table in me.tables.items():
        _validate_method_table(name, table, me, ms)
    labels = me.run + [me.table(m).convergence_label for m in me.run if me.table(m).convergence]
    labels += [seed_check_label(m) for m in me.run if me.table(m).seed_check_images]
    from binsight.study.measures import chance_labels

    clash = sorted(set(labels) & set(chance_labels()))
    if clash:
        raise ConfigError(f"methods: {clash[0]!r} is the label of a chance baseline; name the method otherwise")
    _unique("method labels (methods.run, convergence and seed check labels)", labels)


def _validate_method_table(name: str, t: MethodConfig, me: MethodsConfig, ms: MeasuresConfig) -> None:
    """The table's explainer exists, its options are the explainer's, and its study keys make sense."""
    key = f"methods.{name}"
    explainer = t.explainer or name
    cls = explainer_class(explainer)
    if cls is None:
        where = f"{key}.explainer" if t.explainer else key
        _one_of(where, explainer, tuple(method_names()))
    allowed, free = explainer_options(cls)
    for what, options in (("", t.options), (".sanity_options", t.sanity_options), (".convergence", t.convergence)):
        unknown = sorted(set(options) - allowed)
        if unknown and not free:
            raise ConfigError(f"{key}{what}.{unknown[0]}: not an option of explainer {explainer!r}; "
                              f"its options: {', '.join(sorted(allowed)) or 'none'}")
        for option, value in options.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ConfigError(f"{key}{what}.{option}: must be a finite number, got {value}")
    if t.n_images < 0:
        raise ConfigError(f"{key}.n_images: must be >= 0 (0 = all of data.n_images)")
    if t.seed_check_images < 0:
        raise ConfigError(f"{key}.seed_check_images: must be >= 0 (0 = no seed check)")
    if t.seed_check_images and "start" not in allowed:
        raise ConfigError(f"{key}.seed_check_images: explainer {explainer!r} has no `start` option (no random "
                          "starting draw to check); set it to 0")


def _validate_measures(ms: MeasuresConfig, me: MethodsConfig) -> None:
    if not 0 < ms.top_k <= 1:
        raise ConfigError(f"measures.top_k: must be in (0, 1], got {ms.top_k}")
    for name in ("curve_steps", "sanity_images", "convergence_images"):
        _positive(f"measures.{name}", getattr(ms, name))
    if ms.mask_dilation < 0:
        raise ConfigError(f"measures.mask_dilation: pixels, must be >= 0, got {ms.mask_dilation}")
    if ms.chance_methods and ms.chance_maps < min_chance_maps():
        raise ConfigError(f"measures.chance_maps: must be at least {min_chance_maps()} while measures.chance_methods "
                          f"is set (with N chance maps of each kind a map's smallest p-value is 1 / (2 N + 1), which "
                          f"must not exceed the test's level {_chance_level()}); got {ms.chance_maps}")
    if ms.chance_images < 0:
        raise ConfigError(f"measures.chance_images: must be >= 0 (0 = every image), got {ms.chance_images}")
    if ms.control_images < 0:
        raise ConfigError(f"measures.control_images: must be >= 0 (0 = every chance-tested image), got "
                          f"{ms.control_images}")
    if not ms.road_percentages:
        raise ConfigError("measures.road_percentages: give at least one percent of pixels for ROAD to impute, "
                          "e.g. [10.0, 30.0, 50.0, 70.0, 90.0]")
    for i, p in enumerate(ms.road_percentages):
        if not 0 < p < 100:
            raise ConfigError(f"measures.road_percentages[{i}]: a percent of pixels, must be in (0, 100), got {p}")
    for i, name in enumerate(ms.chance_methods):
        if name not in me.run:
            raise ConfigError(f"measures.chance_methods[{i}]: {name!r} is not in methods.run ({', '.join(me.run)}); "
                              "leave measures.chance_methods out to test every method that runs")
    _unique("measures.chance_methods", ms.chance_methods)


def max_lr() -> float:
    """The largest learning rate training accepts (:data:`binsight.train.loop.MAX_LR`)."""
    from binsight.train.loop import MAX_LR

    return MAX_LR


def _chance_level() -> float:
    from binsight.metrics.chance import LEVEL

    return LEVEL


def min_chance_maps() -> int:
    """The fewest chance maps of each kind with which a map can be better than chance at the test's level
    (:data:`binsight.metrics.chance.LEVEL`): the smallest p-value, 1 / (2 N + 1), at most the level (10 at 0.05)."""
    return math.ceil((1 / _chance_level() - 1) / 2)


def _validate_verdicts(v: VerdictsConfig) -> None:
    from binsight.study.measures import FAITHFULNESS_MEASURES, NOISE_MEASURES, PAIR_MEASURES

    for key, allowed in (("similarity_measures", PAIR_MEASURES.names()), ("noise_measures", NOISE_MEASURES.names()),
                         ("faithfulness_measures", FAITHFULNESS_MEASURES), ("lower_is_better", FAITHFULNESS_MEASURES),
                         ("evidence_measures", ("energy_inside", "pointing_game"))):
        values = getattr(v, key)
        for i, name in enumerate(values):
            _one_of(f"verdicts.{key}[{i}]", name, allowed)
        _unique(f"verdicts.{key}", values)
    for key in ("similarity_measures", "noise_measures", "faithfulness_measures", "evidence_measures"):
        if not getattr(v, key):
            raise ConfigError(f"verdicts.{key}: give at least one measure")
    for key, measures in (("primary_similarity", "similarity_measures"), ("primary_noise", "noise_measures"),
                          ("primary_faithfulness", "faithfulness_measures"), ("primary_evidence", "evidence_measures")):
        _one_of(f"verdicts.{key} (one of verdicts.{measures})", getattr(v, key), getattr(v, measures))
    if not 0 < v.confidence < 1:
        raise ConfigError(f"verdicts.confidence: must be in (0, 1), got {v.confidence}")
    _positive("verdicts.n_resamples", v.n_resamples)
    if v.all_correct_min_images < 2:
        raise ConfigError(f"verdicts.all_correct_min_images: a verdict needs at least 2 images, got "
                          f"{v.all_correct_min_images}")
    _seed("verdicts.seed", v.seed)
    for name in ("similarity_margin", "noise_margin", "nonsensical_margin", "faithfulness_margin", "evidence_margin"):
        if not getattr(v, name) >= 0:
            raise ConfigError(f"verdicts.{name}: must be a finite number >= 0")
    for i, s in enumerate(v.robustness_surrogates):
        _one_of(f"verdicts.robustness_surrogates[{i}]", s, surrogate_names())
    _unique("verdicts.robustness_surrogates", v.robustness_surrogates)


def _validate_run(r: RunConfig) -> None:
    _positive("run.batch_size", r.batch_size)
    _positive("run.chunk_size", r.chunk_size)
    cores = os.cpu_count() or 1
    if not 0 <= r.threads <= cores:
        raise ConfigError(f"run.threads: {r.threads} is not between 0 (torch's default) and this machine's "
                          f"{cores} CPU cores; give a value in that range")
    if not (r.device in ("auto", "cpu", "cuda", "mps") or re.fullmatch(r"cuda:[0-9]+", r.device)):
        raise ConfigError(f"run.device: expected 'auto', 'cpu', 'cuda', 'cuda:N' or 'mps', got {r.device!r}")


def resolve_device(device: str) -> str:
    """The torch device of ``run.device``: "auto" = "cuda" when available, else "cpu"; a device this
    machine lacks is a :class:`ConfigError` (checked by :func:`binsight._utils.resolve_device`)."""
    from binsight import _utils

    return str(_utils.resolve_device(device, error=lambda message: ConfigError(f"run.device: {message}")))


def _one_of(key: str, value: str, allowed: typing.Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(map(repr, allowed))}")


def _positive(key: str, value: int) -> None:
    if value < 1:
        raise ConfigError(f"{key}: must be a positive integer, got {value}")


def _seed(key: str, value: int) -> None:
    if not 0 <= value <= MAX_SEED:
        raise ConfigError(f"{key}: must be from 0 to {MAX_SEED}, got {value}")


def _unique(key: str, values: list) -> None:
    if len(set(values)) != len(values):
        raise ConfigError(f"{key}: values repeat: {values}")
