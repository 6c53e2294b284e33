"""A reference of every study setting, read from the configuration's own dataclasses and docstrings.

:func:`settings` lists each key of a study's TOML file: the sections of :class:`StudyConfig`, the generic
keys of a method table ``[methods.NAME]``, and the keyword options of each registered explainer, each with
its type, its default and the description its class's docstring gives. Two outputs:

* :func:`markdown`: docs/settings.md (written by ``scripts/settings_reference.py``);
* :func:`commented_toml`: a resolved configuration as TOML with each key preceded by a
  ``# description (default: ...)`` comment (``binsight study --print-config``); it loads back unchanged.

Dataclass docstrings describe fields in prose: ``name: text.`` (also ``a / b: text`` for two fields,
``a (text)`` in a list, or a capitalised group label such as ``Margins: ...`` for the fields ending in
``_margin``). Explainer options come from
the ``Args:`` block of the explainer's class docstring (``name: text``, ``a, b: as :class:`Other```).
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import re
import textwrap
from dataclasses import dataclass
from typing import Any

from binsight.study import config as cfg

GENERATOR = "python scripts/settings_reference.py"
_LABEL = re.compile(r"([A-Za-z_]\w*(?:\s*[/,]\s*[A-Za-z_]\w*)*):\s")
_ROLE = re.compile(r":\w+:`~?([\w.]+)`")
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
# reading docstrings


def _clean(text: str) -> str:
    """One line; Sphinx roles and double backticks as plain Markdown code."""
    text = _ROLE.sub(lambda m: f"`{m.group(1).split('.')[-1]}`", " ".join(text.split()))
    return text.replace("``", "`").strip()


def _close_parens(text: str) -> str:
    """``text`` cut at its first unmatched ")" and stripped of trailing punctuation or a dangling "("."""
    depth = 0
    for i, ch in enumerate(text):
        depth += (ch == "(") - (ch == ")")
        if depth < 0:
            text = text[:i]
            break
    return text.strip().rstrip(";,(").strip()


def _body(doc: str) -> tuple[str, str]:
    """(summary line, the rest as one line) of a docstring."""
    lines = inspect.cleandoc(doc or "").split("\n\n", 1)
    return _clean(lines[0]), _clean(lines[1]) if len(lines) > 1 else ""


def _segments(text: str, names: list[str]) -> list[tuple[str, str]]:
    """``(label, text)`` pieces of prose written as ``label: text``: a label is field names (``a / b``,
    ``a, b``) or one capitalised word, and starts the text or follows ". ", "; " or "("."""
    marks = [m for m in _LABEL.finditer(text) if _is_label(m.group(1), names)
             and (not text[:m.start()].strip() or text[:m.start()].rstrip()[-1] in ".;(")]
    out = []
    for m, nxt in zip(marks, marks[1:] + [None]):
        out.append((m.group(1), _close_parens(text[m.end():nxt.start() if nxt else len(text)])))
    return out


def _is_label(label: str, names: list[str]) -> bool:
    parts = _parts(label)
    return all(p in names for p in parts) or (len(parts) == 1 and parts[0][:1].isupper())


def _parts(label: str) -> list[str]:
    return [p.strip() for p in re.split(r"[/,]", label)]


def _parenthesised(text: str, name: str) -> str:
    """The text in balanced parentheses right after ``name`` in ``text`` ("" if none)."""
    m = re.search(rf"(?<![\w`]){re.escape(name)}\s*\(", text)
    return _close_parens(text[m.end():]) if m else ""


def field_descriptions(cls: type) -> dict[str, str]:
    """Field name -> description from the dataclass's docstring ("" for a field it does not describe)."""
    names = [f.name for f in dataclasses.fields(cls)]
    summary, body = _body(cls.__doc__ or "")
    found: dict[str, str] = {}
    groups: dict[str, str] = {}
    for label, text in _segments(body, names):
        parts = _parts(label)
        if all(p in names for p in parts):
            found.update({p: text for p in parts if p not in found})
        elif len(parts) == 1 and parts[0][:1].isupper():
            groups[parts[0].lower().rstrip("s")] = text
    for name in names:
        found[name] = found.get(name) or _parenthesised(body, name) or _group(groups, name)
    return found


def _group(groups: dict[str, str], name: str) -> str:
    """A group label's text (``Margins: ...``) for a field ending in ``_margin``."""
    return next((text for word, text in groups.items() if name.rstrip("s").endswith("_" + word)), "")


def args_descriptions(cls: type) -> dict[str, str]:
    """Option name -> description from the ``Args:`` block of a class docstring; ``as :class:`Other```
    entries take Other's description of the same option, followed by what the entry adds."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    block = re.search(r"^Args:\n((?:[ \t]+\S.*\n?)+)", doc, re.M)
    if not block:
        return {}
    entries = re.split(r"\n(?=\S)", textwrap.dedent(block.group(1)))
    out: dict[str, str] = {}
    for entry in entries:
        label, _, text = entry.partition(":")
        for name in (n.strip().lstrip("*") for n in label.split(",")):
            out[name] = _borrowed(text, name) or _clean(text)
    return out


def _borrowed(text: str, name: str) -> str:
    """For ``... as :class:`path.Other` (more)``: Other's description of ``name`` plus "(more)"; else ""."""
    m = re.search(r"\bas (?:in )?:class:`~?([\w.]+)`(.*)", " ".join(text.split()))
    if not m or "." not in m.group(1):
        return ""
    module, _, attr = m.group(1).rpartition(".")
    try:
        other = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError):
        return ""
    base = args_descriptions(other).get(name, "")
    rest = _clean(m.group(2)).strip(" .;")
    return f"{base} {rest}".strip() if base else ""


# --------------------------------------------------------------------------------------------------------
# the settings


def _text(value: Any) -> str:
    """A default as TOML-like text (``unset`` for None, e.g. an explainer's "choose by itself")."""
    if value is None:
        return "unset"
    if isinstance(value, tuple):
        value = list(value)
    try:
        return cfg._toml_value(value)
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
    docs = field_descriptions(cls)
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
        docs = args_descriptions(cls)
        params = inspect.signature(cls.__init__).parameters
        section = f"methods.{cfg._toml_key(name)}"
        for option in (p for p in params if p in allowed):
            default = params[option].default
            out.append(Setting(section, option, str(params[option].annotation), "" if default is _UNSET else
                               _text(default), docs.get(option, ""), f"explainer {name}", option))
        if free:
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
    """Section (or explainer owner) -> the summary line of its class docstring."""
    out = {name: _body(type(value).__doc__)[0] for name, value in vars(cfg.StudyConfig()).items()}
    out["methods.NAME"] = _body(cfg.MethodConfig.__doc__)[0]
    out["[models.checkpoints]"] = _body(cfg.CheckpointConfig.__doc__)[0]
    for name, cls in _explainers():
        out[f"explainer {name}"] = _body(cls.__doc__)[0]
    return out


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
        options = by_section.get(f"methods.{cfg._toml_key(family)}", {})
        for key, s in list(by_section["methods.NAME"].items()) + list(options.items()):
            yield (f"methods.{cfg._toml_key(name)}", key), s


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
