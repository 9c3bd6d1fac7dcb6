"""Notifications delivered to webhooks: JSON POSTs signed with HMAC-SHA256, retried with
back-off in the background (a slow or dead receiver never holds up the dashboard)."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
from typing import Any

import aiohttp
import structlog

from .config import Webhook

log = structlog.get_logger(__name__)
ATTEMPTS = 4
BACKOFF = 1.0  # s, doubled after each failure
TIMEOUT = aiohttp.ClientTimeout(total=10)


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class Webhooks:
    def __init__(self, hooks: list[Webhook]) -> None:
        self.hooks = hooks
        self._session: aiohttp.ClientSession | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def deliver(self, notification: dict[str, Any]) -> None:
        for hook in self.hooks:
            if not hook.kinds or notification["kind"] in hook.kinds:
                task = asyncio.get_running_loop().create_task(self._post(hook, notification))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)

    async def _post(self, hook: Webhook, notification: dict[str, Any]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=TIMEOUT)
        body = json.dumps(notification).encode()
        headers = {"Content-Type": "application/json", "X-SyncStream-Event": notification["kind"]}
        if hook.secret:
            headers["X-SyncStream-Signature"] = signature(hook.secret, body)
        delay = BACKOFF
        for attempt in range(1, ATTEMPTS + 1):
            try:
                async with self._session.post(hook.url, data=body, headers=headers) as resp:
                    if resp.status < 300:
                        return
                    error = f"HTTP {resp.status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
            log.warning("admin.webhook_failed", url=hook.url, attempt=attempt, error=error)
            if attempt < ATTEMPTS:
                await asyncio.sleep(delay)
                delay *= 2

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()
