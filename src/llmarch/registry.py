"""Small name -> factory registries, so configs choose parts by string and stay serialisable."""
from __future__ import annotations

from typing import Callable, Generic, TypeVar

from .errors import LlmarchError

T = TypeVar("T")


class Registry(Generic[T]):
    def __init__(self, kind: str):
        self.kind = kind
        self._items: dict[str, T] = {}

    def register(self, name: str) -> Callable[[T], T]:
        def add(item: T) -> T:
            if name in self._items:
                raise ValueError(f"{self.kind} {name!r} registered twice")
            self._items[name] = item
            return item

        return add

    def __getitem__(self, name: str) -> T:
        try:
            return self._items[name]
        except KeyError:
            raise LlmarchError(f"unknown {self.kind} {name!r}; choose one of: {', '.join(self.names())}") from None

    def __contains__(self, name: str) -> bool:
        return name in self._items

    def __iter__(self):
        return iter(self.names())

    def names(self) -> list[str]:
        """In registration order (for a package of parts, the order its __init__ imports them)."""
        return list(self._items)
