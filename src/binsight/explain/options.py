"""The options an explainer class takes: its signature's keyword options and its docstring's ``Args:`` block.

:func:`keyword_options` is the one reading of an explainer's signature: ``binsight explain`` names them in
its messages, the study configuration checks a method table's keys against them, and docs/settings.md lists
them with :func:`option_help`'s descriptions.
"""

from __future__ import annotations

import importlib
import inspect
import re
import textwrap

_ROLE = re.compile(r":\w+:`~?([\w.]+)`")


def keyword_options(cls: type) -> dict[str, inspect.Parameter]:
    """Option name -> parameter of each keyword option of explainer class ``cls``, in the order of its
    signature; the model and a family's member name (``cls.member_option``, e.g. Captum's class name) left
    out, and so is ``**options``."""
    params = inspect.signature(cls.__init__).parameters
    skip = {"self", "model", cls.member_option}
    return {name: p for name, p in params.items()
            if name not in skip and p.kind in (p.KEYWORD_ONLY, p.POSITIONAL_OR_KEYWORD)}


def takes_any_keyword(cls: type) -> bool:
    """Whether ``cls`` accepts any keyword (``**options``: a family such as Captum passes them on)."""
    return any(p.kind is p.VAR_KEYWORD for p in inspect.signature(cls.__init__).parameters.values())


def markdown_text(text: str) -> str:
    """Docstring text as one line of Markdown: Sphinx roles and double backticks as plain code."""
    text = _ROLE.sub(lambda m: f"`{m.group(1).split('.')[-1]}`", " ".join(text.split()))
    return text.replace("``", "`").strip()


def option_help(cls: type) -> dict[str, str]:
    """Option name -> description (:func:`markdown_text`) from the ``Args:`` block of ``cls``'s docstring
    (Google style: ``name: text``, ``a, b: shared text``, ``**rest: text``); an entry ``as :class:`Other```
    takes Other's description of the same option, followed by what the entry adds."""
    doc = inspect.cleandoc(cls.__doc__ or "")
    block = re.search(r"^Args:\n((?:[ \t]+\S.*\n?)+)", doc, re.M)
    if not block:
        return {}
    out: dict[str, str] = {}
    for entry in re.split(r"\n(?=\S)", textwrap.dedent(block.group(1))):
        label, _, text = entry.partition(":")
        for name in (n.strip().lstrip("*") for n in label.split(",")):
            out[name] = _borrowed(text, name) or markdown_text(text)
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
    base = option_help(other).get(name, "")
    rest = markdown_text(m.group(2)).strip(" .;")
    return f"{base} {rest}".strip() if base else ""
