"""Named parts: one ``Registry`` per kind of part (encoder network, posterior head, prior, ...).

A part registers itself with a decorator where it is defined::

    @PRIORS.register("normal")
    class StandardNormalPrior(Prior): ...

and everything that needs the names (config validation, the CLI's ``choices`` and ``--help``,
error messages) reads them from the registry, so a new part is one class in one file.
"""

from __future__ import annotations

from typing import Generic, TypeVar

from vaekit.errors import ConfigError

T = TypeVar("T")


class Registry(Generic[T]):
    """Names -> registered objects (classes or functions) of one kind of part.

    kind: what the names name, for messages ("prior", "likelihood", ...).
    """

    def __init__(self, kind: str):
        self.kind = kind
        self._entries: dict[str, T] = {}

    def register(self, name: str):
        """Decorator: register the decorated object under ``name`` (and set its ``name`` attribute
        when it is a class)."""

        def wrap(obj: T) -> T:
            self.add(name, obj)
            if isinstance(obj, type):
                obj.name = name
            return obj

        return wrap

    def add(self, name: str, obj: T) -> None:
        """Register ``obj`` (someone else's class, say) under ``name``, leaving it as it is."""
        if name in self._entries:
            raise ValueError(f"a {self.kind} named {name!r} is registered already")
        self._entries[name] = obj

    def names(self) -> list[str]:
        """The registered names, sorted."""
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __getitem__(self, name: str) -> T:
        """The object registered as ``name``; a ``ConfigError`` listing the choices otherwise."""
        try:
            return self._entries[name]
        except (KeyError, TypeError):
            raise ConfigError(f"unknown {self.kind} {name!r}; choose one of {', '.join(self.names())}") from None

    def check(self, name: object) -> None:
        """Raise the ``ConfigError`` of ``self[name]`` unless ``name`` is registered."""
        self[name]
