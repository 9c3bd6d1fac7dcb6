"""Group commit: many callers' writes share one transaction, each acknowledged after it.

A hot write path (a move in every game, a chat message in every room) that commits once per
write pays a commit per write; under load most of the time goes to commits. Here the first
write that finds no writer running yields once, so the writes made in the same turn of the
event loop join it, then commits them all with :meth:`Store.write_batch`; writes made while
that transaction runs share the next one. Under load the batches grow by themselves, and a
burst of writes costs one commit instead of one each. Every caller's ``write`` returns only
once its statements are committed, and raises if their transaction failed.

One failing statement fails its whole batch (each caller of that batch gets the error): use
this for writes that are not expected to fail, and keep ``Store.write_batch`` for those that
may (a constraint that refuses a duplicate, say).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .base import Store
from .errors import StoreError

Statements = Sequence[tuple[str, Sequence[Any]]]


class WriteInterrupted(StoreError):
    """The task committing a batch was cancelled before the batch's outcome was known."""


@dataclass
class _Pending:
    statements: Statements | Callable[[], Statements]
    done: asyncio.Future[None]


def _settle(batch: list[_Pending], failure: BaseException | None) -> None:
    for write in batch:
        if not write.done.done():
            if failure is None:
                write.done.set_result(None)
            else:
                write.done.set_exception(failure)


class GroupCommit:
    """Shared transactions for the writes of one store (one per writer, e.g. per plugin)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._queue: list[_Pending] = []
        self._writing = False
        self._writer: asyncio.Task[None] | None = None
        # Kept: on Python 3.11 each get_running_loop() is a getpid() system call.
        self._loop: asyncio.AbstractEventLoop | None = None

    async def write(self, statements: Statements | Callable[[], Statements]) -> None:
        """Commit ``statements`` (or what the function gives when the batch is formed: a
        caller that computes them from state written by earlier batches) and return once
        committed."""
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        write = _Pending(statements, self._loop.create_future())
        self._queue.append(write)
        if not self._writing:
            self._writing = True
            try:
                await asyncio.sleep(0)  # the writes of this turn of the loop join
            except asyncio.CancelledError:  # the others' writes are still to be made
                self._writer = asyncio.create_task(self._write_batches())
                raise
            await self._write_batches()
        await write.done

    async def _write_batches(self) -> None:
        """Commit queued writes, a batch per transaction, until none is left."""
        self._writing = True
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                statements = [
                    st
                    for write in batch
                    for st in (
                        write.statements() if callable(write.statements) else write.statements
                    )
                ]
                try:
                    await self.store.write_batch(statements)
                except Exception as exc:
                    _settle(batch, exc)
                except BaseException:  # the writing caller was cancelled: the others were not
                    _settle(batch, WriteInterrupted("the commit was interrupted: retry"))
                    raise
                else:
                    _settle(batch, None)
        finally:
            self._writing = bool(self._queue)
            if self._queue:  # writes queued behind a cancelled writer: write them on
                self._writer = asyncio.create_task(self._write_batches())
