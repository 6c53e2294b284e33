"""The study's configuration: dataclasses whose defaults are the embedded default study, read from TOML.

Every key of a TOML file must be one of the fields below, with the field's type; anything else is a
:class:`ConfigError` naming the key path, e.g. ``methods.smoothgrad.n_samples: expected int, got str``.
A key left out keeps its default. :func:`to_toml` writes a resolved configuration back as TOML (what
``binsight study --print-config`` prints and what a run folder keeps as ``config.toml``), and
:func:`config_hash` is the fingerprint of everything that changes a run's results.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import typing
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

METHODS = ("gradient", "smoothgrad", "gradcam", "neuromask")
BASELINES = ("random", "gaussian")
PRECISIONS = ("fp", "bnn")
DATASETS = ("fashion-mnist", "cifar-10", "image-folder")


class ConfigError(ValueError):
    """A study configuration that cannot be used; the message names the key and what to do."""


@dataclass
class DataConfig:
    """Which images are explained.

    name: "fashion-mnist", "cifar-10" or "image-folder". root: the dataset's files ("" = the default
    place, downloading where allowed). masks: image-folder only, a side file of foreground masks or boxes
    (passed to the loader). image_size / channels: image-folder only, the size images are resized to and
    their channels (0 = the reader's default). n_images: how many test images are explained, drawn without replacement with
    ``seed``.
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

    name: the model's label in tables ("" = precision and position, e.g. "bnn-1"); precision: "fp" or
    "bnn" ("" = the one recorded in the checkpoint).
    """

    path: str = ""
    name: str = ""
    precision: str = ""


@dataclass
class ModelsConfig:
    """The networks compared: ``arch`` trained once per (precision, seed), or the user's checkpoints.

    epochs_fp / epochs_bnn: training epochs per precision. train_subset: train on this many images
    (0 = the whole training split). test_subset: the test accuracy recorded at training time is measured
    on this many test images (0 = all). train_surrogate: the sign surrogate a BNN is trained with.
    first_last_fp: keep a BNN's first and last layers full precision. explain_surrogate: the surrogate used when explaining a BNN ("" = the one it was trained with).
    """

    arch: str = "small-cnn"
    precisions: list[str] = field(default_factory=lambda: list(PRECISIONS))
    seeds: list[int] = field(default_factory=lambda: [0, 1])
    epochs_fp: int = 3
    epochs_bnn: int = 4
    train_subset: int = 0
    train_batch_size: int = 128
    test_subset: int = 0
    train_surrogate: str = "ste"
    first_last_fp: bool = True
    explain_surrogate: str = ""
    checkpoints: list[CheckpointConfig] = field(default_factory=list)


@dataclass
class GradientConfig:
    """Simonyan et al. 2014: |d logit_c / d x|, max over colour channels."""


@dataclass
class SmoothGradConfig:
    """Smilkov et al. 2017: mean gradient over ``n_samples`` noisy copies, noise std = ``noise`` x range."""

    n_samples: int = 50
    noise: float = 0.15


@dataclass
class GradCamConfig:
    """Selvaraju et al. 2017; layer "" = the model's ``gradcam_layer`` (last conv block, real-valued)."""

    layer: str = ""


@dataclass
class NeuroMaskConfig:
    """NeuroMask, faithful mode (neuromask.md): ``iterations`` optimiser steps, preset by input size.

    n_images: NeuroMask explains only the first ``n_images`` of the study's images (0 = all of them): at
    2000 iterations it costs about 2000 forward and backward passes per image, far more than the other
    methods. sanity_iterations: steps used in the sanity check only, where NeuroMask is in
    ``measures.sanity_methods`` (0 = ``iterations``). The report states both.
    """

    preset: str = "auto"
    iterations: int = 2000
    n_images: int = 16
    sanity_iterations: int = 0


@dataclass
class MethodsConfig:
    """Which methods are run (``run``), and each one's parameters."""

    run: list[str] = field(default_factory=lambda: list(METHODS))
    gradient: GradientConfig = field(default_factory=GradientConfig)
    smoothgrad: SmoothGradConfig = field(default_factory=SmoothGradConfig)
    gradcam: GradCamConfig = field(default_factory=GradCamConfig)
    neuromask: NeuroMaskConfig = field(default_factory=NeuroMaskConfig)


@dataclass
class MeasuresConfig:
    """Which families of measures are taken, and their parameters.

    top_k: fraction of pixels in the top-k IoU. curve_steps: points of the deletion / insertion curves.
    road_percentages: percent of pixels imputed by ROAD. sanity_images: images in the (slow) cascading
    randomisation check. sanity_methods: the methods it checks. NeuroMask is left out by default: at its
    2000 iterations the check costs 2000 x (layers + 1) forward and backward passes per image, beyond the
    default study's time, and with far fewer iterations its masks keep their random initial pattern
    (w ~ U(-10, 10) moves about 0.1 a step), so the check would measure the initialisation, not the model
    (measured: Spearman 1.0 at every layer with 100 iterations).
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
    sanity_images: int = 8
    sanity_methods: list[str] = field(default_factory=lambda: ["gradient", "smoothgrad", "gradcam"])


@dataclass
class VerdictsConfig:
    """How the verdicts are decided from the intervals.

    similarity_measure / noise_measure: the measure each verdict is about. similarity_margin: an FP-vs-BNN
    similarity at most this far below FP-vs-FP still counts as "as similar". noise_margin: a noise
    difference smaller than this fraction of the FP noise counts as no difference. Intervals: percentile
    bootstrap, paired by image, ``n_resamples`` resamples at ``confidence``, seeded.
    """

    similarity_measure: str = "spearman"
    noise_measure: str = "total_variation"
    similarity_margin: float = 0.1
    noise_margin: float = 0.05
    confidence: float = 0.95
    n_resamples: int = 2000
    seed: int = 0


@dataclass
class RunConfig:
    """Where and how the work runs.

    batch_size bounds memory. chunk_size: images per work unit (the most a stop can lose). threads: torch's
    CPU threads (0 = torch's default; 1 is much faster on a machine whose cores are shared).
    """

    device: str = "cpu"
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
        """The explanation methods then, if baselines are measured, the baseline maps."""
        return list(self.methods.run) + (list(BASELINES) if self.measures.baselines else [])


# Keys that never change a result (only speed, memory or display); left out of the hash.
_NOT_HASHED = {("run", "batch_size"), ("run", "progress"), ("run", "threads"), ("models", "train_batch_size")}


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
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        key = _join(where, unknown[0])
        allowed = ", ".join(names) if names else "none"
        raise ConfigError(f"{key}: unknown key; allowed here: {allowed}")
    values = {name: _convert(hints[name], raw[name], _join(where, name)) for name in names if name in raw}
    return cls(**values)


def _convert(hint: Any, value: Any, where: str) -> Any:
    """Check ``value`` against the type ``hint`` (int, float, bool, str, list[...] or a dataclass)."""
    if dataclasses.is_dataclass(hint):
        return _build(hint, value, where)
    if typing.get_origin(hint) is list:
        (item,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list of {_hint_name(item)}, got {_type_name(value)}")
        return [_convert(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {_hint_name(hint)}, got {_type_name(value)}")
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
    d, m, me, ms, v, r = config.data, config.models, config.methods, config.measures, config.verdicts, config.run
    _one_of("data.name", d.name, DATASETS)
    _one_of("data.split", d.split, ("train", "test"))
    _positive("data.n_images", d.n_images)
    for key in ("masks", "image_size", "channels"):
        if getattr(d, key) and d.name != "image-folder":
            raise ConfigError(f"data.{key}: only used with data.name = 'image-folder'")
    if d.image_size < 0 or d.channels not in (0, 1, 3):
        raise ConfigError("data.image_size must be >= 0 and data.channels 0, 1 or 3 (0 = the reader's default)")
    if not m.checkpoints:
        if not m.precisions:
            raise ConfigError("models.precisions: give at least one of 'fp', 'bnn'")
        for i, p in enumerate(m.precisions):
            _one_of(f"models.precisions[{i}]", p, PRECISIONS)
        _unique("models.precisions", m.precisions)
        if not m.seeds:
            raise ConfigError("models.seeds: give at least one seed")
        _unique("models.seeds", m.seeds)
    for name in ("epochs_fp", "epochs_bnn", "train_batch_size"):
        _positive(f"models.{name}", getattr(m, name))
    for name in ("train_subset", "test_subset"):
        if getattr(m, name) < 0:
            raise ConfigError(f"models.{name}: must be >= 0 (0 = the whole split)")
    for i, ck in enumerate(m.checkpoints):
        if not ck.path:
            raise ConfigError(f"models.checkpoints[{i}].path: give the checkpoint file (.safetensors)")
        if ck.precision:
            _one_of(f"models.checkpoints[{i}].precision", ck.precision, PRECISIONS)
    if not me.run:
        raise ConfigError("methods.run: give at least one method")
    for i, name in enumerate(me.run):
        _one_of(f"methods.run[{i}]", name, METHODS)
    _unique("methods.run", me.run)
    for i, name in enumerate(ms.sanity_methods):
        _one_of(f"measures.sanity_methods[{i}]", name, METHODS)
    _unique("measures.sanity_methods", ms.sanity_methods)
    _positive("methods.smoothgrad.n_samples", me.smoothgrad.n_samples)
    if not me.smoothgrad.noise >= 0:
        raise ConfigError("methods.smoothgrad.noise: must be >= 0 (a fraction of each image's range)")
    _one_of("methods.neuromask.preset", me.neuromask.preset, ("auto", "cifar", "imagenet"))
    _positive("methods.neuromask.iterations", me.neuromask.iterations)
    if me.neuromask.n_images < 0:
        raise ConfigError("methods.neuromask.n_images: must be >= 0 (0 = all of data.n_images)")
    if me.neuromask.sanity_iterations < 0:
        raise ConfigError("methods.neuromask.sanity_iterations: must be >= 0 (0 = methods.neuromask.iterations)")
    if not 0 < ms.top_k <= 1:
        raise ConfigError(f"measures.top_k: must be in (0, 1], got {ms.top_k}")
    _positive("measures.curve_steps", ms.curve_steps)
    _positive("measures.sanity_images", ms.sanity_images)
    for i, p in enumerate(ms.road_percentages):
        if not 0 < p < 100:
            raise ConfigError(f"measures.road_percentages[{i}]: a percent of pixels, must be in (0, 100), got {p}")
    _one_of("verdicts.similarity_measure", v.similarity_measure, ("spearman", "ssim", "top_k_iou"))
    _one_of("verdicts.noise_measure", v.noise_measure, ("total_variation", "high_frequency_energy"))
    if not 0 < v.confidence < 1:
        raise ConfigError(f"verdicts.confidence: must be in (0, 1), got {v.confidence}")
    _positive("verdicts.n_resamples", v.n_resamples)
    for name in ("similarity_margin", "noise_margin"):
        if getattr(v, name) < 0:
            raise ConfigError(f"verdicts.{name}: must be >= 0")
    _positive("run.batch_size", r.batch_size)
    _positive("run.chunk_size", r.chunk_size)
    if r.threads < 0:
        raise ConfigError("run.threads: must be >= 0 (0 = torch's default)")
    if not (r.device == "cpu" or r.device.startswith(("cuda", "mps"))):
        raise ConfigError(f"run.device: expected 'cpu', 'cuda', 'cuda:N' or 'mps', got {r.device!r}")


def _one_of(key: str, value: str, allowed: tuple[str, ...]) -> None:
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
    _emit_table(asdict(config), [], lines)
    return "\n".join(lines).strip() + "\n"


def _emit_table(table: dict[str, Any], path: list[str], lines: list[str]) -> None:
    scalars = {k: v for k, v in table.items() if not _is_subtable(v)}
    if path and (scalars or not table):
        lines.append(f"\n[{'.'.join(path)}]")
    for key, value in scalars.items():
        lines.append(f"{key} = {_toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict):
            _emit_table(value, path + [key], lines)
        elif _is_subtable(value):
            for item in value:
                lines.append(f"\n[[{'.'.join(path + [key])}]]")
                lines.extend(f"{k} = {_toml_value(v)}" for k, v in item.items())


def _is_subtable(value: Any) -> bool:
    """A nested table, or an array of tables; the default empty list of tables is written as ``[]``."""
    return isinstance(value, dict) or (isinstance(value, list) and bool(value) and isinstance(value[0], dict))


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def config_hash(config: StudyConfig) -> str:
    """sha256 (hex, 16 characters) of every setting that changes results; speed-only settings excluded."""
    data = asdict(config)
    for section, key in _NOT_HASHED:
        data[section].pop(key, None)
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
