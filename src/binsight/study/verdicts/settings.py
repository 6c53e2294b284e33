"""What the verdicts read from the configuration: :class:`VerdictSettings`, derived from
:class:`~binsight.study.config.VerdictsConfig` so that each verdict setting is declared once.

Its fields are VerdictsConfig's, in their order, lists as tuples (the settings are frozen), with their
defaults and ``help``; left out is ``robustness_surrogates`` (which BNN variants the runner explains, not
how a verdict is decided), and added after ``faithfulness_method`` is ``chance_map_methods`` (the chance
maps' labels, which only the verdicts use). The field order is verdicts.json's. A new verdict setting is a
new field of VerdictsConfig, and nothing here.
"""

from __future__ import annotations

import dataclasses
import typing
from typing import Any

from binsight.study.config import VerdictsConfig, setting
from binsight.study.measures import chance_labels

CONFIG_ONLY = frozenset({"robustness_surrogates"})
"""VerdictsConfig fields the verdicts do not read."""

_CHANCE_MAP_METHODS = ("chance_map_methods", tuple[str, ...],
                       setting(tuple(chance_labels()), help="the chance maps' method labels."))


def _fields() -> list[tuple[str, Any, dataclasses.Field]]:
    """(name, type, field) of each setting: VerdictsConfig's but :data:`CONFIG_ONLY`, lists as tuples,
    ``chance_map_methods`` after ``faithfulness_method``."""
    hints = typing.get_type_hints(VerdictsConfig)
    out = []
    for f in dataclasses.fields(VerdictsConfig):
        if f.name in CONFIG_ONLY:
            continue
        hint = hints[f.name]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        if typing.get_origin(hint) is list:
            hint, default = tuple[typing.get_args(hint)[0], ...], tuple(default)
        out.append((f.name, hint, dataclasses.field(default=default, metadata=f.metadata)))
        if f.name == "faithfulness_method":
            out.append(_CHANCE_MAP_METHODS)
    return out


class _Rules:
    """The methods of :class:`VerdictSettings`."""

    @classmethod
    def from_config(cls, config: VerdictsConfig | None) -> "VerdictSettings":
        """Settings from a :class:`VerdictsConfig`; a field it lacks keeps its default."""
        values = {}
        for f in dataclasses.fields(cls):
            if config is not None and hasattr(config, f.name):
                value = getattr(config, f.name)
                values[f.name] = tuple(value) if isinstance(value, (list, tuple)) else value
        return cls(**values)

    def margins(self) -> tuple[str, ...]:
        """The names of the margins (the settings ending in ``_margin``)."""
        return tuple(f.name for f in dataclasses.fields(self) if f.name.endswith("_margin"))

    def scaled_margins(self, factor: float) -> "VerdictSettings":
        """These settings with every margin multiplied by ``factor``."""
        return dataclasses.replace(self, **{n: getattr(self, n) * factor for n in self.margins()})


VerdictSettings = dataclasses.make_dataclass("VerdictSettings", _fields(), bases=(_Rules,), frozen=True)
VerdictSettings.__module__ = __name__
VerdictSettings.__doc__ = ("Everything the verdicts read from the configuration, with its defaults: the fields of "
                           "VerdictsConfig (see this module), frozen.")
