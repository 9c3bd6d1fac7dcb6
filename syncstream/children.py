"""Child processes die with their node, even when the node is killed with ``kill -9``.

Linux sends a child a chosen signal when its parent dies if the child asked for it with
``prctl(PR_SET_PDEATHSIG)``. Programs such as FFmpeg do not ask, so :func:`bound` runs them
through this file as a tiny launcher (``python -I -S children.py <parent pid> argv...``) that
asks for SIGKILL and then ``exec``s the program: the request survives ``exec``, so the program
itself is killed when the node goes. Python worker processes ask in their initializer
(:func:`die_with_parent`).

The kernel fires the signal when the *thread* that forked the child exits, not only the
process: children must be started from a thread that lives as long as they should (the event
loop's thread, or a dedicated thread such as :class:`syncstream.workers.WorkerPool`'s).

This file runs as a script too, so it imports only the standard library.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys
from collections.abc import Sequence

PR_SET_PDEATHSIG = 1
ORPHANED_EXIT = 70  # the launcher's status when the node was already gone


def die_with_parent(parent: int) -> None:
    """Have the kernel SIGKILL this process when ``parent`` dies (exit now if it already has)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"prctl(PR_SET_PDEATHSIG): {os.strerror(errno)}")
    if os.getppid() != parent:  # the parent died before the request took effect
        os._exit(ORPHANED_EXIT)


def bound(argv: Sequence[str]) -> list[str]:
    """``argv`` launched so that it is killed when this process dies."""
    return [sys.executable, "-I", "-S", os.path.abspath(__file__), str(os.getpid()), *argv]


def _launch(args: list[str]) -> None:
    parent, argv = int(args[0]), args[1:]
    die_with_parent(parent)
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    _launch(sys.argv[1:])
