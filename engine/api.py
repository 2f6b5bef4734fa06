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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from functools import lru_cache
from typing import TYPE_CHECKING, Any

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
Handler = Callable[[Partition], Awaitable[Any]]


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


def check_token(request: web.Request, token: str) -> None:
    """:class:`ApiError` 401 unless ``token`` is empty or the request carries it."""
    if not token:
        return
    given = request.headers.get("Authorization", "")
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


class Api:
    """Handlers bound to one worker's runtime."""

    def __init__(self, runtime: Runtime) -> None:
        self.rt = runtime
        self._sessions = Sessions(runtime.partitions)
        self._client: aiohttp.ClientSession | None = None

    def add_routes(self, router: web.UrlDispatcher) -> None:
        router.add_get("/accounts/{account}/balances", self.balances)
        router.add_post("/accounts/{account}/authorize", self.authorize)
        router.add_post("/reservations/{reservation}/commit", self.commit)
        router.add_post("/reservations/{reservation}/release", self.release)
        router.add_get("/metrics", self.metrics)
        router.add_get("/health", self.health)

    # -- routes --------------------------------------------------------------------------
    async def balances(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]

        async def local(part: Partition) -> Any:
            self._known(part, account)
            return show(part.ledger, account)

        return await self._serve(request, "balances", lambda: account, local, write=False)

    async def authorize(self, request: web.Request) -> web.Response:
        account = request.match_info["account"]
        raw = await request.read()

        async def local(part: Partition) -> Any:
            body: AuthorizeBody = _decode(raw, AuthorizeBody)
            self._known(part, account)
            start = parse_start(body.start) if body.start else datetime.now(UTC)
            usage = _usage(body.usage)
            return AuthorizeRequest(
                account=account, category=body.category, destination=body.destination,
                requested=usage, start=start, tenant=body.tenant, subject=body.subject,
                session=body.session,
            )  # fmt: skip

        return await self._serve(request, "authorize", lambda: account, local, write=True)

    async def commit(self, request: web.Request) -> web.Response:
        rid = request.match_info["reservation"]
        raw = await request.read()

        async def local(part: Partition) -> Any:
            body: CommitBody = _decode(raw, CommitBody)
            return CommitRequest(rid, _usage(body.usage), body.op_id)

        return await self._serve(request, "commit", lambda: _account_of(rid), local, write=True)

    async def release(self, request: web.Request) -> web.Response:
        rid = request.match_info["reservation"]

        async def local(part: Partition) -> Any:
            return Release(rid)

        return await self._serve(request, "release", lambda: _account_of(rid), local, write=True)

    async def metrics(self, request: web.Request) -> web.Response:
        full = self.rt.metrics.stream_buffer_full_total  # Faust's monitor counts these
        full.inc(sum(self.rt.app.monitor.topic_buffer_full.values()) - full.value())
        text = self.rt.metrics.render()
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    async def health(self, request: web.Request) -> web.Response:
        body = {"assigned": self.rt.assigned, "open": self.rt.partitions.owned(),
                "counts": dict(self.rt.counts)}  # fmt: skip
        return _json(200, body)

    # -- plumbing ------------------------------------------------------------------------
    async def _serve(
        self, request: web.Request, route: str, account: Callable[[], str], local: Handler,
        *, write: bool,
    ) -> web.Response:  # fmt: skip
        started = time.perf_counter()
        try:
            self._authorized(request)
            response = await self._route(request, account(), local, write=write)
        except ApiError as exc:
            response = _error(exc.status, exc.code, str(exc))
        except RatewireError as exc:
            status = next((s for kind, s in _STATUS if isinstance(exc, kind)), 500)
            response = _error(status, exc.code, str(exc))
        m = self.rt.metrics
        m.http_requests_total.inc(route=route, status=response.status)
        m.http_request_seconds.observe(time.perf_counter() - started)
        return response

    def _authorized(self, request: web.Request) -> None:
        check_token(request, self.rt.config.api_token)

    async def _route(
        self, request: web.Request, account: str, local: Handler, *, write: bool
    ) -> web.Response:
        if not account:
            raise ApiError(400, "INVALID_REQUEST", "no account in the path")
        number = _partition_of(account, self.rt.config.partitions)
        if number in self.rt.assigned or request.headers.get(FORWARDED):
            return await self._local(number, local, write=write)
        try:
            url = self.rt.app.router.external_topic_key_store(self._topic, account.encode())
        except KeyError:
            msg = f"partition {number} has no owner yet (the group is rebalancing): try again"
            raise ApiError(503, "REBALANCING", msg) from None
        except SameNode:
            return await self._local(number, local, write=write)
        if (url.host, url.port) == (self.rt.config.web_host, self.rt.config.web_port):
            return await self._local(number, local, write=write)
        return await self._forward(request, url.with_path(request.path), request.read)

    @property
    def _topic(self) -> Any:
        return self.rt.app.topic(CDRS, key_serializer="raw", value_serializer="raw")

    async def _local(self, number: int, local: Handler, *, write: bool) -> web.Response:
        """Read: ``local``'s answer. Write: ``local`` builds a request, applied in a group.

        Only for a partition assigned here: a request forwarded by a worker whose view
        of the group is stale must not open (and write) another worker's partition.
        """
        if number not in self.rt.assigned:
            msg = f"partition {number} is not assigned to this worker (rebalancing?): try again"
            raise ApiError(503, "REBALANCING", msg)
        part = await self.rt.partitions.get(number)
        answer = await local(part)
        if write:
            answer = await self._sessions.submit(number, answer)
        return _json(200, answer)

    async def _forward(
        self, request: web.Request, url: Any, read: Callable[[], Awaitable[bytes]]
    ) -> web.Response:
        if self._client is None:
            self._client = aiohttp.ClientSession()
        headers = {k: v for k, v in request.headers.items() if k.lower() != "host"}
        headers[FORWARDED] = "1"
        async with self._client.request(
            request.method, url, data=await read(), headers=headers
        ) as answer:
            body = await answer.read()
            return web.Response(body=body, status=answer.status,
                                content_type=answer.content_type)  # fmt: skip

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


def _json(status: int, body: Any) -> web.Response:
    return web.Response(body=msgspec.json.encode(body), status=status,
                        content_type="application/json")  # fmt: skip


def _error(status: int, code: str, message: str) -> web.Response:
    return _json(status, {"error": code, "message": message})
