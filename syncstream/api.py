"""Declarative JSON routes: auth level, body/query models, responses and the OpenAPI document.

A handler is registered with the models it takes and returns::

    @api.route("POST", "/api/chat/rooms", body=RoomIn, response=RoomOut, status=201)
    async def create_room(call: Call[RoomIn]) -> RoomOut: ...

The wrapper authenticates (``auth="public" | "user" | "admin"``), parses and validates the JSON
body and query string (422 ``validation_failed`` listing each field), and serialises what the
handler returns: a pydantic model, a dict/list, ``None`` (204) or an aiohttp response as is.

Whatever a model declares, every number that reaches a handler lies within +-(2**53 - 1) (the
I-JSON range, RFC 7493, which also fits SQLite's and PostgreSQL's 64-bit integers) and every
string is valid UTF-8 without NUL characters (which PostgreSQL cannot store): one guard for all
routes instead of a bound forgotten on some field.
"""

from __future__ import annotations

import inspect
import json
import math
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from aiohttp import web
from pydantic import BaseModel, TypeAdapter, ValidationError

from . import jsoncodec
from .errors import Problem
from .store.errors import IntegrityError

if TYPE_CHECKING:
    from .auth import Session, User

AuthLevel = Literal["public", "user", "admin"]
B = TypeVar("B")
Handler = Callable[["Call[Any]"], Awaitable[Any]]

_JSON_TYPES = ("application/json", "application/merge-patch+json")
# What handlers mostly return, checked first: an isinstance check against pydantic's
# BaseModel (an ABC) is a Python-level call to ABCMeta.__instancecheck__.
_PLAIN_JSON = (dict, list)
# The largest magnitude a number in a request may have: integers beyond it lose precision in
# JSON clients (RFC 7493) and come near the 64-bit limit of the store's integer columns.
MAX_NUMBER = 2**53 - 1
# reStructuredText's inline literal (``x``), which docstrings use and Markdown (the language
# of OpenAPI's texts) shows raw.
_RST_LITERAL = re.compile(r"``(.+?)``", re.DOTALL)


def dumps(value: Any) -> str:
    """Compact JSON for responses and frames; what JSON cannot hold is written as its str()."""
    return jsoncodec.dumps(value, lenient=True)


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    """``value`` (JSON values or a pydantic model) as an ``application/json`` response,
    encoded once, straight to bytes."""
    if not isinstance(value, _PLAIN_JSON) and isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    return web.Response(
        body=jsoncodec.dumpb(value, lenient=True),
        status=status,
        content_type="application/json",
        charset="utf-8",
        headers=headers,
    )


def validation_problem(exc: ValidationError, where: str) -> Problem:
    """422 with one entry per invalid field, never echoing whole inputs back."""
    errors = [
        {"field": ".".join(str(p) for p in err["loc"]) or where, "message": err["msg"]}
        for err in exc.errors()
    ]
    first = errors[0] if errors else {"field": where, "message": "invalid"}
    detail = f"{where}: {first['field']}: {first['message']}"
    return Problem(422, "validation_failed", detail, errors=errors)


def parse_natural(raw: str, limit: int = MAX_NUMBER) -> int | None:
    """``raw`` as a whole number from 0 to ``limit``, or None if it is not one.

    For numbers in headers and URLs that no model parses: only ASCII digits count
    (``str.isdigit`` also accepts ``"²"``, which ``int`` refuses, and Arabic-Indic digits,
    which it reads).
    """
    if not raw or len(raw) > 16 or not (raw.isascii() and raw.isdigit()):
        return None
    value = int(raw)
    return value if value <= limit else None


def _bad_value(value: Any) -> str | None:
    """Why a validated value cannot be handed to a handler, or None if it can."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if abs(value) > MAX_NUMBER:
            return f"must lie between -{MAX_NUMBER} and {MAX_NUMBER}"
        return None
    if isinstance(value, str):
        if "\x00" in value:
            return "must not contain NUL characters"
        try:
            value.encode()
        except UnicodeEncodeError:
            return "must be valid UTF-8"
    return None


def _walk(value: Any, path: tuple[str, ...]) -> Iterator[tuple[tuple[str, ...], Any]]:
    """Every leaf of a validated model (and its nested models, lists and dicts) with its path."""
    if isinstance(value, BaseModel):
        for name in type(value).model_fields:
            yield from _walk(getattr(value, name), (*path, name))
    elif isinstance(value, dict):
        for key, item in value.items():
            yield (*path, str(key)), key
            yield from _walk(item, (*path, str(key)))
    elif isinstance(value, list | tuple | set | frozenset):
        for index, item in enumerate(value):
            yield from _walk(item, (*path, str(index)))
    else:
        yield path, value


def check_bounds(value: Any, where: str) -> None:
    """422 ``validation_failed`` if any number or string in ``value`` is out of bounds."""
    errors = [
        {"field": ".".join(path) or where, "message": reason}
        for path, leaf in _walk(value, ())
        if (reason := _bad_value(leaf)) is not None
    ]
    if errors:
        first = errors[0]
        detail = f"{where}: {first['field']}: {first['message']}"
        raise Problem(422, "validation_failed", detail, errors=errors)


def _document_bounds(schema: Any) -> None:
    """Write the guard's bounds into every number schema that states none of its own, so the
    document says what the server enforces."""
    if isinstance(schema, list):
        for item in schema:
            _document_bounds(item)
    elif isinstance(schema, dict):
        if schema.get("type") in ("integer", "number"):
            if "minimum" not in schema and "exclusiveMinimum" not in schema:
                schema["minimum"] = -MAX_NUMBER
            if "maximum" not in schema and "exclusiveMaximum" not in schema:
                schema["maximum"] = MAX_NUMBER
        for value in schema.values():
            _document_bounds(value)


def _markdown(document: Any) -> None:
    """Rewrite every summary and description in ``document`` from the docstrings'
    reStructuredText literals (``x``) to Markdown code spans (`x`)."""
    if isinstance(document, list):
        for item in document:
            _markdown(item)
    elif isinstance(document, dict):
        for key, value in document.items():
            if key in ("summary", "description") and isinstance(value, str):
                document[key] = _RST_LITERAL.sub(r"`\1`", value)
            else:
                _markdown(value)


def doc_summary(handler: Handler) -> str:
    """A route's summary: the first paragraph of its handler's docstring on one line (its
    first line alone would cut a wrapped sentence short)."""
    return " ".join(inspect.cleandoc(handler.__doc__ or "").split("\n\n")[0].split())


def path_parameters(path: str) -> list[tuple[str, str | None]]:
    """(name, regex or None) of each ``{name}`` / ``{name:regex}`` in an aiohttp route path.

    The regex may hold braces of its own (``{id:[0-9a-f]{32}}``), so braces are balanced.
    """
    found: list[tuple[str, str | None]] = []
    depth, start = 0, 0
    for index, char in enumerate(path):
        if char == "{":
            if depth == 0:
                start = index + 1
            depth += 1
        elif char == "}" and depth:
            depth -= 1
            if depth == 0:
                name, colon, regex = path[start:index].partition(":")
                found.append((name, regex if colon else None))
    return found


def default_tags(path: str) -> tuple[str, ...]:
    """OpenAPI tag of a route: the segment after /api/ (``/api/auth/login`` -> ``auth``)."""
    parts = path.split("/")
    return (parts[2],) if path.startswith("/api/") and len(parts) > 2 else ()


@dataclass(slots=True)
class Call(Generic[B]):
    """What a handler receives: the request, its validated body and query, and the caller."""

    request: web.Request
    body: B
    query: Any
    user_or_none: User | None

    @property
    def user(self) -> User:
        """The authenticated caller (routes with ``auth="user"`` or ``"admin"``)."""
        if self.user_or_none is None:
            raise Problem(401, "unauthorized", "this call needs a bearer token")
        return self.user_or_none

    def param(self, name: str) -> str:
        return self.request.match_info[name]

    @property
    def ip(self) -> str:
        return self.request.remote or ""


class Authenticator(Protocol):
    """Who calls: from the session cache without an await when it can, else checked."""

    def cached_session(self, request: web.Request) -> Session | None: ...

    async def user_from_request(self, request: web.Request) -> User: ...


@dataclass
class RouteSpec:
    method: str
    path: str
    summary: str
    auth: AuthLevel
    body: type[BaseModel] | None
    query: type[BaseModel] | None
    response: Any
    status: int
    tags: tuple[str, ...]
    canonical: str = ""  # the path as OpenAPI writes it: ``/api/files/{file_id}``


async def read_json(request: web.Request) -> Any:
    """The request's JSON body; 415/400 problems for wrong content type or malformed JSON."""
    ctype = request.content_type
    if ctype not in _JSON_TYPES:
        raise Problem(415, "unsupported_media_type", "send the body as application/json")
    raw = await request.read()
    try:
        return jsoncodec.loads(raw) if raw else None
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise Problem(400, "invalid_json", f"the body is not valid JSON: {exc}") from None


@dataclass
class Api:
    """Registers routes on an aiohttp router and remembers them for ``/api/openapi.json``."""

    router: web.UrlDispatcher
    auth: Authenticator
    specs: list[RouteSpec] = field(default_factory=list)

    def route(
        self,
        method: str,
        path: str,
        *,
        summary: str = "",
        auth: AuthLevel = "user",
        body: type[BaseModel] | None = None,
        query: type[BaseModel] | None = None,
        response: Any = None,
        status: int = 200,
        tags: tuple[str, ...] = (),
        documented: bool = True,
    ) -> Callable[[Handler], Handler]:
        """Register ``handler``; ``documented=False`` serves it but keeps it out of the
        OpenAPI document (an alias some client needs, beside the documented route)."""

        def register(handler: Handler) -> Handler:
            spec = RouteSpec(
                method.upper(),
                path,
                summary or doc_summary(handler) or handler.__name__,
                auth,
                body,
                query,
                response,
                status,
                tags or default_tags(path),
            )
            route = self.router.add_route(method.upper(), path, self._wrap(handler, spec))
            spec.canonical = route.resource.canonical if route.resource else path
            if documented:
                self.specs.append(spec)
            return handler

        return register

    def _wrap(
        self, handler: Handler, spec: RouteSpec
    ) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        query_model = spec.query
        body_model = spec.body
        has_parameters = bool(path_parameters(spec.path))

        async def endpoint(request: web.Request) -> web.StreamResponse:
            user = None
            if spec.auth != "public":
                session = self.auth.cached_session(request)
                user = session.user if session else await self.auth.user_from_request(request)
                if spec.auth == "admin" and user.role != "admin":
                    raise Problem(403, "admin_required", "this call needs the admin role")
            if has_parameters:
                for name, value in request.match_info.items():
                    if _bad_value(value) is not None:  # no stored id holds NUL or broken UTF-8
                        raise Problem(404, "not_found", f"no such {name}")
            query = None
            if query_model is not None:
                try:
                    query = query_model.model_validate(dict(request.query))
                except ValidationError as exc:
                    raise validation_problem(exc, "query") from None
                check_bounds(query, "query")
            body = None
            if body_model is not None:
                raw = await read_json(request)
                try:
                    body = body_model.model_validate(raw if raw is not None else {})
                except ValidationError as exc:
                    raise validation_problem(exc, "body") from None
                check_bounds(body, "body")
            try:
                result = await handler(Call(request, body, query, user))
            except IntegrityError:
                # A constraint the handler did not expect: another request changed the same
                # rows in between (deleted a parent, took a unique name). The caller can retry.
                raise Problem(
                    409, "conflict", "the request conflicts with a concurrent change; retry"
                ) from None
            if isinstance(result, web.StreamResponse):
                return result
            if result is None:
                return web.Response(status=204)
            return json_response(result, spec.status)

        endpoint.__name__ = getattr(handler, "__name__", "endpoint")
        return endpoint

    def openapi(self, title: str, version: str) -> dict[str, Any]:
        """An OpenAPI 3.1 document of every registered route."""
        paths: dict[str, dict[str, Any]] = {}
        schemas: dict[str, Any] = {}

        def ref(model: Any) -> dict[str, Any]:
            schema = TypeAdapter(model).json_schema(ref_template="#/components/schemas/{model}")
            for name, sub in schema.pop("$defs", {}).items():
                schemas[name] = sub
            name = getattr(model, "__name__", None)
            if name and isinstance(model, type) and issubclass(model, BaseModel):
                schemas[name] = schema
                return {"$ref": f"#/components/schemas/{name}"}
            return schema

        for spec in self.specs:
            op: dict[str, Any] = {"summary": spec.summary, "tags": list(spec.tags)}
            params: list[dict[str, Any]] = [
                {
                    "name": name,
                    "in": "path",
                    "required": True,
                    "schema": {"type": "string", **({"pattern": f"^{regex}$"} if regex else {})},
                }
                for name, regex in path_parameters(spec.path)
            ]
            if spec.query is not None:
                # From the model's schema, not each field's type: bounds (ge, le, max_length)
                # and descriptions live on the fields.
                query = spec.query.model_json_schema(ref_template="#/components/schemas/{model}")
                schemas.update(query.pop("$defs", {}))
                required = set(query.get("required", ()))
                for name, prop in query.get("properties", {}).items():
                    param = {"name": name, "in": "query", "required": name in required}
                    if "description" in prop:
                        param["description"] = prop.pop("description")
                    params.append({**param, "schema": prop})
            if params:
                op["parameters"] = params
            if spec.body is not None:
                op["requestBody"] = {
                    "required": True,
                    "content": {"application/json": {"schema": ref(spec.body)}},
                }
            ok: dict[str, Any] = {"description": "OK"}
            if spec.response is not None:
                ok["content"] = {"application/json": {"schema": ref(spec.response)}}
            op["responses"] = {
                str(spec.status): ok,
                "default": {
                    "description": "Problem",
                    "content": {
                        "application/problem+json": {
                            "schema": {"$ref": "#/components/schemas/Problem"}
                        }
                    },
                },
            }
            if spec.auth != "public":
                op["security"] = [{"bearer": []}]
            paths.setdefault(spec.canonical, {})[spec.method.lower()] = op
        schemas["Problem"] = {
            "type": "object",
            "required": ["type", "title", "status", "code"],
            "properties": {
                "type": {"type": "string"},
                "title": {"type": "string"},
                "status": {"type": "integer"},
                "detail": {"type": "string"},
                "code": {"type": "string"},
            },
        }
        _document_bounds(paths)
        _document_bounds(schemas)
        _markdown(paths)
        _markdown(schemas)
        return {
            "openapi": "3.1.0",
            "info": {"title": title, "version": version},
            "paths": paths,
            "components": {
                "schemas": schemas,
                "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            },
        }


@dataclass(frozen=True)
class ScopedApi:
    """A plugin's view of :class:`Api`: every path it registers lives under ``prefix``."""

    api: Api
    prefix: str

    def route(self, method: str, path: str, **options: Any) -> Callable[[Handler], Handler]:
        """Like :meth:`Api.route`, with ``path`` relative to the prefix (``""`` or ``/...``)."""
        if path and not path.startswith("/"):
            raise ValueError(f"route paths start with '/': {path!r}")
        return self.api.route(method, self.prefix + path, **options)
