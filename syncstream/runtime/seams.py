"""The state of every performance seam: wanted (its switch), usable (its library check) and
so active, with the reason when it is not. Seams register here as the server starts."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import structlog

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Seam:
    name: str
    enabled: bool  # its switch in the runtime settings
    problem: str | None = None  # why the library does not allow it (None: it does)

    @property
    def active(self) -> bool:
        return self.enabled and self.problem is None

    def as_json(self) -> dict[str, Any]:
        return asdict(self) | {"active": self.active}


class Seams:
    """What each seam is doing in this process (logged once per seam)."""

    def __init__(self) -> None:
        self._seams: dict[str, Seam] = {}

    def record(self, name: str, enabled: bool, problem: str | None = None) -> bool:
        """Note the seam's state; True when it should be used."""
        seam = Seam(name, enabled, problem)
        if self._seams.get(name) != seam:
            self._seams[name] = seam
            if enabled and problem is not None:
                log.warning("runtime.seam_fallback", seam=name, reason=problem)
            else:
                log.info("runtime.seam", seam=name, active=seam.active)
        return seam.active

    def all(self) -> list[Seam]:
        return sorted(self._seams.values(), key=lambda seam: seam.name)


SEAMS = Seams()
