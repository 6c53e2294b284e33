"""A reference of every study setting, read from where each is declared.

:func:`settings` lists each key of a study's TOML file: the sections of :class:`StudyConfig`, the generic
keys of a method table ``[methods.NAME]``, and the keyword options of each registered explainer, each with
its type, its default and its description: a configuration field's ``help``
(:func:`binsight.study.config.setting`), an explainer option's entry in the ``Args:`` block of its class
docstring (:func:`binsight.explain.options.option_help`). A section's summary is its class docstring's
first paragraph. Two outputs:

* :func:`markdown`: docs/settings.md (written by ``scripts/settings_reference.py``);
* :func:`commented_toml`: a resolved configuration as TOML with each key preceded by a
  ``# description (default: ...)`` comment (``binsight study --print-config``); it loads back unchanged.
"""

from __future__ import annotations

import dataclasses
import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any

from binsight.explain.options import keyword_options, markdown_text, option_help
from binsight.study import config as cfg

GENERATOR = "python scripts/settings_reference.py"
_UNSET = inspect.Parameter.empty


@dataclass(frozen=True)
class Setting:
    """One key: ``section`` as written in TOML (``data``, ``methods.NAME``, ``[models.checkpoints]`` for an
    array of tables), its type, its default as text and its description (one line). ``owner`` is the
    dataclass or explainer the key comes from, ``field`` the attribute it documents."""

    section: str
    key: str
    type: str
    default: str
    description: str
    owner: str
    field: str


# --------------------------------------------------------------------------------------------------------
# the settings


def _text(value: Any) -> str:
    """A default as TOML-like text (``unset`` for None, e.g. an explainer's "choose by itself")."""
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        value = list(value)
    try:
        return cfg.toml_value(value)
    except TypeError:
        return repr(value)


def _type(f: dataclasses.Field) -> str:
    return str(f.type).replace("CheckpointConfig", "table").replace("typing.", "")


def settings() -> list[Setting]:
    """Every key of a study configuration, section by section, in the order of the dataclasses."""
    out: list[Setting] = []
    defaults = cfg.StudyConfig()
    for section in dataclasses.fields(cfg.StudyConfig):
        out += _section(section.name, getattr(defaults, section.name))
        if section.name == "methods":
            out += explainer_settings()
    return out


def _section(name: str, value: Any) -> list[Setting]:
    """The keys of one dataclass section, then the methods' tables and a list of tables as sections of
    their own."""
    cls = type(value)
    docs = {f.name: cfg.help_of(f) for f in dataclasses.fields(cls)}
    out: list[Setting] = []
    nested: list[Setting] = []
    for f in dataclasses.fields(cls):
        default = getattr(value, f.name)
        if cls is cfg.MethodsConfig and f.name == "tables":
            out.append(Setting(name, "NAME", "table", ", ".join(f"[methods.{t}]" for t in default), docs[f.name],
                               cls.__name__, f.name))
            nested += _section("methods.NAME", cfg.MethodConfig())
        elif cls is cfg.MethodConfig and f.name == "options":
            out.append(Setting(name, "OPTION", "explainer option", "the explainer's", docs[f.name], cls.__name__, f.name))
        elif cls is cfg.ModelsConfig and f.name == "checkpoints":
            out.append(Setting(name, f.name, "array of tables", "[]", docs[f.name], cls.__name__, f.name))
            nested += _section(f"[{name}.{f.name}]", cfg.CheckpointConfig())
        else:
            out.append(Setting(name, f.name, _type(f), _text(default), docs[f.name], cls.__name__, f.name))
    return out + nested


def explainer_settings() -> list[Setting]:
    """Each registered explainer's options (``methods.NAME`` keys beside the generic ones); a family such
    as Captum as ``methods."captum:NAME"``, its member's own options as ``OPTION``."""
    out: list[Setting] = []
    for name, cls in _explainers():
        allowed, free = cfg.explainer_options(cls)
        docs = option_help(cls)
        options = keyword_options(cls)
        section = f"methods.{cfg.toml_key(name)}"
        for option in (p for p in options if p in allowed):
            default = options[option].default
            out.append(Setting(section, option, str(options[option].annotation), "" if default is _UNSET else
                               _text(default), docs.get(option, ""), f"explainer {name}", option))
        if free:
            params = inspect.signature(cls.__init__).parameters
            extra = next((docs[p] for p in params if params[p].kind is params[p].VAR_KEYWORD and docs.get(p)),
                         "any other keyword option")
            out.append(Setting(section, "OPTION", "any", "the wrapped class's", extra, f"explainer {name}",
                               "**options"))
    return out


def _explainers() -> list[tuple[str, type]]:
    """(name, class) of each registered explainer; a family as ``"family:NAME"``."""
    import binsight.explain as explain

    names = list(explain.available()) + [f"{family}:NAME" for family in explain.families()]
    return [(name, explain.explainer_class(name.replace(":NAME", ":x"))) for name in names]


# --------------------------------------------------------------------------------------------------------
# Markdown


def markdown() -> str:
    """docs/settings.md: one table per section (the explainers' options after the generic method keys)."""
    lines = [
        "# Study settings",
        "",
        "Every key of a `binsight study` configuration file (TOML). A key left out keeps its default (the",
        "embedded default study); `binsight study --print-config` prints the resolved configuration with these",
        "descriptions as comments.",
        "",
        f"Generated by `{GENERATOR}` from the configuration's dataclasses (`binsight.study.config`) and the",
        "explainers' docstrings; do not edit by hand.",
    ]
    summaries = _summaries()
    current = None
    for s in settings():
        if s.section != current:
            current = s.section
            intro = [summaries.get(s.section, summaries.get(s.owner, "")), _NOTES.get(s.section, "")]
            lines += ["", f"## {_heading(s)}", "", *[t for t in intro if t], "",
                      "| key | type | default | description |", "|---|---|---|---|"]
        default = s.default if s.key == "OPTION" else f"`{s.default}`" if s.default else "required"
        lines.append(f"| `{s.key}` | {_cell(s.type)} | {_cell(default)} | {_cell(s.description)} |")
    return "\n".join(lines) + "\n"


_NOTES = {
    "methods.NAME": "These keys are the same in every method table; beside them a table holds the options of its "
                    "explainer, listed per explainer in the sections that follow. The defaults are those of a new "
                    "table; the default study's own tables set some of them (`binsight study --print-config` "
                    "shows its values).",
}


def _heading(s: Setting) -> str:
    if s.owner.startswith("explainer "):
        return f"[{s.section}]: options of explainer `{s.owner.split(' ', 1)[1]}`"
    return s.section if s.section.startswith("[") else f"[{s.section}]"


def _summaries() -> dict[str, str]:
    """Section (or explainer owner) -> the summary of its class docstring."""
    out = {name: _summary(type(value)) for name, value in vars(cfg.StudyConfig()).items()}
    out["methods.NAME"] = _summary(cfg.MethodConfig)
    out["[models.checkpoints]"] = _summary(cfg.CheckpointConfig)
    for name, cls in _explainers():
        out[f"explainer {name}"] = _summary(cls)
    return out


def _summary(cls: type) -> str:
    """The first paragraph of ``cls``'s docstring, as one line of Markdown."""
    return markdown_text(inspect.cleandoc(cls.__doc__ or "").split("\n\n", 1)[0])


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


# --------------------------------------------------------------------------------------------------------
# commented TOML


def commented_toml(config: cfg.StudyConfig) -> str:
    """:func:`~binsight.study.config.to_toml` with each section headed by its summary and each key preceded
    by ``# description (default: ...)``; comments only, so it loads back to an equal configuration."""
    described = _lookup(config)
    summaries = _summaries()
    out: list[str] = []
    section = ""
    for line in cfg.to_toml(config).split("\n"):
        header = re.fullmatch(r"\[\[?([^\]]+)\]\]?", line)
        key = re.match(r'("[^"]*"|[A-Za-z0-9_-]+) = ', line)
        if header:
            section = header.group(1)
            out += _comment(summaries.get(_generic(section, config), ""))
        elif key and ((section, key.group(1).strip('"')) in described or (section, "OPTION") in described):
            out += _comment(*described.get((section, key.group(1).strip('"')), described.get((section, "OPTION"))))
        out.append(line)
    return "\n".join(out)


def _generic(section: str, config: cfg.StudyConfig) -> str:
    """The reference's section of a TOML section: ``methods.gradient`` -> ``methods.NAME``."""
    if section.startswith("methods.") and section != "methods":
        return "methods.NAME"
    return f"[{section}]" if section == "models.checkpoints" else section


def _lookup(config: cfg.StudyConfig) -> dict[tuple[str, str], tuple[str, str]]:
    """(TOML section, key) -> (description, "(default: ...)") for every key of ``config``'s TOML."""
    by_section: dict[str, dict[str, Setting]] = {}
    for s in settings():
        by_section.setdefault(s.section, {})[s.key] = s
    out = {}
    for (section, key), s in _keys(config, by_section):
        out[(section, key)] = (s.description, f"(default: {_default_in_study(section, s)})")
    return out


def _keys(config: cfg.StudyConfig, by_section: dict[str, dict[str, Setting]]):
    """((TOML section, key), setting) for the keys of ``config``, the method tables' options included."""
    for section, keys in by_section.items():
        if not section.startswith("methods.") and section != "[models.checkpoints]":
            yield from (((section, k), s) for k, s in keys.items())
    yield from ((("models.checkpoints", k), s) for k, s in by_section["[models.checkpoints]"].items())
    for name, table in config.methods.tables.items():
        explainer = table.explainer or name
        family = explainer.split(":")[0] + ":NAME" if ":" in explainer else explainer
        options = by_section.get(f"methods.{cfg.toml_key(family)}", {})
        for key, s in list(by_section["methods.NAME"].items()) + list(options.items()):
            yield (f"methods.{cfg.toml_key(name)}", key), s


_STUDY_DEFAULTS = cfg.default_method_tables()


def _default_in_study(section: str, s: Setting) -> str:
    """An explainer option's default: the default study's value where its table sets one, else the
    explainer's own."""
    name = section.split(".", 1)[1] if section.startswith("methods.") else ""
    table = _STUDY_DEFAULTS.get(name)
    if s.owner.startswith("explainer ") and table is not None and s.key in table.options:
        return _text(table.options[s.key])
    if s.owner == "MethodConfig" and table is not None:
        return _text(getattr(table, s.field))
    return s.default or "required"


def _comment(text: str, last: str = "") -> list[str]:
    """``text`` as comment lines of at most 100 characters, ``last`` kept whole at the end of the last one."""
    lines = [f"# {line}" for line in textwrap.wrap(text, width=98)] or (["#"] if last else [])
    if last:
        lines[-1] += f" {last}"
    return lines
