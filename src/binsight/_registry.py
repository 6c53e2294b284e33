"""One registry pattern for everything binsight looks up by name (explainers, models, datasets,
surrogates), after timm's ``register_model`` / ``create_model``.

    EXPLAINERS = Registry("explainer", ExplainerError)

    @EXPLAINERS.register("gradient")
    class Gradient(Explainer): ...

    EXPLAINERS.get("gradient")   # the registered object; an unknown name raises ExplainerError
    EXPLAINERS.names()           # sorted names

A name is registered once: registering it again raises the registry's error (no silent overwrite).
"""

from __future__ import annotations

import difflib
from typing import Callable, Generic, TypeVar

from binsight.errors import BinsightError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named objects of one kind. ``kind`` names them in messages; ``error`` is the error raised."""

    def __init__(self, kind: str, error: type[BinsightError] = BinsightError):
        self.kind = kind
        self.error = error
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        """Decorator adding the decorated object under ``name``; a name taken already is refused."""

        def add(obj: T) -> T:
            self.add(name, obj)
            return obj

        return add

    def add(self, name: str, obj: T) -> None:
        """Add ``obj`` under ``name`` (the non-decorator form of :meth:`register`)."""
        if not name or not isinstance(name, str):
            raise self.error(f"a {self.kind} needs a non-empty name, got {name!r}")
        if name in self._items:
            raise self.error(f"{self.kind} {name!r} is already registered; choose another name")
        self._items[name] = obj

    def get(self, name: str) -> T:
        """The object registered as ``name``; an unknown name raises the registry's error, with the
        registered names and the closest ones."""
        try:
            return self._items[name]
        except (KeyError, TypeError):
            raise self.error(self.unknown_message(name)) from None

    def unknown_message(self, name: object) -> str:
        close = difflib.get_close_matches(str(name), self._items, n=3)
        hint = f" (did you mean {', '.join(map(repr, close))}?)" if close else ""
        return f"unknown {self.kind} {name!r}{hint}; available: {', '.join(self.names()) or 'none'}"

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._items)

    def __contains__(self, name: object) -> bool:
        return name in self._items

    def __len__(self) -> int:
        return len(self._items)
