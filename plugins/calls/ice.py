"""ICE servers for a call: the configured STUN/TURN list, plus TURN credentials in coturn's
REST-API style — username ``"<expiry unix time>:<user id>"``, password
``base64(HMAC-SHA1(secret, username))`` — that the TURN server checks without asking us."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from typing import Any

from .config import Config


def turn_credentials(secret: str, user_id: str, ttl_seconds: int, now: float) -> tuple[str, str]:
    username = f"{int(now) + ttl_seconds}:{user_id}"
    digest = hmac.new(secret.encode(), username.encode(), hashlib.sha1).digest()
    return username, base64.b64encode(digest).decode()


def ice_servers(config: Config, user_id: str) -> list[dict[str, Any]]:
    """What a participant passes to ``RTCPeerConnection({iceServers})``."""
    servers = [s.model_dump(exclude_none=True) for s in config.ice_servers]
    if config.turn is not None:
        username, credential = turn_credentials(
            config.turn.secret, user_id, config.turn.ttl_seconds, time.time()
        )
        servers.append({"urls": config.turn.urls, "username": username, "credential": credential})
    return servers
