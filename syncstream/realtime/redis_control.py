"""The control channel over Redis: each node listens on its own channel, ``<prefix>:rt:node:
<node id>``, on the broker's subscription connection (so it is there exactly while the node's
realtime engine is). A request is a PUBLISH to the target's channel: no subscriber there
means no such node is connected — the request fails at once instead of timing out."""

from __future__ import annotations

import asyncio

from redis.exceptions import RedisError

from .control import ControlChannel
from .engine import BrokerUnavailable
from .redis_engine import RedisBroker

# PUBLISHes in flight at once: redis-py's pool (100 connections) fails a command beyond its
# size instead of waiting, and the broker's publications share it.
MAX_SENDS = 32


class RedisControl(ControlChannel):
    def __init__(self, broker: RedisBroker) -> None:
        super().__init__(broker.node_id)
        self.broker = broker
        self._sends = asyncio.Semaphore(MAX_SENDS)

    async def start(self) -> None:
        self.broker.on_node_message(self._received)

    async def stop(self) -> None:
        self.broker.on_node_message(None)
        await super().stop()

    async def _send(self, node: str, message: str) -> bool:
        try:
            async with self._sends:
                receivers = await self.broker.redis.publish(self.broker.node_channel(node), message)
        except (RedisError, OSError) as exc:
            raise BrokerUnavailable(exc) from exc
        return int(receivers) > 0
