"""Explainers by name: ``get_explainer("smoothgrad", model, n_samples=50)``.

Every method registers its class with :func:`register_explainer` (under the class's ``name``; a name is
registered once). A name ``"family:member"`` (e.g. ``"captum:Occlusion"``) builds the class registered as
``family`` with the member passed as its ``member_option`` keyword (Captum: ``class_name``).
"""

from __future__ import annotations

import inspect
from typing import Any

from torch import nn

from binsight._registry import Registry
from binsight.explain.base import Explainer, ExplainerError

EXPLAINERS: Registry[type[Explainer]] = Registry("explainer", ExplainerError)


def register_explainer(cls: type[Explainer]) -> type[Explainer]:
    """Class decorator: register ``cls`` under ``cls.name`` (refused if the name is taken or empty)."""
    if not (isinstance(cls, type) and issubclass(cls, Explainer)):
        raise ExplainerError(f"only Explainer subclasses can be registered, got {cls!r}")
    EXPLAINERS.add(cls.name, cls)
    return cls


def available() -> list[str]:
    """Names of the registered single methods, sorted (families such as Captum's are reached as
    ``"captum:ClassName"``: :func:`families`)."""
    return [n for n in EXPLAINERS.names() if EXPLAINERS.get(n).member_option is None]


def families() -> list[str]:
    """Names of the registered method families, each reached as ``"family:member"`` (e.g. ``"captum"``)."""
    return [n for n in EXPLAINERS.names() if EXPLAINERS.get(n).member_option is not None]


def explainer_class(name: str) -> type[Explainer]:
    """The class that ``get_explainer(name, ...)`` builds (its ``seeded``, ``signed`` ... tell what it takes)."""
    if not isinstance(name, str):
        raise ExplainerError(f"an explainer name must be a string, got {name!r}")
    family, sep, member = name.partition(":")
    cls = EXPLAINERS.get(family)
    if sep and cls.member_option is None:
        raise ExplainerError(f"explainer {family!r} is a single method; use {family!r} without ':{member}'")
    if not sep and cls.member_option is not None:
        raise ExplainerError(f"{family!r} is a family of methods; name one as '{family}:NAME'")
    if sep and not member:
        raise ExplainerError(f"name a member after '{family}:', e.g. '{family}:NAME'")
    return cls


def get_explainer(name: str, model: nn.Module, **options: Any) -> Explainer:
    """Build the explainer called ``name`` for ``model`` with the method's keyword options."""
    cls = explainer_class(name)
    if cls.member_option is not None:
        options = {cls.member_option: name.partition(":")[2], **options}
    try:
        inspect.signature(cls).bind(model, **options)
    except TypeError as e:
        raise ExplainerError(f"bad parameters for explainer {name!r}: {e}") from None
    return cls(model, **options)
