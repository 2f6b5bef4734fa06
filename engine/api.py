"""The worker's HTTP API: balances, authorize / commit / release, metrics.

Every account lives on one partition, and one worker owns it; a request that
reaches another worker is forwarded there (body and headers as they came),
so a client may call any worker. A reservation id names its account
(``<account>~…``), which routes commit and release the same way. Answers are
the JSON the CLI prints (``ratewire accounts show``, ``ratewire authorize``
…); errors are ``{"error": CODE, "message": …}`` with a 4xx status.

With ``--api-token`` set, every route but ``/metrics`` and ``/health`` wants
``Authorization: Bearer <token>``.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any, NamedTuple

import aiohttp
import msgspec
from aiohttp import web
from faust.exceptions import SameNode

from balances.exceptions import (
    BalanceError,
    OperationConflictError,
    ReservationFinishedError,
    UnknownAccountError,
    UnknownReservationError,
)
from balances.reservations import AuthorizeRequest, CommitRequest
from engine.cli_accounts import show
from engine.cost import parse_start, parse_usage
from engine.exceptions import RatewireError, UsageInputError
from engine.metrics import CONTENT_TYPE
from engine.partition import Partition
from engine.partitioning import partition_of
from engine.sessions import Release, Sessions
from engine.topics import CDRS

if TYPE_CHECKING:
    from engine.worker import Runtime

FORWARDED = "X-Ratewire-Forwarded"  # a forwarded request is never forwarded again
FORWARDED_HEADER = FORWARDED.lower()


class AuthorizeBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    category: str
    usage: str | int  # "5m", "300s" or a count
    destination: str = ""
    start: str | None = None  # ISO 8601; default now
    tenant: str = ""
    subject: str = ""
    session: str = ""


class CommitBody(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    usage: str | int
    op_id: str = ""


class ApiError(RatewireError):
    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code = status, code


def check_token(given: str, token: str) -> None:
    """:class:`ApiError` 401 unless ``token`` is empty or ``given`` (the Authorization
    header) carries it."""
    if not token:
        return
    if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
        raise ApiError(401, "UNAUTHORIZED", "missing or wrong Authorization: Bearer token")


_STATUS = (  # most specific first
    (UnknownAccountError, 404), (UnknownReservationError, 404),
    (ReservationFinishedError, 409), (OperationConflictError, 409),
    (BalanceError, 400), (UsageInputError, 400),
)  # fmt: skip


def _usage(value: str | int) -> int:
    return value if isinstance(value, int) and value > 0 else parse_usage(str(value))[0]


def _decode(body: bytes, kind: type[Any]) -> Any:
    try:
        return msgspec.json.decode(body or b"{}", type=kind)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ApiError(400, "INVALID_REQUEST", f"request body: {exc}") from None


class Reply(NamedTuple):
    """An answer, whichever server writes it."""

    status: int
    body: bytes
    content_type: str = "application/json"


#: route: (method, path); the path's one variable is the route's key
ROUTES = {
    "balances": ("GET", "/accounts/{key}/balances"),
    "authorize": ("POST", "/accounts/{key}/authorize"),
    "commit": ("POST", "/reservations/{key}/commit"),
    "release": ("POST", "/reservations/{key}/release"),
}
_WRITES = frozenset({"authorize", "commit", "release"})


class Api:
    """Handlers bound to one worker's runtime.

    :meth:`call` answers a route whichever server read the request: aiohttp's
    (Faust's web server, through :meth:`add_routes`) or the lane in front of
    it (:mod:`engine.api_lane`).
    """

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._sessions = Sessions(runtime.partitions)
        self._client: aiohttp.ClientSession | None = None
        self._locals: dict[str, Callable[[Partition, str, bytes], Any]] = {
            "balances": self._balances, "authorize": self._authorize,
            "commit": self._commit, "release": self._release,
        }  # fmt: skip

    def add_routes(self, router: web.UrlDispatcher) -> None:
        for route, (method, path) in ROUTES.items():
            router.add_route(method, path, self._web(route))
        router.add_get("/metrics", self.metrics)
        router.add_get("/health", self.health)

    async def call(
        self, route: str, key: str, body: bytes, headers: Mapping[str, str], path: str
    ) -> Reply:
        """Answer ``route`` for ``key`` (an account or a reservation id, decoded).

        ``headers`` are looked up by lower-case name; ``path`` is the request's
        path, for a request forwarded to the account's owner.
        """
        started = time.perf_counter()
        try:
            check_token(headers.get("authorization", ""), self.rt.config.api_token)
            reply = await self._route(route, key, body, headers, path)
        except ApiError as exc:
            reply = _error(exc.status, exc.code, str(exc))
        except RatewireError as exc:
            status = next((s for kind, s in _STATUS if isinstance(exc, kind)), 500)
            reply = _error(status, exc.code, str(exc))
        m = self.rt.metrics
        m.http_requests_total.inc(route=route, status=reply.status)
        m.http_request_seconds.observe(time.perf_counter() - started, route=route)
        return reply

    # -- what each route does on the account's own partition ----------------------------
    def _balances(self, part: Partition, account: str, body: bytes) -> Any:
        self._known(part, account)
        return show(part.ledger, account)

    def _authorize(self, part: Partition, account: str, body: bytes) -> AuthorizeRequest:
        asked: AuthorizeBody = _decode(body, AuthorizeBody)
        self._known(part, account)
        start = parse_start(asked.start) if asked.start else datetime.now(UTC)
        return AuthorizeRequest(
            account=account, category=asked.category, destination=asked.destination,
            requested=_usage(asked.usage), start=start, tenant=asked.tenant,
            subject=asked.subject, session=asked.session,
        )  # fmt: skip

    @staticmethod
    def _commit(part: Partition, rid: str, body: bytes) -> CommitRequest:
        asked: CommitBody = _decode(body, CommitBody)
        return CommitRequest(rid, _usage(asked.usage), asked.op_id)

    @staticmethod
    def _release(part: Partition, rid: str, body: bytes) -> Release:
        return Release(rid)

    # -- other routes (Faust's web server only) ------------------------------------------
    async def metrics(self, request: web.Request) -> web.Response:
        full = self.rt.metrics.stream_buffer_full_total  # Faust's monitor counts these
        full.inc(sum(self.rt.app.monitor.topic_buffer_full.values()) - full.value())
        text = self.rt.metrics.render()
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def health(self, request: web.Request) -> web.Response:
        body = {"assigned": self.rt.assigned, "open": self.rt.partitions.owned(),
                "counts": dict(self.rt.counts)}  # fmt: skip
        return _response(_json(200, body))

    # -- plumbing ------------------------------------------------------------------------
    def _web(self, route: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def handle(request: web.Request) -> web.Response:
            body = await request.read()
            reply = await self.call(route, request.match_info["key"], body, request.headers,
                                    request.path)  # fmt: skip
            return _response(reply)

        return handle

    async def _route(
        self, route: str, key: str, body: bytes, headers: Mapping[str, str], path: str
    ) -> Reply:
        account = key if route in ("balances", "authorize") else _account_of(key)
        if not account:
            raise ApiError(400, "INVALID_REQUEST", "no account in the path")
        number = _partition_of(account, self.rt.config.partitions)
        if number in self.rt.assigned or headers.get(FORWARDED_HEADER):
            return await self._local(number, route, key, body)
        try:
            url = self.rt.app.router.external_topic_key_store(self._topic, account.encode())
        except KeyError:
            msg = f"partition {number} has no owner yet (the group is rebalancing): try again"
            raise ApiError(503, "REBALANCING", msg) from None
        except SameNode:
            return await self._local(number, route, key, body)
        if (url.host, url.port) == (self.rt.config.web_host, self.rt.config.web_port):
            return await self._local(number, route, key, body)
        return await self._forward(ROUTES[route][0], url.with_path(path), body, headers)

    @property
    def _topic(self) -> Any:
        return self.rt.app.topic(CDRS, key_serializer="raw", value_serializer="raw")

    async def _local(self, number: int, route: str, key: str, body: bytes) -> Reply:
        """Read: the route's answer. Write: the route builds a request, applied in a group.

        Only for a partition assigned here: a request forwarded by a worker whose view
        of the group is stale must not open (and write) another worker's partition.
        """
        if number not in self.rt.assigned:
            msg = f"partition {number} is not assigned to this worker (rebalancing?): try again"
            raise ApiError(503, "REBALANCING", msg)
        part = await self.rt.partitions.get(number)
        answer = self._locals[route](part, key, body)
        if route in _WRITES:
            answer = await self._sessions.submit(number, answer)
        return _json(200, answer)

    async def _forward(
        self, method: str, url: Any, body: bytes, headers: Mapping[str, str]
    ) -> Reply:
        if self._client is None:
            self._client = aiohttp.ClientSession()
        sent = {k: v for k, v in headers.items() if k.lower() != "host"}
        sent[FORWARDED] = "1"
        async with self._client.request(method, url, data=body, headers=sent) as answer:
            return Reply(answer.status, await answer.read(), answer.content_type)

    @staticmethod
    def _known(part: Partition, account: str) -> None:
        if not part.knows(account):
            msg = f"account {account!r} is unknown to this cluster"
            raise ApiError(404, "ACCOUNT_UNKNOWN", msg)

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


@lru_cache(maxsize=1 << 16)
def _partition_of(account: str, partitions: int) -> int:
    """The account's partition, remembered: a session's requests name the same account
    again and again, and hashing one key through numpy costs ~8 µs."""
    return partition_of(account.encode(), partitions)


def _account_of(reservation_id: str) -> str:
    account, sep, _ = reservation_id.partition("~")
    if not sep:
        msg = f"reservation {reservation_id!r} is unknown: ids look like <account>~<id>"
        raise ApiError(404, "RESERVATION_UNKNOWN", msg)
    return account


def _json(status: int, body: Any) -> Reply:
    return Reply(status, msgspec.json.encode(body))


def _error(status: int, code: str, message: str) -> Reply:
    return _json(status, {"error": code, "message": message})


def _response(reply: Reply) -> web.Response:
    return web.Response(body=reply.body, status=reply.status, content_type=reply.content_type)
