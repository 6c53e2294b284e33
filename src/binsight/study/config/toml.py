"""A study configuration as TOML: read (typed, on top of the defaults), written back, and hashed.

Every key of a TOML file must be one of the fields of :mod:`binsight.study.config.sections`, with the field's
type; anything else is a :class:`ConfigError` naming the key path, e.g. ``methods.smoothgrad.n_samples:
expected int, got str``. A key left out keeps its default. :func:`to_toml` writes a resolved configuration
back as TOML (what ``binsight study --print-config`` prints and what a run folder keeps as ``config.toml``),
and :func:`config_hash` is the fingerprint of everything that changes a run's results (see
:mod:`binsight.study.config`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import typing
from dataclasses import asdict
from pathlib import Path
from typing import Any

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

from binsight.study.config.check import resolve_device, validate
from binsight.study.config.sections import ConfigError, MethodConfig, MethodsConfig, StudyConfig, default_method_tables

MAX_DEPTH = 32
"""The deepest a free-form value (an explainer option, an own model's ``kwargs``) may nest lists and tables."""
_PLAIN = (str, int, float, bool)

# Keys that never change a result (only display or speed); left out of the hash.
_NOT_HASHED = {("run", "progress"), ("run", "threads")}
# Keys added after run folders existed, hashed only where they differ from these values (the behaviour
# before them), so that an older run keeps its configuration hash and can be reported and continued.
_HASHED_WHERE_SET = {("models", "lr_fp"): 0.0, ("models", "lr_bnn"): 0.0, ("models", "augment"): True}


# -- reading ---------------------------------------------------------------------------------------------


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
    except RecursionError:
        raise ConfigError(f"{path}: arrays or tables nested too deeply to read; a setting nests at most "
                          f"{MAX_DEPTH} levels") from None
    models = raw.get("models")
    if isinstance(models, dict) and models.get("own") and isinstance(models.get("own_dir", ""), str):
        # own models' modules and relative weights paths are found from the file's folder
        models["own_dir"] = str((path.resolve().parent / models.get("own_dir", "")).resolve())
    return config_from_dict(raw)


def config_from_dict(raw: dict[str, Any]) -> StudyConfig:
    """Build and validate a :class:`StudyConfig` from nested dicts (as TOML gives them)."""
    config = _build(StudyConfig, raw, "")
    follow_methods(config, raw)
    validate(config)
    return config


def follow_methods(config: StudyConfig, raw: dict[str, Any]) -> None:
    """The settings keyed by method that ``raw`` leaves out follow the methods that run: the chance test
    (``measures.chance_methods``) every method of ``methods.run``; ``verdicts.convergence_method`` the
    convergence check of ``verdicts.noise_method``'s table (where it has one). A key given is kept."""
    def given(section: str, key: str) -> bool:
        return isinstance(raw.get(section), dict) and key in raw[section]

    if not given("measures", "chance_methods"):
        config.measures.chance_methods = list(config.methods.run)
    noise = config.methods.table(config.verdicts.noise_method)
    if not given("verdicts", "convergence_method") and noise.convergence:
        config.verdicts.convergence_method = noise.convergence_label


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
        tables[name] = _build_method(name, table, tables.get(name, MethodConfig()), key)
    config.tables = tables
    return config


def _build_fields(cls: type, raw: dict[str, Any], where: str) -> Any:
    hints = typing.get_type_hints(cls)
    return cls(**{name: _convert(hints[name], value, _join(where, name)) for name, value in raw.items()})


def _build_method(name: str, raw: dict[str, Any], base: MethodConfig, where: str) -> MethodConfig:
    """Method ``name``'s table: generic keys typed as :class:`MethodConfig`, other keys kept as explainer
    options; a convergence check without a label is labelled ``NAME-convergence``."""
    generic = {f.name for f in dataclasses.fields(MethodConfig)} - {"options"}
    if "options" in raw:
        raise ConfigError(f"{where}.options: write the explainer's options directly in [{where}]")
    typed = _build_fields(MethodConfig, {k: v for k, v in raw.items() if k in generic}, where)
    options = {**base.options, **{k: _plain(v, _join(where, k)) for k, v in raw.items() if k not in generic}}
    merged = dataclasses.replace(base, **{k: getattr(typed, k) for k in raw if k in generic}, options=options)
    if merged.convergence and not merged.convergence_label:
        merged.convergence_label = f"{name}-convergence"
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
        return _plain(value, where)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float) and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(f"{where}: expected {_hint_name(hint)}, got {_type_name(value)}")
    if hint is float and not math.isfinite(value):
        raise ConfigError(f"{where}: must be a finite number, got {value}")
    return _unicode(value, where) if hint is str else value


def _plain(value: Any, where: str, depth: int = 0, top: str = "") -> Any:
    """``value`` if it is made of strings, numbers, booleans, lists and tables nested at most
    :data:`MAX_DEPTH` deep (what a configuration can write back and hash); else a :class:`ConfigError`
    naming the key (``top``: the key the nesting started at)."""
    top = top or where
    if depth > MAX_DEPTH:
        raise ConfigError(f"{top}: nested deeper than {MAX_DEPTH} levels of lists and tables; give a flatter value")
    if isinstance(value, dict):
        return {k: _plain(v, _join(where, str(k)), depth + 1, top) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v, f"{where}[{i}]", depth + 1, top) for i, v in enumerate(value)]
    if not isinstance(value, _PLAIN):
        raise ConfigError(f"{where}: expected a string, number, boolean, list or table, got {_type_name(value)}")
    return _unicode(value, where) if isinstance(value, str) else value


def _unicode(text: str, where: str) -> str:
    """``text`` if it is valid Unicode (no lone surrogate, which neither TOML nor UTF-8 can hold)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise ConfigError(f"{where}: not valid Unicode text (a lone surrogate); give the character itself") from None
    return text


def _join(where: str, key: str) -> str:
    return f"{where}.{key}" if where else key


def _hint_name(hint: Any) -> str:
    return "a table" if dataclasses.is_dataclass(hint) else getattr(hint, "__name__", str(hint))


def _type_name(value: Any) -> str:
    names = {dict: "table", list: "list"}
    return names.get(type(value), type(value).__name__)


# -- writing and hashing -------------------------------------------------------------------------------


def to_toml(config: StudyConfig, folder: str | Path | None = None) -> str:
    """The configuration as TOML text that :func:`load_config` reads back to an equal configuration.

    ``folder``: where the text is written; ``models.own_dir`` is then written relative to it, so that a
    project folder holding the file, the own models' code and weights can move (None: as it is).
    """
    data = as_plain_dict(config)
    if folder is not None and config.models.own:
        own_dir = Path(config.models.own_dir or ".").resolve()
        data["models"]["own_dir"] = Path(os.path.relpath(own_dir, Path(folder).resolve())).as_posix()
    lines: list[str] = []
    _emit_table(data, [], lines)
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
        lines.append(f"\n[{'.'.join(toml_key(p) for p in path)}]")
    for key, value in scalars.items():
        lines.append(f"{toml_key(key)} = {toml_value(value)}")
    for key, value in table.items():
        if isinstance(value, dict) and _is_subtable(value, path):
            _emit_table(value, path + [key], lines)
        elif _is_subtable(value, path):
            for item in value:
                lines.append(f"\n[[{'.'.join(toml_key(p) for p in path + [key])}]]")
                lines.extend(f"{toml_key(k)} = {toml_value(v)}" for k, v in item.items())


def _is_subtable(value: Any, path: list[str]) -> bool:
    """A section (a table at depth 0 or 1) or an array of tables; the default empty list is ``[]``."""
    if isinstance(value, dict):
        return len(path) < 2
    return isinstance(value, list) and bool(value) and isinstance(value[0], dict)


def toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_string(key)


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{toml_key(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} as TOML")


def toml_string(text: str) -> str:
    """``text`` as a TOML basic string of ASCII characters: quote, backslash and control characters escaped,
    every other non-ASCII character as ``\\uXXXX``, or ``\\UXXXXXXXX`` outside Unicode's basic plane (an
    emoji; JSON's surrogate pairs are not valid TOML)."""
    out = []
    for char in text:
        code = ord(char)
        if char in ('"', "\\"):
            out.append("\\" + char)
        elif 0x20 <= code < 0x7F:
            out.append(char)
        else:
            out.append(f"\\u{code:04X}" if code <= 0xFFFF else f"\\U{code:08X}")
    return '"' + "".join(out) + '"'


def config_hash(config: StudyConfig) -> str:
    """sha256 (hex, 16 characters) of every setting that changes results (see the module docstring)."""
    data = as_plain_dict(config)
    data["models"]["own_dir"] = ""  # where the project lies: own models' paths are hashed as written
    for section, key in _NOT_HASHED:
        data[section].pop(key, None)
    for (section, key), before in _HASHED_WHERE_SET.items():
        if data[section][key] == before:
            data[section].pop(key)
    if data["run"]["device"] == "auto":
        data["run"]["device"] = resolve_device("auto")
    text = json.dumps(data, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]
