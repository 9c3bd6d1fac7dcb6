"""Services plugins offer each other without importing each other.

A plugin provides an implementation of an interface defined in the core (such as
:class:`syncstream.filestore.FileStore`); another plugin that depends on it (``dependencies``
in its manifest) looks it up by that interface. A plugin whose setup fails has what it
provided withdrawn. Lookups of something no enabled plugin provides fail with a clear message.
"""

from __future__ import annotations

from typing import Any, TypeVar, cast

T = TypeVar("T")


class ServiceMissing(LookupError):
    pass


class ServiceRegistry:
    def __init__(self) -> None:
        self._by_interface: dict[type[Any], tuple[str, Any]] = {}

    def provide(self, interface: type[T], implementation: T, provider: str) -> None:
        if interface in self._by_interface:
            other = self._by_interface[interface][0]
            raise ValueError(f"{interface.__name__} is already provided by plugin {other!r}")
        self._by_interface[interface] = (provider, implementation)

    def withdraw(self, provider: str) -> None:
        """Forget what ``provider`` offered (its setup failed)."""
        self._by_interface = {k: v for k, v in self._by_interface.items() if v[0] != provider}

    def get(self, interface: type[T]) -> T:
        try:
            return cast(T, self._by_interface[interface][1])
        except KeyError:
            raise ServiceMissing(
                f"no enabled plugin provides {interface.__name__}; enable the plugin that does"
            ) from None

    def find(self, interface: type[T]) -> T | None:
        entry = self._by_interface.get(interface)
        return None if entry is None else cast(T, entry[1])
