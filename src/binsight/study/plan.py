"""What a study computes, derived from its configuration alone: the method labels and the model variants.

A :class:`MethodSpec` is one method label of the tidy table: the explainer it calls (from the registry),
its keyword options, how many of the study's images it explains, and which checks it joins. The study's
method labels are the configured methods (``methods.run``), each method's convergence variant (same
explainer, options overridden, on the first ``measures.convergence_images`` images) and the chance maps.

A :class:`StudyModel` is one "model" of the table: a loaded network explained with one sign surrogate.
A BNN whose surrogate can be switched is, besides itself, explained under every other surrogate of
``verdicts.robustness_surrogates`` as a variant named ``"BASE+SURROGATE"`` (same network, same group).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from torch import nn

from binsight.study.config import StudyConfig, explainer_class
from binsight.study.store import variant_name

FOREIGN_SURROGATE = "own"
"""The surrogate recorded for a BNN whose sign cannot be switched (not a binsight BNN)."""


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
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def is_variant(self) -> bool:
        return bool(self.base) and self.base != self.name


def method_specs(config: StudyConfig) -> list[MethodSpec]:
    """Every method label of the study, in table order (see the module docstring)."""
    from binsight.study.measures import chance_labels

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


def variants(model: StudyModel, surrogates: list[str]) -> list[StudyModel]:
    """``model`` explained under each other surrogate: binsight BNNs only (their sign can be switched)."""
    if model.precision != "bnn" or model.surrogate in ("", FOREIGN_SURROGATE):
        return []
    return [StudyModel(variant_name(model.name, s), "bnn", model.group, s, model.module, base=model.name,
                       info=model.info)
            for s in surrogates if s != model.surrogate]


def explain_surrogate(config: StudyConfig, module: nn.Module, precision: str) -> str:
    """The surrogate a model is explained with: "" for FP; the configured or trained one for a binsight
    BNN; "own" for a BNN without switchable sign activations."""
    from binsight.nn import surrogate_of

    if precision == "fp":
        return ""
    trained = surrogate_of(module)
    if trained is None:
        return FOREIGN_SURROGATE
    return config.models.explain_surrogate or trained
