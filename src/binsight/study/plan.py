"""What a study computes, resolved once from its configuration: the :class:`StudyPlan`.

:func:`make_plan` turns a :class:`~binsight.study.config.StudyConfig` (and the caller's own models) into a
plan before anything is written or any process group is set up: the device (refused here if this
machine lacks it), the configuration's hash, the method labels (:class:`MethodSpec`), the base models to
obtain (:class:`ModelSource`) and the image set to draw (:class:`ImageChoice`). Every stage reads the
plan; none reads the configuration's dicts again.

A :class:`MethodSpec` is one method label of the tidy table: the explainer it calls (from the registry),
its keyword options, how many of the study's images it explains, and which checks it joins. The study's
method labels are the configured methods (``methods.run``), each method's convergence variant (same
explainer, options overridden, on the first ``measures.convergence_images`` images) and the chance maps.

Before any work the plan says which verdicts the study cannot decide, and why (:func:`undecidable`: no
FP or no BNN model, one model of a precision, a verdict's method not run or its measures off, too few
images); each is a :class:`~binsight._utils.BinsightWarning` (``warning: ...`` on the command line), and
the study runs what it can.

A :class:`StudyModel` is one "model" of the table: a loaded network explained with one sign surrogate.
A BNN whose surrogate can be switched is, besides itself, explained under every other surrogate of
``verdicts.robustness_surrogates`` as a variant named ``"BASE+SURROGATE"`` (same network, same group).
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass, field
from typing import Any, Sequence

from torch import nn

from binsight._utils import BinsightWarning
from binsight.models.factory import FactoryError, ModelSpec
from binsight.nn import surrogate_of
from binsight.study.config import StudyConfig, config_hash, explainer_class, own_specs, resolve_device
from binsight.study.measures import chance_labels
from binsight.study.names import FOREIGN_SURROGATE, check_unique_names, is_variant, validate_model_name, variant_name
from binsight.study.records import ModelRecord


@dataclass(frozen=True)
class MethodSpec:
    """One method label. ``chance``: a chance map (no explainer). ``n_images``: the first n images."""

    label: str
    explainer: str
    options: dict[str, Any] = field(default_factory=dict, hash=False)
    n_images: int = 0
    seeded: bool = False
    robustness: bool = False
    sanity: bool = False
    sanity_options: dict[str, Any] = field(default_factory=dict, hash=False)
    chance_test: bool = False
    chance: bool = False


@dataclass(frozen=True)
class ModelSource:
    """One base model of the study and where it comes from: trained here (``seed``), a binsight checkpoint
    (``path``, at ``position`` among the checkpoints) or the user's own model (``own``: the module or None,
    and its :class:`~binsight.models.factory.ModelSpec`). ``name`` and ``precision`` may be "" for a
    checkpoint (then its position and recorded precision decide)."""

    name: str
    precision: str
    group: str
    seed: int | None = None
    path: str = ""
    position: int = 0
    own: tuple[nn.Module | None, ModelSpec] | None = field(default=None, compare=False)

    @property
    def trained(self) -> bool:
        """Whether the model is trained (or taken from the training cache) rather than given."""
        return not self.path and self.own is None


@dataclass(frozen=True)
class ImageChoice:
    """Which images are explained: ``n`` of dataset ``name``'s ``split``, drawn with ``seed``;
    ``options``: the reader's keyword options (root, download, masks, size, channels)."""

    name: str
    split: str
    n: int
    seed: int
    options: dict[str, Any] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class StudyPlan:
    """The configuration resolved once: ``device`` (as ``run.device`` resolves on this machine; a rank of a
    torchrun job computes on its own GPU, see :func:`binsight.study.launch.start`), ``hash`` (the
    configuration hash), ``methods``, ``sources`` (the base models), ``images``, and ``chunk_size``
    (images per work unit) and ``batch_size`` (images through a model at once); ``notes``: the verdicts
    the study cannot decide, and why (:func:`undecidable`)."""

    config: StudyConfig
    device: str
    hash: str
    methods: tuple[MethodSpec, ...]
    sources: tuple[ModelSource, ...]
    images: ImageChoice
    notes: tuple[str, ...] = ()

    @property
    def chunk_size(self) -> int:
        return self.config.run.chunk_size

    @property
    def batch_size(self) -> int:
        return self.config.run.batch_size

    @property
    def own_models(self) -> dict[str, tuple[nn.Module | None, ModelSpec]]:
        """The own models by name (module or None, spec)."""
        return {s.name: s.own for s in self.sources if s.own is not None}


@dataclass
class StudyModel:
    """A model of the table: name, precision, group, the surrogate it is explained with ("" for FP),
    the loaded module (eval mode, on the device), the base model's name, and its models.json record."""

    name: str
    precision: str
    group: str
    surrogate: str
    module: nn.Module
    base: str = ""
    record: ModelRecord | None = None

    @property
    def is_variant(self) -> bool:
        return is_variant(self.name)


def make_plan(config: StudyConfig, *, models: Sequence[Any] = ()) -> StudyPlan:
    """The plan of ``config`` with the caller's own ``models`` (each a ModelSpec, or (module, ModelSpec));
    raises :class:`~binsight.study.config.ConfigError` for a device this machine lacks and
    :class:`~binsight.study.store.RunFolderError` for model names that are unsafe or repeat, before
    anything is written."""
    device = resolve_device(config.run.device)
    own = [*[(None, spec) for spec in own_specs(config.models)], *(own_pair(m) for m in models)]
    check_unique_names([validate_model_name(ck.name) for ck in config.models.checkpoints if ck.name]
                       + [validate_model_name(spec.display_name()) for _, spec in own])
    sources = tuple(model_sources(config, own))
    notes = tuple(undecidable(config, sources))
    if os.environ.get("RANK", "0") == "0":  # under torchrun, rank 0 alone says so
        for note in notes:
            warnings.warn(note, BinsightWarning, stacklevel=2)
    return StudyPlan(config, device, config_hash(config), tuple(method_specs(config)), sources, image_choice(config),
                     notes)


MIN_IMAGES = 2
"""The fewest images a verdict is decided on: its chance level pairs each image with another image."""


def undecidable(config: StudyConfig, sources: Sequence[ModelSource]) -> list[str]:
    """One line per verdict (or part of a verdict) the study cannot decide, saying why; [] for the default
    study. Model counts are checked where every model's precision is known before loading (a checkpoint
    without a declared precision is not)."""
    s, me, ms = config.verdicts, config.methods, config.measures
    labels = config.method_names()
    precisions = [source.precision for source in sources]
    counts = {p: precisions.count(p) for p in ("fp", "bnn")} if all(precisions) else None

    def images(label: str) -> int:
        """How many images the method (or convergence check) ``label`` explains."""
        return next((spec.n_images for spec in method_specs(config) if spec.label == label), 0)

    def method_reasons(method: str, measures: bool, family: str) -> list[str]:
        if method not in labels:
            return [f"its method {method!r} does not run (methods.run: {', '.join(me.run)})"]
        reasons = [] if measures else [f"measures.{family} is off"]
        if images(method) < MIN_IMAGES:
            reasons.append(f"{method} explains {images(method)} image(s), fewer than {MIN_IMAGES}")
        return reasons

    def fp_and_bnn() -> list[str]:
        if counts is None or (counts["fp"] and counts["bnn"]):
            return []
        return [f"it compares FP with BNN models (FP models: {counts['fp']}, BNN models: {counts['bnn']})"]

    def baselines() -> list[str]:
        if counts is None or not (counts["fp"] and counts["bnn"]) or min(counts.values()) >= 2:
            return []
        return [f"the within-precision baselines (FP-vs-FP, BNN-vs-BNN) need two models of each precision "
                f"(FP models: {counts['fp']}, BNN models: {counts['bnn']})"]

    others = [m for m in labels if m not in {s.faithfulness_method, s.convergence_method, *chance_labels()}]
    verdicts = [  # (verdict, why it cannot be decided, why a part of it cannot be)
        (f"verdict 1 ({s.similarity_method} maps of FP and BNN models alike)",
         method_reasons(s.similarity_method, ms.similarity, "similarity") + fp_and_bnn() + baselines(), []),
        (f"verdict 2 ({s.noise_method} maps of BNNs noisier)",
         method_reasons(s.noise_method, ms.noise, "noise") + fp_and_bnn(),
         [f"its convergence check: {why}" for why in convergence_reasons(config, labels, images)]),
        (f"verdict 3 ({s.gradcam_method} maps differ between FP and BNN models)",
         method_reasons(s.gradcam_method, ms.similarity, "similarity") + fp_and_bnn(),
         [f"its similarity parts: {why}" for why in baselines()]
         + ([] if s.gradcam_method in ms.chance_methods else
            [f"its nonsensical-maps part: measures.chance_methods leaves out {s.gradcam_method!r}"])),
        (f"verdict 4 ({s.faithfulness_method} more faithful than the other methods)",
         method_reasons(s.faithfulness_method, ms.faithfulness, "faithfulness")
         + ([] if others else ["no other method runs to compare it with"]), []),
    ]
    notes = []
    for name, reasons, parts in verdicts:
        if reasons:
            notes.append(f"{name} cannot be decided: {'; '.join(reasons)}; the study runs the rest")
        else:
            notes += [f"{name}: part of it cannot be decided, {why}" for why in parts]
    return notes


def convergence_reasons(config: StudyConfig, labels: Sequence[str], images: Any) -> list[str]:
    """Why verdict 2's convergence check (``verdicts.convergence_method``) cannot be decided ([] if it can)."""
    label, noise = config.verdicts.convergence_method, config.verdicts.noise_method
    if label not in labels:
        return [f"{label!r} (verdicts.convergence_method) is not a method of the study; give "
                f"methods.{noise}.convergence"]
    if images(label) < MIN_IMAGES:
        return [f"{label} explains {images(label)} image(s), fewer than {MIN_IMAGES} (measures.convergence_images)"]
    return []


def model_sources(config: StudyConfig, own: Sequence[tuple[nn.Module | None, ModelSpec]]) -> list[ModelSource]:
    """The base models: the checkpoints and own models where given, else one per precision and seed."""
    m = config.models
    given = [ModelSource(spec.display_name(), spec.precision, spec.group, own=(module, spec)) for module, spec in own]
    if m.checkpoints or given:
        return [ModelSource(ck.name, ck.precision, str(i), path=ck.path, position=i)
                for i, ck in enumerate(m.checkpoints)] + given
    return [ModelSource(f"{p}-{s}", p, str(s), seed=s) for p in m.precisions for s in m.seeds]


def image_choice(config: StudyConfig) -> ImageChoice:
    d = config.data
    options = {key: value for key, value in (("masks", d.masks), ("size", d.image_size), ("channels", d.channels))
               if value}
    return ImageChoice(d.name, d.split, d.n_images, d.seed,
                       {"root": d.root or None, "download": d.download, **options})


def method_specs(config: StudyConfig) -> list[MethodSpec]:
    """Every method label of the study, in table order (see the module docstring)."""
    me, n = config.methods, config.data.n_images
    specs = []
    for name in me.run:
        t = me.table(name)
        explainer = t.explainer or name
        seeded = explainer_class(explainer).seeded
        specs.append(MethodSpec(name, explainer, dict(t.options), min(t.n_images or n, n), seeded, t.robustness,
                                t.sanity, {**t.options, **t.sanity_options},
                                chance_test=name in config.measures.chance_methods))
    for name in me.run:
        t = me.table(name)
        if t.convergence:
            explainer = t.explainer or name
            specs.append(MethodSpec(t.convergence_label, explainer, {**t.options, **t.convergence},
                                    min(config.measures.convergence_images, t.n_images or n, n),
                                    explainer_class(explainer).seeded))
    if config.measures.baselines:
        specs += [MethodSpec(label, "", n_images=n, chance=True) for label in chance_labels()]
    return specs


def variants(model: StudyModel, surrogates: Sequence[str]) -> list[StudyModel]:
    """``model`` explained under each other surrogate: binsight BNNs only (their sign can be switched)."""
    if model.precision != "bnn" or model.surrogate in ("", FOREIGN_SURROGATE):
        return []
    out = []
    for s in surrogates:
        if s != model.surrogate:
            name = variant_name(model.name, s)
            record = None if model.record is None else model.record.variant(name, s)
            out.append(StudyModel(name, "bnn", model.group, s, model.module, base=model.name, record=record))
    return out


def explain_surrogate(config: StudyConfig, module: nn.Module, precision: str) -> str:
    """The surrogate a model is explained with: "" for FP; the configured or trained one for a binsight
    BNN; "own" for a BNN without switchable sign activations."""
    if precision == "fp":
        return ""
    trained = surrogate_of(module)
    if trained is None:
        return FOREIGN_SURROGATE
    return config.models.explain_surrogate or trained


def own_pair(item: Any) -> tuple[nn.Module | None, ModelSpec]:
    """(module or None, spec) of one entry of ``models``: a ModelSpec, or (module, ModelSpec)."""
    if isinstance(item, ModelSpec):
        return None, item
    if isinstance(item, tuple) and len(item) == 2 and isinstance(item[1], ModelSpec):
        return item[0], item[1]
    raise FactoryError(f"models: expected a ModelSpec or (module, ModelSpec), got {type(item).__name__}; "
                       "describe each model with binsight.models.ModelSpec")
