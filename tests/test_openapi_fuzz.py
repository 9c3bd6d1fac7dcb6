"""Every operation of ``/api/openapi.json`` gets extreme and malformed values in each of its
parameters (path, query, JSON body fields): the server must answer each with a 4xx, never a 5xx.

Values are derived from the document alone, so a route added tomorrow is fuzzed too. Each
request changes one parameter of an otherwise plausible request, so the bad value is the one
the server has to deal with. Authenticated routes are called with a plain user's token, or an
admin's where the route needs the admin role. So that routes on one object (``/rooms/{id}/...``)
get past their 404, every ``POST`` to a collection is first sent once as a client would, and the
``id`` it answers stands in for the path parameter after that collection's path.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote

from yarl import URL

from .support import PASSWORD, Client, running

# Query and path values: numbers beyond every integer type, negative, not numbers at all,
# long, with NUL and invalid UTF-8 (%ff), and path tricks.
TEXT_VALUES = (
    "9" * 30, "-" + "9" * 30, str(2**63), str(-(2**63) - 1), "-1", "0", "1e308", "NaN",
    "-Infinity", "1.5", "true", "[]", "x" * 3000, "\x00", "a\x00b", "../../etc/passwd",
)  # fmt: skip
RAW_PATH_VALUES = ("%00", "a%00b", "%ff", "%ED%A0%80", "%2e%2e")
# JSON body field values: every JSON type, huge and tiny numbers, long and NUL strings.
JSON_VALUES: tuple[Any, ...] = (
    10**30, -(10**30), 2**63, -(2**63) - 1, 2**64, 1e308, -1e308, -1, 0, 1.5, 2**53,
    "x" * 20_000, "\x00", "a\x00b", "9" * 30, None, True, [], {}, [10**30], {"a": "\x00"},
)  # fmt: skip
# Whole bodies that are not an object, or not JSON at all.
RAW_BODIES = (b"[]", b'"x"', b"1e400", b"NaN", b'{"a": "\\ud800"}', b"\x00", b"{" * 1000)
# Candidates for a path parameter's plausible value; the first its pattern accepts is used.
PATH_CANDIDATES = ("x1", "0" * 32, "1", "e4", "a.js", "a")
PARALLEL = 8
TIMEOUT = 20.0


@dataclass
class Operation:
    method: str
    path: str
    secured: bool
    params: list[dict[str, Any]]
    body: dict[str, Any] | None  # the resolved schema of the JSON body


@dataclass
class Fuzzer:
    client: Client
    schemas: dict[str, Any]
    accounts: dict[str, str]  # username -> token
    failures: list[str] = field(default_factory=list)
    sent: int = 0
    roles: dict[str, str] = field(default_factory=dict)  # operation -> account that reaches it
    created: dict[str, str] = field(default_factory=dict)  # collection path -> an object's id

    def resolve(self, schema: dict[str, Any]) -> dict[str, Any]:
        while "$ref" in schema:
            schema = self.schemas[schema["$ref"].rsplit("/", 1)[1]]
        return schema

    def sample(self, schema: dict[str, Any], depth: int = 0) -> Any:
        """A plausible value for ``schema``: what a client that read the document would send."""
        schema = self.resolve(schema)
        if "const" in schema:
            return schema["const"]
        if "enum" in schema:
            return schema["enum"][0]
        if "default" in schema:
            return schema["default"]
        for key in ("anyOf", "oneOf", "allOf"):
            options = [s for s in schema.get(key, ()) if self.resolve(s).get("type") != "null"]
            if options:
                return self.sample(options[0], depth)
        kind = schema.get("type")
        if kind == "string":
            return "x" * max(1, int(schema.get("minLength", 1)))
        if kind in ("integer", "number"):
            return max(1, schema.get("minimum", 1), schema.get("exclusiveMinimum", 0) + 1)
        if kind == "boolean":
            return False
        if kind == "array":
            return []
        if kind == "object" or "properties" in schema:
            if depth > 3:
                return {}
            props = schema.get("properties", {})
            return {
                name: self.sample(sub, depth + 1)
                for name, sub in props.items()
                if name in schema.get("required", ())
            }
        return "x"

    def path_value(self, op: Operation, param: dict[str, Any]) -> str:
        pattern = param["schema"].get("pattern")
        collection = op.path.split("/{" + param["name"] + "}")[0]
        # What was made at that collection, or below it (a folder at /files/folders is a file).
        made = [i for path, i in self.created.items() if f"{path}/".startswith(f"{collection}/")]
        for candidate in (*made, *PATH_CANDIDATES):
            if pattern is None or re.fullmatch(pattern.strip("^$"), candidate):
                return candidate
        return "x1"

    def cases(self, op: Operation) -> Iterator[tuple[str, str, dict[str, str], Any, bytes | None]]:
        """(what, url, query, json body, raw body) of each request to send for ``op``."""
        path_params = [p for p in op.params if p["in"] == "path"]
        query_params = [p for p in op.params if p["in"] == "query"]
        base_path = {p["name"]: quote(self.path_value(op, p), safe="") for p in path_params}
        base_query = {
            p["name"]: str(self.sample(p["schema"])) for p in query_params if p.get("required")
        }
        base_body = self.sample(op.body) if op.body is not None else None

        def url(values: dict[str, str]) -> str:
            return re.sub(r"{(\w+)}", lambda m: values[m.group(1)], op.path)

        yield "plausible", url(base_path), base_query, base_body, None
        for param in path_params:
            name = param["name"]
            raw = [quote(v, safe="") for v in TEXT_VALUES] + list(RAW_PATH_VALUES)
            for value in raw:
                yield (
                    f"path {name}={value[:20]!r}",
                    url({**base_path, name: value}),
                    base_query,
                    base_body,
                    None,
                )
        for param in query_params:
            name = param["name"]
            for value in TEXT_VALUES:
                yield (
                    f"query {name}={value[:20]!r}",
                    url(base_path),
                    {**base_query, name: value},
                    base_body,
                    None,
                )
        if op.body is None:
            return
        props = self.resolve(op.body).get("properties", {})
        for name, sub in props.items():
            for value in JSON_VALUES:
                body = {**(base_body or {}), name: value}
                yield f"body {name}={str(value)[:20]!r}", url(base_path), base_query, body, None
            # One level down: the fields of an object field (``{"rules": {"decks": ...}}``).
            inner = self.resolve(sub)
            for option in (inner, *map(self.resolve, inner.get("anyOf", ()))):
                for field_name in option.get("properties", {}):
                    plausible = self.sample(option)
                    for value in JSON_VALUES:
                        body = {**(base_body or {}), name: {**plausible, field_name: value}}
                        what = f"body {name}.{field_name}={str(value)[:20]!r}"
                        yield what, url(base_path), base_query, body, None
        for raw_body in RAW_BODIES:
            yield f"raw body {raw_body[:20]!r}", url(base_path), base_query, None, raw_body

    async def send(
        self, op: Operation, role: str, what: str, url: str, query: dict[str, str],
        body: Any, raw: bytes | None,
    ) -> tuple[int, Any]:  # fmt: skip
        headers = {"Authorization": f"Bearer {self.accounts[role]}"} if op.secured else {}
        kwargs: dict[str, Any] = {"headers": headers, "params": query}
        if raw is not None:
            kwargs["data"] = raw
            headers["Content-Type"] = "application/json"
        elif body is not None:
            kwargs["json"] = body
        full = self.client.url(url)
        for _attempt in range(2):
            self.sent += 1
            try:
                async with asyncio.timeout(TIMEOUT):
                    async with self.client.session.request(
                        op.method, yarl_url(full), **kwargs
                    ) as resp:
                        status = resp.status
                        # Only what is looked at is read: a 2xx may be an endless stream.
                        text = (
                            await resp.text(errors="replace")
                            if status in (401, 403)
                            or status >= 500
                            or (op.method == "POST" and what == "plausible")
                            else ""
                        )
            except TimeoutError:
                self.failures.append(f"{op.method} {op.path} {what}: no answer in {TIMEOUT} s")
                return 0, None
            if status == 403 and op.secured and role == "fuzzuser" and '"admin_required"' in text:
                role = self.roles[f"{op.method} {op.path}"] = "fuzzadmin"
                headers["Authorization"] = f"Bearer {self.accounts[role]}"
                continue
            if status == 401 and op.secured and '"invalid_token"' in text:
                # A fuzzed request ended this session (logout, password change ...): log in again.
                self.accounts[role] = await self.client.login(role)
                headers["Authorization"] = f"Bearer {self.accounts[role]}"
                continue
            break
        if status >= 500:
            self.failures.append(f"{op.method} {op.path} {what}: {status} {text[:300]}")
        return status, text

    async def create(self, op: Operation) -> None:
        """Send the plausible request of a ``POST`` to a collection; remember the id it makes."""
        _, text = await self.send(op, "fuzzuser", *next(self.cases(op)))
        try:
            made = json.loads(text or "null")
        except json.JSONDecodeError:
            return
        if isinstance(made, dict) and isinstance(made.get("id"), str):
            self.created[op.path] = made["id"]

    async def fuzz(self, op: Operation) -> None:
        for case in self.cases(op):
            role = self.roles.get(f"{op.method} {op.path}", "fuzzuser")
            await self.send(op, role, *case)


def yarl_url(url: str) -> URL:
    """The URL exactly as written: percent-escapes (``%00``, ``%ff``) reach the server as is."""
    return URL(url, encoded=True)


def operations(spec: dict[str, Any]) -> list[Operation]:
    found = []
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            content = op.get("requestBody", {}).get("content", {}).get("application/json")
            found.append(
                Operation(
                    method.upper(),
                    path,
                    bool(op.get("security")),
                    op.get("parameters", []),
                    content["schema"] if content else None,
                )
            )
    return found


async def test_every_operation_survives_extreme_and_malformed_values(
    tmp_path: Path, backend: str
) -> None:
    overrides = {"auth.login_per_ip_per_minute": 1_000_000}
    async with running(tmp_path, backend, **overrides) as c:
        user = await c.register("fuzzuser")
        admin = await c.admin("fuzzadmin")
        _, spec, _ = await c.call("GET", "/api/openapi.json")
        fuzzer = Fuzzer(c, spec["components"]["schemas"], {"fuzzuser": user, "fuzzadmin": admin})
        ops = operations(spec)
        assert len(ops) > 100, "the document lists every plugin's routes"
        for op in ops:
            if op.method == "POST" and "{" not in op.path:
                await fuzzer.create(op)
        assert len(fuzzer.created) >= 5, fuzzer.created
        gate = asyncio.Semaphore(PARALLEL)

        async def one(op: Operation) -> None:
            async with gate:
                await fuzzer.fuzz(op)

        # Deletions last, so they do not pull objects away from the routes still being fuzzed.
        await asyncio.gather(*(one(op) for op in ops if op.method != "DELETE"))
        await asyncio.gather(*(one(op) for op in ops if op.method == "DELETE"))
        assert not fuzzer.failures, "\n".join(fuzzer.failures[:60])
        assert fuzzer.sent > 1000, fuzzer.sent
        # The accounts still work: no fuzzed request took the server down or the store apart.
        assert (await c.call("GET", "/api/auth/me", fuzzer.accounts["fuzzuser"]))[0] == 200
        assert (await c.call("POST", "/api/auth/login", json={
            "username": "fuzzadmin", "password": PASSWORD}))[0] == 200  # fmt: skip
