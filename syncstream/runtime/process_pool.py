"""The worker processes of a ``ProcessPoolExecutor``, to kill them.

A pool is replaced when a call times out (a stuck decoder); shutting it down only stops it
taking work, its busy workers finish their calls first. ``concurrent.futures`` has no public
list of a pool's processes: ``_processes`` (pid -> process) is what its own shutdown walks.
Where that changed, :func:`processes` finds none and the old workers are left to finish their
calls under their address-space cap (a warning says so at the first reset).
"""

from __future__ import annotations

import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing.process import BaseProcess

CHECKED = ((3, 11), (3, 15))  # the Pythons this was written and tested against


def problem() -> str | None:
    """Why a pool's processes cannot be listed on this Python (None: they can)."""
    low, below = CHECKED
    if not low <= sys.version_info[:2] < below:
        return f"Python {sys.version_info[0]}.{sys.version_info[1]} was not checked"
    if "_processes" not in ProcessPoolExecutor.__init__.__code__.co_names:
        return "ProcessPoolExecutor no longer keeps _processes"
    return None


def processes(pool: ProcessPoolExecutor) -> list[BaseProcess]:
    """The pool's worker processes; call only where :func:`problem` said None (checked once,
    when the pool is made: ``WorkerPool``)."""
    table = getattr(pool, "_processes", None) or {}
    return [process for process in table.values() if isinstance(process, BaseProcess)]
