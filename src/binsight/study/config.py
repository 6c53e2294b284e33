"""The study's configuration: dataclasses whose defaults are the embedded default study, read from TOML.

Every key of a TOML file must be one of the fields below, with the field's type; anything else is a
:class:`ConfigError` naming the key path, e.g. ``methods.smoothgrad.n_samples: expected int, got str``.
A key left out keeps its default. :func:`to_toml` writes a resolved configuration back as TOML (what
``binsight study --print-config`` prints and what a run folder keeps as ``config.toml``), and
:func:`config_hash` is the fingerprint of everything that changes a run's results.

The lists a key is checked against (explanation methods, datasets, architectures, precisions, sign
surrogates, measures) come from binsight's registries, so a method, dataset or surrogate registered
there is accepted here without an edit to this file.

Methods. ``methods.run`` lists the methods explained; each has a table ``[methods.NAME]`` of generic study
keys (:class:`MethodConfig`: how many images, whether it is in the sanity check and the robustness check,
its convergence variant) and, beside them, the explainer's own keyword options (e.g. ``n_samples``), which
are checked against the explainer's signature. A table may name another registered explainer with
``explainer = "..."`` (``"captum:ClassName"`` included), so one explainer can run under two labels.

Hash. :func:`config_hash` covers every key except ``run.progress`` and ``run.threads`` (display and
speed only). ``run.batch_size`` and ``models.train_batch_size`` are hashed: the batch size changes the
order of floating-point reductions inside the model (results differ by about 1e-7), and training batches
change the trained weights, so a run continued with another batch size is refused as another
configuration rather than mixed. ``run.device`` is hashed as the device it resolves to ("auto" becomes
"cuda" or "cpu").
"""

from __future__ import annotations

import dataclasses
import hashlib
import inspect
import json
import math
import os
import re
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from binsight.errors import BinsightError
from binsight.models import PRECISIONS

TARGETS = ("label", "predicted")
AUTOMATIC_NAME = re.compile(r"(fp|bnn)-[0-9]+")
RUNNER_OPTIONS = frozenset({"model", "surrogate", "batch_size", "self"})
"""Explainer keyword options the runner sets itself (``seed`` too, for a ``seeded`` explainer)."""


class ConfigError(BinsightError):
    """A study configuration that cannot be used; the message names the key and what to do."""


# --------------------------------------------------------------------------------------------------------
# the registries' lists


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
    """(keyword options a user may set, whether any keyword is accepted) of an explainer class."""
    params = inspect.signature(cls.__init__).parameters
    free = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())
    names = {n for n, p in params.items() if p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}
    taken = RUNNER_OPTIONS | ({"seed"} if cls.seeded else set()) | {cls.member_option}
    return names - taken, free


def dataset_names() -> list[str]:
    from binsight.data import available

    return list(available())


def arch_names() -> list[str]:
    from binsight.models import available

    return list(available())


def surrogate_names() -> list[str]:
    from binsight.nn import SURROGATES

    return SURROGATES.names()


# --------------------------------------------------------------------------------------------------------
# the configuration


@dataclass
class DataConfig:
    """Which images are explained.

    name: a registered dataset ("fashion-mnist", "cifar-10", "image-folder", ...). split: the split the
    images are drawn from ("test" or "train"). root: the dataset's files ("" = the default place,
    downloading where allowed). download: fetch a missing dataset into the cache (where the dataset has a
    download). masks: image-folder only, a side file of foreground masks or boxes. image_size / channels:
    image-folder only (0 = the reader's default). n_images: how many images of ``split`` are explained.
    seed: the seed the images are drawn with, without replacement.
    """

    name: str = "fashion-mnist"
    split: str = "test"
    root: str = ""
    download: bool = True
    masks: str = ""
    image_size: int = 0
    channels: int = 0
    n_images: int = 128
    seed: int = 0


@dataclass
class CheckpointConfig:
    """A user's own model, used instead of training: a binsight checkpoint (.safetensors + .json).

    path: the checkpoint (``X``, ``X.safetensors`` or ``X.json``; a relative path is taken from the working
    directory).
    name: the model's label in tables, ``[A-Za-z0-9][A-Za-z0-9_.-]*`` (at most 64 characters, unique, not of
    the automatic form "fp-N" / "bnn-N"); "" = precision and position, e.g. "bnn-1". precision: "fp" or
    "bnn" ("" = the one recorded in the checkpoint).
    """

    path: str = ""
    name: str = ""
    precision: str = ""


@dataclass
class ModelsConfig:
    """The networks compared: ``arch`` trained once per (precision, seed), or the user's checkpoints.

    arch: the registered architecture trained (see ``binsight train --help``). precisions: "fp", "bnn" or
    both. checkpoints: ``[[models.checkpoints]]`` tables, binsight checkpoints used instead of training.
    seeds: one model per precision and seed; the FP and BNN models of one seed share no initialisation
    and no data order (training seeds from (seed, precision)). epochs_fp / epochs_bnn: training epochs
    (0 = the precision's recipe). train_subset: train on this many images (0 = all). test_subset: the
    accuracy recorded at training time, and that of checkpoints and own models, is measured on this many
    images of the split (0 = all). train_surrogate:
    the sign surrogate a BNN is trained with. train_batch_size: training batch (0 = the recipe's). first_last_fp: keep a BNN's first and last layers full
    precision. explain_surrogate: the surrogate a BNN is explained with ("" = the one it was trained with).
    own: ``[[models.own]]`` tables, the user's own models built by their own code (keys of
    :data:`binsight.models.factory.SPEC_KEYS`: factory, kwargs, weights, precision, name, group,
    gradcam_layer, mean, std or normalize = "inside", input_size, num_classes; input_size and num_classes
    default to the dataset's). own_dir: the folder relative ``weights`` paths and factory modules are
    looked up in (set by :func:`load_config` to the configuration file's folder). Checkpoints and own
    models replace training.
    """

    arch: str = "small-cnn"
    precisions: list[str] = field(default_factory=lambda: list(PRECISIONS))
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])
    epochs_fp: int = 0
    epochs_bnn: int = 0
    train_subset: int = 0
    train_batch_size: int = 0
    test_subset: int = 0
    train_surrogate: str = "ste"
    first_last_fp: bool = True
    explain_surrogate: str = ""
    checkpoints: list[CheckpointConfig] = field(default_factory=list)
    own: list[dict[str, Any]] = field(default_factory=list)
    own_dir: str = ""


@dataclass
class MethodConfig:
    """One method's table ``[methods.NAME]``: generic study keys, then the explainer's options.

    explainer: the registered explainer ("" = the table's name). n_images: explain only the first
    n_images of the study's images (0 = all). sanity: take part in the cascading randomisation check.
    sanity_options: options overridden in that check (e.g. fewer iterations). robustness: BNNs are also
    explained under each of ``verdicts.robustness_surrogates``. convergence: options overridden for a
    convergence check on the first ``measures.convergence_images`` images ({} = no check).
    convergence_label: the method label the convergence check's maps are stored under. options: every
    other key, passed to the explainer.
    """

    explainer: str = ""
    n_images: int = 0
    sanity: bool = False
    sanity_options: dict[str, Any] = field(default_factory=dict)
    robustness: bool = False
    convergence: dict[str, Any] = field(default_factory=dict)
    convergence_label: str = ""
    options: dict[str, Any] = field(default_factory=dict)


def default_method_tables() -> dict[str, MethodConfig]:
    """The default study's method tables."""
    return {
        "gradient": MethodConfig(sanity=True, robustness=True),
        "smoothgrad": MethodConfig(sanity=True, robustness=True, convergence={"n_samples": 200},
                                   convergence_label="smoothgrad-n200",
                                   options={"n_samples": 50, "noise_level": 0.15}),
        "gradcam": MethodConfig(sanity=True, robustness=True),
        "neuromask": MethodConfig(n_images=64, options={"iterations": 2000, "return_history": False}),
    }


@dataclass
class MethodsConfig:
    """Which methods are run (``run``, in order), what they explain, and each one's table.

    run: the registered explainers run, in order (``binsight explain --help`` lists them). target:
    "label" (every model explains the image's true class) or "predicted" (each model its own
    predicted class). tables: ``[methods.NAME]`` by name (see :class:`MethodConfig`).
    """

    run: list[str] = field(default_factory=lambda: ["gradient", "smoothgrad", "gradcam", "neuromask"])
    target: str = "label"
    tables: dict[str, MethodConfig] = field(default_factory=default_method_tables)

    def table(self, name: str) -> MethodConfig:
        """The table of method ``name`` (an empty table when it has none)."""
        return self.tables.get(name) or MethodConfig()


@dataclass
class MeasuresConfig:
    """Which families of measures are taken, and their parameters.

    similarity: FP-vs-BNN and within-precision map similarity of every pair of models. noise: total
    variation and high-frequency energy of every map. faithfulness: deletion / insertion and ROAD of every
    map. localisation: pointing game and energy on the object mask (where the dataset has masks).
    sanity: the cascading randomisation check.
    baselines: also "explain" with the chance maps (methods "random" and "smooth-random"). top_k: fraction
    of pixels in the top-k IoU. curve_steps: points of the deletion / insertion curves. road_percentages:
    percent of pixels imputed by ROAD. mask_dilation: pixels the object mask grows by for localisation
    and object-restricted similarity. sanity_images: images in the cascading randomisation check.
    convergence_images: images of each method's convergence check. chance_methods: methods whose
    non-degenerate maps are tested against chance maps (:func:`binsight.metrics.chance.below_chance`).
    chance_maps: chance maps of each kind per tested map (unstructured, and as many smoothness-matched).
    chance_images: the test runs on the first chance_images images (0 = all); each tested map costs
    (2 chance_maps + 1) x (2 (curve_steps + 1) + R) forward passes and (2 chance_maps + 1) x R ROAD
    imputations, R the number of road_percentages.
    """

    similarity: bool = True
    noise: bool = True
    faithfulness: bool = True
    localisation: bool = True
    sanity: bool = True
    baselines: bool = True
    top_k: float = 0.1
    curve_steps: int = 14
    road_percentages: list[float] = field(default_factory=lambda: [10.0, 30.0, 50.0, 70.0, 90.0])
    mask_dilation: int = 2
    sanity_images: int = 8
    convergence_images: int = 16
    chance_methods: list[str] = field(default_factory=lambda: ["gradient", "smoothgrad", "gradcam", "neuromask"])
    chance_maps: int = 20
    chance_images: int = 16


@dataclass
class VerdictsConfig:
    """How the verdicts are decided (read by :class:`binsight.study.verdicts.VerdictSettings`).

    similarity_measures / noise_measures / faithfulness_measures: the measures verdicts 1, 2 and 4 use
    (each gives its own reading; each one alone is also a robustness setting). lower_is_better: the
    faithfulness measures where lower is better. similarity_method: the method of verdict 1 (maps alike).
    noise_method: the method of verdict 2 (noisier). convergence_method: the noise method's convergence
    variant. gradcam_method: the method of verdict 3. faithfulness_method: the method of verdict 4. Margins: similarity_margin (FP-vs-BNN at most this far below a
    within-precision baseline counts as "as similar"), chance_margin (how far above the image-shuffled
    chance level a similarity must be), noise_margin (BNN-minus-FP noise as a fraction of FP noise that
    counts as noisier), below_chance_margin (a difference of below-chance fractions that counts),
    faithfulness_margin (a faithfulness difference, in the measure's units, that counts as better).
    confidence: the level of every interval (two-level bootstrap: models, then images). n_resamples:
    bootstrap resamples. seed: the bootstrap's seed.
    robustness_surrogates: the sign surrogates each BNN is also explained with (for the methods whose
    table sets ``robustness``); every verdict is recomputed under each.
    """

    similarity_measures: list[str] = field(default_factory=lambda: ["spearman", "ssim", "top_k_iou"])
    noise_measures: list[str] = field(default_factory=lambda: ["total_variation", "high_frequency_energy"])
    faithfulness_measures: list[str] = field(
        default_factory=lambda: ["road_morf", "road_lerf", "deletion_blur_auc", "insertion_blur_auc"])
    lower_is_better: list[str] = field(default_factory=lambda: ["road_morf", "deletion_blur_auc"])
    similarity_method: str = "gradient"
    noise_method: str = "smoothgrad"
    convergence_method: str = "smoothgrad-n200"
    gradcam_method: str = "gradcam"
    faithfulness_method: str = "neuromask"
    similarity_margin: float = 0.1
    chance_margin: float = 0.1
    noise_margin: float = 0.05
    below_chance_margin: float = 0.02
    faithfulness_margin: float = 0.01
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0
    robustness_surrogates: list[str] = field(default_factory=lambda: ["ste", "approx", "identity"])


@dataclass
class RunConfig:
    """Where and how the work runs.

    device: "auto" (cuda when available, else cpu), "cpu", "cuda", "cuda:N" or "mps". batch_size: images
    through a model at once (hashed: it changes results by float rounding). chunk_size: images per work
    unit (the most a stop can lose). threads: torch's CPU threads (0 = torch's default; at most the
    machine's cores). progress: progress bars on the terminal.
    """

    device: str = "auto"
    batch_size: int = 256
    chunk_size: int = 32
    threads: int = 0
    progress: bool = True


@dataclass
class StudyConfig:
    """The whole study. Defaults = the embedded default study of ``binsight study``."""

    data: DataConfig = field(default_factory=DataConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    methods: MethodsConfig = field(default_factory=MethodsConfig)
    measures: MeasuresConfig = field(default_factory=MeasuresConfig)
    verdicts: VerdictsConfig = field(default_factory=VerdictsConfig)
    run: RunConfig = field(default_factory=RunConfig)

    def method_names(self) -> list[str]:
        """Every method label of the table: the methods, their convergence variants, then the chance maps."""
        from binsight.study.measures import chance_labels

        labels = list(self.methods.run)
        labels += [self.methods.table(m).convergence_label for m in self.methods.run
                   if self.methods.table(m).convergence]
        return labels + (chance_labels() if self.measures.baselines else [])


# Keys that never change a result (only display or speed); left out of the hash.
_NOT_HASHED = {("run", "progress"), ("run", "threads")}


# --------------------------------------------------------------------------------------------------------
# reading


def load_config(path: str | Path | None = None) -> StudyConfig:
    """The configuration in the TOML file ``path`` on top of the defaults (None: the defaults)."""
    if path is None:
        return StudyConfig()
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"configuration file {str(path)!r} not found; give a TOML file or none for the default study")
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{path}: not a UTF-8 text file") from None
    models = raw.get("models")
    if isinstance(models, dict) and models.get("own") and not models.get("own_dir"):
        models["own_dir"] = str(path.resolve().parent)  # own models' weights and modules sit beside the file
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> StudyConfig:
    """Build and validate a :class:`StudyConfig` from nested dicts (as TOML gives them)."""
    config = _build(StudyConfig, raw, "")
    validate(config)
    return config


def _build(cls: type, raw: Any, where: str) -> Any:
    """Instance of dataclass ``cls`` from the dict ``raw``; type errors name the key path ``where``."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'configuration'}: expected a table, got {_type_name(raw)}")
    if cls is MethodsConfig:
        return _build_methods(raw, where)
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        key = _join(where, unknown[0])
        allowed = ", ".join(names) if names else "none"
        raise ConfigError(f"{key}: unknown key; allowed here: {allowed}")
    values = {name: _convert(hints[name], raw[name], _join(where, name)) for name in names if name in raw}
    return cls(**values)


def _build_methods(raw: dict[str, Any], where: str) -> MethodsConfig:
    """``[methods]``: ``run`` and ``target``, and one sub-table per method (merged onto its defaults)."""
    scalars = {k: v for k, v in raw.items() if k in ("run", "target")}
    config = _build_fields(MethodsConfig, scalars, where)
    tables = default_method_tables()
    for name, table in raw.items():
        if name in ("run", "target"):
            continue
        key = _join(where, name)
        if not isinstance(table, dict):
            raise ConfigError(f"{key}: expected a table of the method's settings (or run / target), got {_type_name(table)}")
        tables[name] = _build_method(table, tables.get(name, MethodConfig()), key)
    config.tables = tables
    return config


def _build_fields(cls: type, raw: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{name: _convert(hints[name], value, _join(where, name)) for name, value in raw.items()})


def _build_method(raw: dict[str, Any], base: MethodConfig, where: str) -> MethodConfig:
    """A method table: generic keys typed as :class:`MethodConfig`; other keys kept as explainer options."""
    generic = {f.name for f in dataclasses.fields(MethodConfig)} - {"options"}
    if "options" in raw:
        raise ConfigError(f"{where}.options: write the explainer's options directly in [{where}]")
    typed = _build_fields(MethodConfig, {k: v for k, v in raw.items() if k in generic}, where)
    options = {**base.options, **{k: v for k, v in raw.items() if k not in generic}}
    merged = dataclasses.replace(base, **{k: getattr(typed, k) for k in raw if k in generic}, options=options)
    return merged


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (int, float, bool, str, list[...], dict or a dataclass)."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of {_hint_name(item)}, got {_type_name(value)}")
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if typing.get_origin(hint) is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a table, got {_type_name(value)}")
        return dict(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {_hint_name(hint)}, got {_type_name(value)}")
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, got {value}")
    return value


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _hint_name(hint: Any) -> str:
    return "a table" if dataclasses.is_dataclass(hint) else getattr(hint, "__name__", str(hint))


def _type_name(value: Any) -> str:
    names = {dict: "table", list: "list"}
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------------------------------------
# checking values


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
    if d.seed < 0:
        raise ConfigError(f"data.seed: must be >= 0, got {d.seed}")


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
    _one_of("models.train_surrogate", m.train_surrogate, surrogate_names())
    if m.explain_surrogate:
        _one_of("models.explain_surrogate", m.explain_surrogate, surrogate_names())
    _validate_checkpoints(m.checkpoints)
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
    from binsight.study.measures import chance_labels

    clash = sorted(set(labels) & set(chance_labels()))
    if clash:
        raise ConfigError(f"methods: {clash[0]!r} is the label of a chance baseline; name the method otherwise")
    _unique("method labels (methods.run and convergence labels)", labels)


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
    if t.convergence and not t.convergence_label:
        raise ConfigError(f"{key}.convergence_label: give the label of the convergence check's maps, "
                          f"e.g. '{name}-check'")


def _validate_measures(ms: MeasuresConfig, me: MethodsConfig) -> None:
    if not 0 < ms.top_k <= 1:
        raise ConfigError(f"measures.top_k: must be in (0, 1], got {ms.top_k}")
    for name in ("curve_steps", "sanity_images", "convergence_images"):
        _positive(f"measures.{name}", getattr(ms, name))
    if ms.mask_dilation < 0:
        raise ConfigError(f"measures.mask_dilation: pixels, must be >= 0, got {ms.mask_dilation}")
    if ms.chance_methods and ms.chance_maps < 1:
        raise ConfigError("measures.chance_maps: must be a positive integer while measures.chance_methods is set")
    if ms.chance_images < 0:
        raise ConfigError(f"measures.chance_images: must be >= 0 (0 = every image), got {ms.chance_images}")
    for i, p in enumerate(ms.road_percentages):
        if not 0 < p < 100:
            raise ConfigError(f"measures.road_percentages[{i}]: a percent of pixels, must be in (0, 100), got {p}")
    for i, name in enumerate(ms.chance_methods):
        _one_of(f"measures.chance_methods[{i}]", name, tuple(me.run))
    _unique("measures.chance_methods", ms.chance_methods)


def _validate_verdicts(v: VerdictsConfig) -> None:
    from binsight.study.measures import FAITHFULNESS_MEASURES, NOISE_MEASURES, PAIR_MEASURES

    for key, allowed in (("similarity_measures", PAIR_MEASURES.names()), ("noise_measures", NOISE_MEASURES.names()),
                         ("faithfulness_measures", FAITHFULNESS_MEASURES), ("lower_is_better", FAITHFULNESS_MEASURES)):
        values = getattr(v, key)
        for i, name in enumerate(values):
            _one_of(f"verdicts.{key}[{i}]", name, allowed)
        _unique(f"verdicts.{key}", values)
    for key in ("similarity_measures", "noise_measures", "faithfulness_measures"):
        if not getattr(v, key):
            raise ConfigError(f"verdicts.{key}: give at least one measure")
    if not 0 < v.confidence < 1:
        raise ConfigError(f"verdicts.confidence: must be in (0, 1), got {v.confidence}")
    _positive("verdicts.n_resamples", v.n_resamples)
    for name in ("similarity_margin", "chance_margin", "noise_margin", "below_chance_margin", "faithfulness_margin"):
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


def _unique(key: str, values: list) -> None:
    if len(set(values)) != len(values):
        raise ConfigError(f"{key}: values repeat: {values}")


# --------------------------------------------------------------------------------------------------------
# writing and hashing


def to_toml(config: StudyConfig) -> str:
    """The configuration as TOML text that :func:`load_config` reads back to an equal configuration."""
    lines: list[str] = []
    _emit_table(as_plain_dict(config), [], lines)
    return "\n".join(lines).strip() + "\n"


def as_plain_dict(config: StudyConfig) -> dict[str, Any]:
    """The configuration as nested dicts in its TOML form (method tables under ``methods``, options inline)."""
    data = asdict(config)
    methods = data["methods"]
    tables = methods.pop("tables")
    for name, table in tables.items():
        options = table.pop("options")
        methods[name] = {**table, **options}
    return data


def _emit_table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    """Sections are the top-level tables and the method tables (``[methods.NAME]``); deeper tables are
    written inline (``convergence = {n_samples = 200}``)."""
    scalars = {k: v for k, v in table.items() if not _is_subtable(v, path)}
    if path and (scalars or not table):
        lines.append(f"\n[{'.'.join(_toml_key(p) for p in path)}]")
    for key, value in scalars.items():
        lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict) and _is_subtable(value, path):
            _emit_table(value, path + [key], lines)
        elif _is_subtable(value, path):
            for item in value:
                lines.append(f"\n[[{'.'.join(_toml_key(p) for p in path + [key])}]]")
                lines.extend(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in item.items())


def _is_subtable(value: Any, path: list[str]) -> bool:
    """A section (a table at depth 0 or 1) or an array of tables; the default empty list is ``[]``."""
    if isinstance(value, dict):
        return len(path) < 2
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def config_hash(config: StudyConfig) -> str:
    """sha256 (hex, 16 characters) of every setting that changes results (see the module docstring)."""
    data = as_plain_dict(config)
    for section, key in _NOT_HASHED:
        data[section].pop(key, None)
    if data["run"]["device"] == "auto":
        data["run"]["device"] = resolve_device("auto")
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
