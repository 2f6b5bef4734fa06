"""The API's four routes read straight off the socket, in front of Faust's web server.

Faust's web server is aiohttp. Measured on this machine at 2,000 requests/s
(one small JSON answer each, uvloop), an aiohttp server spent ~109 µs of CPU
per request, in its request and response objects, router, signals and writer;
this protocol, with the same answer, ~33 µs. That is ~15 % of a core at that
rate, on the thread that also prices and applies the requests.

Every connection to the web port starts here. A request for one of
:data:`engine.api.ROUTES` (HTTP/1.1, a Content-Length body or none) is
answered through :meth:`Api.call`, the code aiohttp's routes call too, and
answers go out in request order. Anything else (``/metrics``, ``/health``,
another method or path, a chunked body, ``Expect``, ``Upgrade``, HTTP/1.0, a
head that does not parse or is too long, a body over aiohttp's limit) hands
the connection to aiohttp for the rest of its life: once the answers already
begun are written, aiohttp's protocol takes the transport and the bytes not
yet read, and answers that request as Faust's web server always did,
errors included.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote

from faust.web.drivers.aiohttp import Web as FaustWeb

from engine.api import ROUTES, Reply

if TYPE_CHECKING:
    from engine.api import Api

log = logging.getLogger(__name__)

MAX_HEAD = 8190  # aiohttp's max_line_size and max_field_size; a longer head goes to aiohttp
MAX_BODY = 1 << 20  # aiohttp's client_max_size: aiohttp answers a bigger body with 413
MAX_PENDING = 64  # answers outstanding on one connection before it stops reading
IDLE_SECONDS = 75.0  # aiohttp's keep-alive timeout: an idle connection is closed after it
_SWEEP_SECONDS = 15.0

#: (method, first path segment, last path segment): route
_ROUTE_OF = {
    (method.encode(), *path.encode().strip(b"/").split(b"/{key}/")): route
    for route, (method, path) in ROUTES.items()
}
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9a-z]+\Z")  # a header name (RFC 9110), lower case
_CONTROL = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")  # in a target or header value
_FALLS_BACK = frozenset({"transfer-encoding", "expect", "upgrade"})  # aiohttp handles these
_REASONS = {s.value: s.phrase.encode() for s in HTTPStatus}


class Request(NamedTuple):
    route: str
    key: str  # the path's account or reservation id, decoded
    path: str  # decoded, for forwarding
    headers: dict[str, str]  # lower-case names
    length: int  # of the body
    close: bool  # the client asked to close after this answer


def parse_head(head: bytes) -> Request | None:
    """The request a head (up to the blank line) asks for, or None: aiohttp's to answer."""
    lines = head.split(b"\r\n")
    first = lines[0].split(b" ")
    if len(first) != 3 or first[2] != b"HTTP/1.1":
        return None
    method, target = first[0], first[1]
    if b"#" in target or _CONTROL.search(target):
        return None
    raw_path = target.split(b"?", 1)[0]
    parts = raw_path.split(b"/")
    if len(parts) != 4 or parts[0] or not parts[2]:
        return None
    route = _ROUTE_OF.get((method, parts[1], parts[3]))
    if route is None:
        return None
    headers: dict[str, str] = {}
    for line in lines[1:]:
        field, colon, value = line.partition(b":")
        name = field.lower()
        if not colon or not _TOKEN.match(name) or _CONTROL.search(value):
            return None  # malformed or folded: aiohttp decides
        key = name.decode("ascii")
        if key in headers:
            return None  # repeated: aiohttp decides
        headers[key] = value.strip(b" \t").decode("latin-1")
    length = headers.get("content-length", "0")
    if not (length.isascii() and length.isdigit()) or int(length) > MAX_BODY:
        return None
    if _FALLS_BACK.intersection(headers):
        return None
    try:
        raw = parts[2].decode("ascii")
        path = raw_path.decode("ascii")
        key = unquote(raw, errors="strict") if "%" in raw else raw
        if "%" in path:
            path = unquote(path, errors="strict")
    except UnicodeDecodeError:
        return None
    close = "close" in headers.get("connection", "").lower()
    return Request(route, key, path, headers, int(length), close)


def encode_reply(reply: Reply, *, close: bool, date: bytes) -> bytes:
    """An HTTP/1.1 response."""
    reason = _REASONS.get(reply.status, b"")
    head = b"HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %d\r\nDate: %s\r\n" % (
        reply.status, reason, reply.content_type.encode(), len(reply.body), date,
    )  # fmt: skip
    return head + (b"Connection: close\r\n\r\n" if close else b"\r\n") + reply.body


class _Slot:
    """One request's place in its connection's answer order."""

    __slots__ = ("close", "reply")

    def __init__(self, close: bool) -> None:
        self.close = close
        self.reply: Reply | None = None


class ApiProtocol(asyncio.Protocol):
    """One connection: the API's routes answered here, the rest handed to aiohttp."""

    def __init__(self, lane: Lane) -> None:
        self._lane = lane
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._slots: deque[_Slot] = deque()
        self._handing = False  # a request for aiohttp is waiting for the answers before it
        self._closing = False  # a request asked to close: nothing after it is read
        self._paused = False  # reading paused: too many answers pending
        self._eof = False
        self.active = time.monotonic()

    # -- asyncio.Protocol ----------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._lane.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self._transport = None
        self._lane.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.active = time.monotonic()
        if self._closing:
            return
        self._buf += data
        if not self._handing:
            self._read()

    def eof_received(self) -> bool:
        """Keep the connection open for the answers still to be written."""
        self._eof = True
        return bool(self._slots)

    def pause_writing(self) -> None:
        if self._transport is not None:
            self._transport.pause_reading()

    def resume_writing(self) -> None:
        if self._transport is not None and self._reads():
            self._transport.resume_reading()

    def _reads(self) -> bool:
        """Whether reading should go on (it pauses for its own reasons too)."""
        return not (self._paused or self._handing or self._closing)

    # -- requests and answers ------------------------------------------------------------
    def _read(self) -> None:
        buf, at, hand_over = self._buf, 0, False
        while not self._closing and len(self._slots) < MAX_PENDING:
            end = buf.find(b"\r\n\r\n", at)
            if end < 0 or end - at > MAX_HEAD:
                hand_over = len(buf) - at > MAX_HEAD
                break
            request = parse_head(bytes(buf[at:end]))
            if request is None:
                hand_over = True
                break
            stop = end + 4 + request.length
            if len(buf) < stop:
                break
            self._start(request, bytes(buf[end + 4 : stop]))
            at = stop
            self._closing = request.close  # nothing after it is read
        del buf[:at]
        if self._transport is None:
            return
        if hand_over or self._closing:
            self._handing = hand_over
            self._transport.pause_reading()
            if hand_over and not self._slots:
                self._hand_over()
        elif len(self._slots) >= MAX_PENDING:
            self._paused = True  # the rest waits in the buffer and the socket
            self._transport.pause_reading()

    def _start(self, request: Request, body: bytes) -> None:
        slot = _Slot(request.close)
        self._slots.append(slot)
        self._lane.answer(self, slot, request, body)

    def answered(self, slot: _Slot, reply: Reply) -> None:
        slot.reply = reply
        transport = self._transport
        while self._slots and self._slots[0].reply is not None:
            done = self._slots.popleft()
            if transport is None or transport.is_closing():
                continue
            assert done.reply is not None
            transport.write(encode_reply(done.reply, close=done.close, date=self._lane.date()))
            if done.close:
                transport.close()
                return
        if transport is None or transport.is_closing():
            return
        if self._paused and len(self._slots) < MAX_PENDING // 2:
            self._paused = False
            self._read()  # what waited in the buffer
            if self._reads():
                transport.resume_reading()
        if not self._slots:
            if self._handing:
                self._hand_over()
            elif self._eof:
                transport.close()
        self.active = time.monotonic()

    def _hand_over(self) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        self._lane.connections.discard(self)
        self._transport = None
        handler = self._lane.fallback()
        transport.set_protocol(handler)
        handler.connection_made(transport)
        transport.resume_reading()
        rest, self._buf = bytes(self._buf), bytearray()
        if rest:
            handler.data_received(rest)
        if self._eof:
            handler.eof_received()

    def close_if_idle(self, before: float) -> None:
        if not self._slots and self.active < before and self._transport is not None:
            self._transport.close()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Lane:
    """The listening socket and its connections; aiohttp's protocol is ``fallback``."""

    def __init__(self, api: Api, fallback: Callable[[], asyncio.Protocol]) -> None:
        self.api = api
        self.fallback = fallback
        self.connections: set[ApiProtocol] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.AbstractServer | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._date = (0, b"")

    async def start(self, host: str, port: int, ssl: Any = None) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: ApiProtocol(self), host, port, ssl=ssl, reuse_address=True, backlog=1024
        )
        self._sweeper = loop.call_later(_SWEEP_SECONDS, self._sweep)

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._server is not None:
            self._server.close()
            for connection in list(self.connections):
                connection.close()
            await self._server.wait_closed()

    def answer(self, connection: ApiProtocol, slot: _Slot, request: Request, body: bytes) -> None:
        task = asyncio.ensure_future(self._answer(connection, slot, request, body))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _answer(
        self, connection: ApiProtocol, slot: _Slot, request: Request, body: bytes
    ) -> None:
        try:
            reply = await self.api.call(
                request.route, request.key, body, request.headers, request.path
            )
        except Exception:  # a bug: the client gets a 500, as from aiohttp, and the log the trace
            log.exception("%s %s failed", request.route, request.key)
            reply = Reply(500, b'{"error":"INTERNAL","message":"internal error; see the log"}')
        connection.answered(slot, reply)

    def date(self) -> bytes:
        """The Date header's value, formatted once a second."""
        now = int(time.time())
        if self._date[0] != now:
            self._date = (now, formatdate(now, usegmt=True).encode())
        return self._date[1]

    def _sweep(self) -> None:
        before = time.monotonic() - IDLE_SECONDS
        for connection in list(self.connections):
            connection.close_if_idle(before)
        self._sweeper = asyncio.get_running_loop().call_later(_SWEEP_SECONDS, self._sweep)


class LaneWeb(FaustWeb):
    """Faust's web server (aiohttp) with the lane in front of it on the web port."""

    _lane: Lane | None = None

    async def start_server(self) -> None:
        api: Api | None = getattr(self.app, "api", None)
        if api is None or self.app.conf.web_transport.scheme != "tcp":
            await super().start_server()
            return
        await self._runner.setup()
        server = self._runner.server
        assert server is not None  # set up just above
        self._lane = Lane(api, server)
        conf = self.app.conf
        await self._lane.start(conf.web_bind, conf.web_port, conf.web_ssl_context)

    async def stop_server(self) -> None:
        if self._lane is not None:
            await self._lane.stop()
        await super().stop_server()
