"""Users, bearer tokens, roles, bans, login throttling and stream keys.

Tokens are opaque random strings; only their SHA-256 is stored, so a database leak yields no
usable token. Failed logins are throttled per (client address, account name) in the store, so
the throttle holds across restarts and nodes.
Every auth action is audited and fired on the bus (``user.*``, ``auth.*``).
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from ..audit import Audit
from ..bus import EventBus
from ..config import AuthSettings
from ..errors import Problem
from ..ids import new_id, new_secret
from ..ratelimit import KeyedLimiter
from ..store import IntegrityError, Store
from .models import Role as Role  # where the realtime gateway imports it from
from .models import Session, User
from .passwords import hash_password, needs_rehash, verify_password
from .session_cache import SessionCache

USERNAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{1,31}$")
TOKEN_PREFIX = "sst"
STREAM_KEY_PREFIX = "live"
LAST_USED_RESOLUTION = 60.0  # seconds; bounds writes caused by authenticated reads

MIGRATIONS = [
    """
    CREATE TABLE users (
        id TEXT PRIMARY KEY,
        username TEXT NOT NULL,
        username_key TEXT NOT NULL UNIQUE,
        password_hash TEXT NOT NULL,
        role TEXT NOT NULL DEFAULT 'user',
        banned BIGINT NOT NULL DEFAULT 0,
        created_at DOUBLE PRECISION NOT NULL,
        failed_logins BIGINT NOT NULL DEFAULT 0,
        first_failed_at DOUBLE PRECISION,
        locked_until DOUBLE PRECISION
    );
    CREATE TABLE tokens (
        id TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        token_hash TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL,
        expires_at DOUBLE PRECISION NOT NULL,
        revoked_at DOUBLE PRECISION,
        last_used_at DOUBLE PRECISION NOT NULL,
        ip TEXT,
        user_agent TEXT
    );
    CREATE INDEX tokens_user ON tokens (user_id);
    CREATE TABLE stream_keys (
        stream TEXT PRIMARY KEY,
        user_id TEXT NOT NULL REFERENCES users (id) ON DELETE CASCADE,
        key_hash TEXT NOT NULL UNIQUE,
        created_at DOUBLE PRECISION NOT NULL
    );
    CREATE INDEX stream_keys_user ON stream_keys (user_id)
    """,
    # When an account was last seen (a login, or a token's use), for the operator's lists.
    """
    ALTER TABLE users ADD COLUMN last_seen_at DOUBLE PRECISION;
    UPDATE users SET last_seen_at = (SELECT MAX(t.last_used_at) FROM tokens t
                                     WHERE t.user_id = users.id);
    CREATE INDEX users_last_seen ON users (last_seen_at);
    CREATE INDEX users_created ON users (created_at)
    """,
    # Failed logins counted per (client address, account name), whether the account exists or
    # not: one address's failures no longer lock the owner out everywhere, and the answers no
    # longer tell which accounts exist. The per-account columns go.
    """
    CREATE TABLE login_failures (
        ip TEXT NOT NULL,
        username_key TEXT NOT NULL,
        failures BIGINT NOT NULL,
        first_failed_at DOUBLE PRECISION NOT NULL,
        locked_until DOUBLE PRECISION,
        PRIMARY KEY (ip, username_key)
    );
    CREATE INDEX login_failures_first ON login_failures (first_failed_at);
    ALTER TABLE users DROP COLUMN failed_logins;
    ALTER TABLE users DROP COLUMN first_failed_at;
    ALTER TABLE users DROP COLUMN locked_until
    """,
]


def client_key(ip: str | None) -> str:
    """Whom login limits count a request against: the IPv4 address, or the IPv6 /64 (one
    client usually holds a whole /64, and could otherwise walk its addresses)."""
    try:
        address = ipaddress.ip_address(ip or "")
    except ValueError:
        return ip or "-"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.ip_network(f"{address}/64", strict=False))
    return str(address)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def bearer_token(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None if it is not one."""
    scheme, _, token = header.partition(" ")
    token = token.strip()
    return token if token and scheme.lower() == "bearer" else None


@dataclass(frozen=True, slots=True)
class IssuedToken:
    id: str
    token: str
    expires_at: float


SESSION_KEY = web.RequestKey("syncstream.session", Session)


USER_COLUMNS = "u.id, u.username, u.role, u.banned, u.created_at"


class Auth:
    """The authentication and account service shared by the core and plugins."""

    def __init__(self, store: Store, bus: EventBus, audit: Audit, settings: AuthSettings) -> None:
        self.store = store
        self.bus = bus
        self.audit = audit
        self.settings = settings
        self.login_limiter = KeyedLimiter(
            settings.login_per_ip_per_minute / 60.0, settings.login_per_ip_per_minute
        )
        self.sessions = SessionCache(bus, settings.session_cache_seconds)
        # Awaited by set_role before it returns: the realtime gateway ends, on every node,
        # the subscriptions the new role forbids (user id, new role).
        self.role_hooks: list[Callable[[str, Role], Awaitable[None]]] = []

    # --- accounts -------------------------------------------------------------------------

    def check_username(self, username: str) -> str:
        if not USERNAME_RE.match(username):
            raise Problem(
                422,
                "invalid_username",
                "usernames are 2-32 characters: letters, digits, '_', '.', '-'",
            )
        return username

    def check_password(self, password: str) -> str:
        if len(password) < self.settings.password_min_length:
            raise Problem(
                422,
                "weak_password",
                f"passwords need at least {self.settings.password_min_length} characters",
            )
        if len(password) > 1024:
            raise Problem(422, "invalid_password", "passwords are at most 1024 characters")
        return password

    async def create_user(
        self, username: str, password: str, role: Role = "user", *, ip: str | None = None
    ) -> User:
        """Create an account; 409 ``username_taken`` if the name (any case) exists."""
        self.check_username(username)
        self.check_password(password)
        user = User(new_id(), username, role, False, time.time())
        password_hash = await hash_password(password)
        try:
            await self.store.execute(
                "INSERT INTO users (id, username, username_key, password_hash, role, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?)",
                user.id,
                username,
                username.lower(),
                password_hash,
                role,
                user.created_at,
            )
        except IntegrityError:
            raise Problem(409, "username_taken", f"the username {username!r} is taken") from None
        await self.audit.record("user.created", actor_id=user.id, target=user.id, ip=ip, role=role)
        await self.bus.fire("user.registered", {"user": user.public()})
        return user

    async def get_user(self, user_id: str) -> User:
        row = await self.store.fetchone(
            f"SELECT {USER_COLUMNS} FROM users u WHERE u.id = ?", user_id
        )
        if row is None:
            raise Problem(404, "user_not_found", "no such user")
        return User.from_row(row)

    async def find_user(self, username: str) -> User | None:
        row = await self.store.fetchone(
            f"SELECT {USER_COLUMNS} FROM users u WHERE u.username_key = ?", username.lower()
        )
        return User.from_row(row) if row else None

    async def list_users(
        self, search: str = "", limit: int = 50, offset: int = 0
    ) -> tuple[list[User], int]:
        pattern = f"%{search.lower()}%"
        total = await self.store.fetchval(
            "SELECT COUNT(*) FROM users WHERE username_key LIKE ?", pattern
        )
        rows = await self.store.fetchall(
            f"SELECT {USER_COLUMNS} FROM users u WHERE u.username_key LIKE ?"
            " ORDER BY u.username_key LIMIT ? OFFSET ?",
            pattern,
            limit,
            offset,
        )
        return [User.from_row(r) for r in rows], int(total)

    async def set_role(
        self, user_id: str, role: Role, *, actor: User, ip: str | None = None
    ) -> User:
        user = await self.get_user(user_id)
        await self.store.execute("UPDATE users SET role = ? WHERE id = ?", role, user_id)
        for hook in self.role_hooks:  # before the change is announced (audit, bus)
            await hook(user_id, role)
        await self.audit.record(
            "user.role_changed", actor_id=actor.id, target=user_id, ip=ip, old=user.role, new=role
        )
        await self.bus.fire("user.role_changed", {"user_id": user_id, "role": role})
        return await self.get_user(user_id)

    async def set_banned(
        self, user_id: str, banned: bool, *, actor: User | None, ip: str | None = None
    ) -> User:
        """Ban (revoking every token at once) or unban; ``user.banned`` ends live sessions."""
        await self.get_user(user_id)
        await self.store.execute("UPDATE users SET banned = ? WHERE id = ?", int(banned), user_id)
        action = "user.banned" if banned else "user.unbanned"
        await self.audit.record(action, actor_id=actor.id if actor else None, target=user_id, ip=ip)
        await self.bus.fire(action, {"user_id": user_id})
        if banned:
            await self.revoke_all(user_id, reason="banned")
        return await self.get_user(user_id)

    async def change_password(
        self, user: User, old: str, new: str, *, keep_token: str | None, ip: str | None = None
    ) -> None:
        """Change the password and revoke every other token of the user."""
        row = await self.store.fetchone("SELECT password_hash FROM users WHERE id = ?", user.id)
        if row is None or not await verify_password(row["password_hash"], old):
            await self.audit.record("auth.password_change_failed", actor_id=user.id, ip=ip)
            raise Problem(403, "invalid_credentials", "the current password is wrong")
        await self.set_password(user.id, new)
        await self.revoke_all(user.id, reason="password_changed", keep=keep_token)
        await self.audit.record("auth.password_changed", actor_id=user.id, target=user.id, ip=ip)

    async def reset_password(
        self, user_id: str, password: str, *, via: str, actor_id: str | None = None,
        ip: str | None = None,
    ) -> None:  # fmt: skip
        """An operator sets a new password: every session of the user ends (audited)."""
        await self.set_password(user_id, password)
        await self.revoke_all(user_id, reason="password_reset")
        await self.audit.record(
            "auth.password_reset", actor_id=actor_id, target=user_id, ip=ip, via=via
        )

    async def set_password(self, user_id: str, password: str) -> None:
        self.check_password(password)
        password_hash = await hash_password(password)
        await self.store.write_batch([
            ("UPDATE users SET password_hash = ? WHERE id = ?", (password_hash, user_id)),
            # A new password ends the account's throttles, from every address.
            ("DELETE FROM login_failures WHERE username_key ="
             " (SELECT username_key FROM users WHERE id = ?)", (user_id,)),
        ])  # fmt: skip

    # --- login and tokens -----------------------------------------------------------------

    def check_ip_rate(self, ip: str | None) -> None:
        wait = self.login_limiter.take(client_key(ip))
        if wait:
            raise Problem(
                429,
                "rate_limited",
                "too many login attempts from this address",
                headers={"Retry-After": str(int(wait) + 1)},
            )

    async def login(
        self, username: str, password: str, *, ip: str | None = None, user_agent: str | None = None
    ) -> tuple[User, IssuedToken]:
        """Check credentials and issue a token.

        Besides the per-address rate limit, failures are throttled per (client address, account
        name) as OWASP's authentication cheat sheet advises: names that exist and names that do
        not are treated alike (same answers, same work), and an attacker's failures from one
        address never stop the owner logging in from another.
        """
        address = client_key(ip)
        key = username.lower()
        self.check_ip_rate(ip)
        now = time.time()
        throttle = await self.store.fetchone(
            "SELECT locked_until FROM login_failures WHERE ip = ? AND username_key = ?",
            address,
            key,
        )
        if throttle is not None and (throttle["locked_until"] or 0) > now:
            await self.audit.record("auth.login_throttled", ip=ip)
            wait = int(throttle["locked_until"] - now) + 1
            raise Problem(
                429,
                "login_throttled",
                f"too many failed logins for this account from this address; try again in {wait} s",
                headers={"Retry-After": str(wait)},
            )
        row = await self.store.fetchone(
            f"SELECT {USER_COLUMNS}, u.password_hash FROM users u WHERE u.username_key = ?", key
        )
        ok = await verify_password(row["password_hash"] if row else None, password)
        if row is None or not ok:
            await self._count_failure(address, key, now)
            # The name is recorded only when it names an account: what was typed into the
            # name field of a failed login may be a password or a token.
            await self.audit.record(
                "auth.login_failed",
                target=row["id"] if row else None,
                ip=ip,
                **({"username": row["username"]} if row else {}),
            )
            raise Problem(401, "invalid_credentials", "wrong username or password")
        user = User.from_row(row)
        if user.banned:
            await self.audit.record("auth.login_banned", target=user.id, ip=ip)
            raise Problem(403, "user_banned", "this account is banned")
        if throttle is not None:
            await self.store.execute(
                "DELETE FROM login_failures WHERE ip = ? AND username_key = ?", address, key
            )
        if needs_rehash(row["password_hash"]):
            await self.set_password(user.id, password)
        token = await self.issue_token(user, ip=ip, user_agent=user_agent)
        await self.audit.record("auth.login", actor_id=user.id, target=user.id, ip=ip)
        return user, token

    async def _count_failure(self, address: str, key: str, now: float) -> None:
        """Count one failed login of ``key`` from ``address``; throttle the pair at the limit."""
        settings = self.settings
        window_start = now - settings.login_window_seconds
        async with self.store.transaction() as tx:
            failures = await tx.fetchval(
                "INSERT INTO login_failures (ip, username_key, failures, first_failed_at)"
                " VALUES (?, ?, 1, ?) ON CONFLICT (ip, username_key) DO UPDATE SET"
                " failures = CASE WHEN login_failures.first_failed_at < ? THEN 1"
                "  ELSE login_failures.failures + 1 END,"
                " first_failed_at = CASE WHEN login_failures.first_failed_at < ?"
                "  THEN excluded.first_failed_at ELSE login_failures.first_failed_at END"
                " RETURNING failures",
                address,
                key,
                now,
                window_start,
                window_start,
            )
            if failures >= settings.login_max_failures:
                await tx.execute(
                    "UPDATE login_failures SET locked_until = ? WHERE ip = ? AND username_key = ?",
                    now + settings.lockout_seconds,
                    address,
                    key,
                )
            # Pairs whose window and throttle are both over are forgotten.
            await tx.execute(
                "DELETE FROM login_failures WHERE first_failed_at < ?"
                " AND (locked_until IS NULL OR locked_until < ?)",
                window_start,
                now,
            )
        if failures >= settings.login_max_failures:
            await self.audit.record(
                "auth.login_throttle_started", ip=address, until=now + settings.lockout_seconds
            )

    async def issue_token(
        self, user: User, *, ip: str | None = None, user_agent: str | None = None
    ) -> IssuedToken:
        secret = new_secret(TOKEN_PREFIX)
        now = time.time()
        issued = IssuedToken(new_id(), secret, now + self.settings.token_ttl_seconds)
        await self.store.write_batch([
            ("INSERT INTO tokens (id, user_id, token_hash, created_at, expires_at, last_used_at,"
             " ip, user_agent) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
             (issued.id, user.id, digest(secret), now, issued.expires_at, now, ip,
              (user_agent or "")[:256])),
            ("UPDATE users SET last_seen_at = ? WHERE id = ?", (now, user.id)),
        ])  # fmt: skip
        return issued

    async def authenticate(self, token: str) -> Session:
        """The session a bearer token stands for, or 401/403 problems."""
        if not token.startswith(TOKEN_PREFIX + "_") or len(token) > 200:
            raise Problem(401, "invalid_token", "the bearer token is not valid")
        key = digest(token)
        session = self.sessions.get(key)
        if session is not None:
            return session
        row = await self.store.fetchone(
            f"SELECT {USER_COLUMNS}, t.id AS token_id, t.expires_at, t.revoked_at,"
            " t.last_used_at FROM tokens t JOIN users u ON u.id = t.user_id"
            " WHERE t.token_hash = ?",
            key,
        )
        if row is None or row["revoked_at"] is not None:
            raise Problem(401, "invalid_token", "the bearer token is not valid")
        now = time.time()
        if row["expires_at"] <= now:
            raise Problem(401, "token_expired", "the bearer token has expired; log in again")
        if row["banned"]:
            raise Problem(403, "user_banned", "this account is banned")
        if now - row["last_used_at"] > LAST_USED_RESOLUTION:
            await self.store.write_batch([
                ("UPDATE tokens SET last_used_at = ? WHERE id = ?", (now, row["token_id"])),
                ("UPDATE users SET last_seen_at = ? WHERE id = ?", (now, row["id"])),
            ])  # fmt: skip
        session = Session(User.from_row(row), row["token_id"])
        self.sessions.put(key, session, row["expires_at"])
        return session

    def cached_session(self, request: web.Request) -> Session | None:
        """The session of the request's bearer token if the session cache holds it, without
        a store round trip or an await; else None, and :meth:`session_from_request` checks
        the token (and refuses it with the right problem)."""
        token = bearer_token(request.headers.get("Authorization", ""))
        if token is None:
            return None
        session = self.sessions.get(digest(token))
        if session is not None:
            request[SESSION_KEY] = session
        return session

    async def session_from_request(self, request: web.Request) -> Session:
        """Authenticate ``Authorization: Bearer <token>``, the only way on HTTP routes (a
        token in the URL was refused before any handler ran: :func:`refuse_token_in_url`)."""
        return await self._session(request, request.headers.get("Authorization", ""))

    async def session_from_handshake(self, request: web.Request) -> Session:
        """The WebSocket handshake (``/ws``): the header, or ``?token=`` since browsers cannot
        set headers on a WebSocket. The access log never writes query strings."""
        header = request.headers.get("Authorization", "")
        if not header and request.query.get("token"):
            header = "Bearer " + request.query["token"]
        return await self._session(request, header)

    async def _session(self, request: web.Request, header: str) -> Session:
        if not header:
            raise Problem(
                401,
                "unauthorized",
                "this call needs a bearer token",
                headers={"WWW-Authenticate": "Bearer"},
            )
        token = bearer_token(header)
        if token is None:
            raise Problem(401, "invalid_token", "use 'Authorization: Bearer <token>'")
        session = await self.authenticate(token)
        request[SESSION_KEY] = session
        return session

    async def user_from_request(self, request: web.Request) -> User:
        return (await self.session_from_request(request)).user

    async def list_tokens(self, user_id: str) -> list[dict[str, Any]]:
        return await self.store.fetchall(
            "SELECT id, created_at, expires_at, last_used_at, ip, user_agent FROM tokens"
            " WHERE user_id = ? AND revoked_at IS NULL AND expires_at > ? ORDER BY created_at DESC",
            user_id,
            time.time(),
        )

    async def revoke_token(self, user_id: str, token_id: str, *, ip: str | None = None) -> None:
        changed = await self.store.execute(
            "UPDATE tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL",
            time.time(),
            token_id,
            user_id,
        )
        if not changed:
            raise Problem(404, "token_not_found", "no such active token")
        await self.audit.record("auth.token_revoked", actor_id=user_id, target=token_id, ip=ip)
        await self.bus.fire("auth.tokens_revoked", {"user_id": user_id, "token_ids": [token_id]})

    async def revoke_all(self, user_id: str, *, reason: str, keep: str | None = None) -> None:
        """Revoke every active token of a user (but ``keep``, a token id)."""
        rows = await self.store.fetchall(
            "SELECT id FROM tokens WHERE user_id = ? AND revoked_at IS NULL", user_id
        )
        ids = [r["id"] for r in rows if r["id"] != keep]
        if not ids:
            return
        await self.store.executemany(
            "UPDATE tokens SET revoked_at = ? WHERE id = ?", [(time.time(), i) for i in ids]
        )
        await self.audit.record(
            "auth.tokens_revoked", target=user_id, reason=reason, count=len(ids)
        )
        await self.bus.fire("auth.tokens_revoked", {"user_id": user_id, "token_ids": ids})

    # --- stream keys ----------------------------------------------------------------------

    async def rotate_stream_key(self, user: User, stream: str | None = None) -> tuple[str, str]:
        """Issue a new key for ``stream`` (default: the username); the old key stops working."""
        name = (stream or user.username).lower()
        self.check_username(name)
        key = new_secret(STREAM_KEY_PREFIX, 24)
        async with self.store.transaction() as tx:
            owner = await tx.fetchval("SELECT user_id FROM stream_keys WHERE stream = ?", name)
            if owner is not None and owner != user.id:
                raise Problem(
                    409, "stream_taken", f"the stream name {name!r} belongs to another user"
                )
            await tx.execute("DELETE FROM stream_keys WHERE stream = ?", name)
            await tx.execute(
                "INSERT INTO stream_keys (stream, user_id, key_hash, created_at)"
                " VALUES (?, ?, ?, ?)",
                name,
                user.id,
                digest(key),
                time.time(),
            )
        await self.audit.record("auth.stream_key_rotated", actor_id=user.id, target=name)
        return name, key

    async def resolve_stream_key(self, key: str) -> tuple[User, str] | None:
        """(owner, stream name) for a stream key, or None if unknown or the owner is banned."""
        row = await self.store.fetchone(
            f"SELECT {USER_COLUMNS}, k.stream FROM stream_keys k JOIN users u ON u.id = k.user_id"
            " WHERE k.key_hash = ?",
            digest(key),
        )
        if row is None or row["banned"]:
            return None
        return User.from_row(row), row["stream"]

    async def list_streams(self, user_id: str) -> list[dict[str, Any]]:
        return await self.store.fetchall(
            "SELECT stream, created_at FROM stream_keys WHERE user_id = ? ORDER BY stream", user_id
        )


URL_TOKEN_PARAMS = ("token", "access_token")
HANDSHAKE_PATH = "/ws"  # browsers cannot set headers on a WebSocket: ?token= is its way


def refuse_token_in_url(request: web.Request) -> None:
    """Every HTTP request but the WebSocket handshake: a token in the query string is refused
    (401 ``token_in_url``) rather than ignored, on public routes too, so a client that puts
    its token where proxies, browser history and access logs keep it learns at once."""
    if request.path != HANDSHAKE_PATH and any(p in request.query for p in URL_TOKEN_PARAMS):
        raise Problem(
            401,
            "token_in_url",
            "send the token in 'Authorization: Bearer <token>', not in the URL",
            headers={"WWW-Authenticate": "Bearer"},
        )
