"""A lean asyncio HTTP/1.1 keep-alive client for :mod:`loadtest.http_driver`.

With aiohttp's client the driver spent ~205 µs of CPU per request, mostly in
the client (URL objects, payload and response objects, the connector), on the
cores it shares with the server whose latency it measures. This one costs
~25-60 µs (uvloop, loopback; the high end when answers arrive one per loop
wake-up, as at a paced 2,000/s) because it does only what the driver needs: a
request is one join of pre-encoded parts, a response is parsed straight from
the protocol's buffer, one request at a time per keep-alive connection (no
pipelining), no redirects, cookies or compression.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from types import TracebackType
from typing import cast
from urllib.parse import urlsplit

from loadtest.exceptions import HttpClientError

_UNTIL_CLOSE = -1  # a body with neither Content-Length nor chunking ends when the server closes
_NO_BODY = (204, 304)


class _Connection(asyncio.Protocol):
    """One connection; :meth:`send` writes a request and returns a future of its answer."""

    def __init__(self, where: str, loop: asyncio.AbstractEventLoop) -> None:
        self.where = where  # host:port, for messages
        self.reusable = True  # until closed, failed, or answered with ``Connection: close``
        self._loop = loop
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._buf = bytearray()
        self._expect(head_only=False)

    def _expect(self, *, head_only: bool) -> None:
        """Ready to parse the next answer (an answer to HEAD has headers only)."""
        self._head_only = head_only
        self._status = 0  # 0 until the status line and headers are in
        self._length = 0  # body bytes, or _UNTIL_CLOSE
        self._chunked = False
        self._chunk = -1  # chunked: -1 at a size line, 0 in the trailers, n: n bytes to come
        self._body = bytearray()

    def send(self, request: bytes, head_only: bool) -> asyncio.Future[tuple[int, bytes]]:
        assert self._transport is not None, "send before connection_made"
        self._expect(head_only=head_only)
        self._waiter = self._loop.create_future()
        self._transport.write(request)
        return self._waiter

    def close(self) -> None:
        self.reusable = False
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self._buf += data
        waiter = self._waiter
        if waiter is None or waiter.done():  # bytes nobody asked for: out of step, drop it
            self.close()
            return
        try:
            answer = self._parse()
        except HttpClientError as exc:
            self._waiter = None
            self.close()
            waiter.set_exception(exc)
            return
        if answer is not None:
            self._waiter = None
            if self._buf:  # bytes past the answer: the next request would read them as its own
                self.close()
            waiter.set_result(answer)

    def connection_lost(self, exc: Exception | None) -> None:
        self.reusable = False
        waiter, self._waiter = self._waiter, None
        if waiter is None or waiter.done():
            return
        if self._status and self._length == _UNTIL_CLOSE:
            waiter.set_result((self._status, bytes(self._buf)))  # the close ends this body
            return
        error = HttpClientError(f"{self.where} closed the connection mid-response")
        error.__cause__ = exc
        waiter.set_exception(error)

    # -- parsing -------------------------------------------------------------------------------
    def _parse(self) -> tuple[int, bytes] | None:
        """The answer once it is whole (consumed from the buffer), else None."""
        buf = self._buf
        while not self._status:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                return None
            self._read_head(bytes(buf[:end]))
            del buf[: end + 4]
            if self._status < 200:  # an interim answer (100 Continue): the real one follows
                self._status = 0
        if self._chunked:
            return self._read_chunks()
        if self._length == _UNTIL_CLOSE or len(buf) < self._length:
            return None
        body = bytes(buf[: self._length])
        del buf[: self._length]
        return self._status, body

    def _read_head(self, head: bytes) -> None:
        status_line, *lines = head.split(b"\r\n")
        version, _, rest = status_line.partition(b" ")
        code = rest[:3]
        if not (version.startswith(b"HTTP/1.") and code.isdigit() and rest[3:4] in (b"", b" ")):
            msg = f"malformed status line {status_line!r} from {self.where}"
            raise HttpClientError(msg)
        length, close = None, version == b"HTTP/1.0"  # 1.0 keep-alive is not worth supporting
        for line in lines:
            name, colon, value = line.partition(b":")
            if not colon or not name or name.strip() != name:  # RFC 9112: no space before ':'
                msg = f"malformed header {line!r} from {self.where}"
                raise HttpClientError(msg)
            name, value = name.lower(), value.strip()
            if name == b"content-length":
                if not value.isdigit():
                    msg = f"malformed header {line!r} from {self.where}"
                    raise HttpClientError(msg)
                length = int(value)
            elif name == b"transfer-encoding":
                self._chunked = value.lower().endswith(b"chunked")
            elif name == b"connection":
                close = close or b"close" in value.lower()
        self._status = int(code)
        if self._head_only or self._status in _NO_BODY or self._status < 200:
            self._chunked, length = False, 0
        if not self._chunked:
            self._length = _UNTIL_CLOSE if length is None else length
        if close or self._length == _UNTIL_CLOSE:
            self.reusable = False

    def _read_chunks(self) -> tuple[int, bytes] | None:
        buf = self._buf
        while True:
            if self._chunk < 0:  # a size line: hex digits, maybe ";extensions"
                end = buf.find(b"\r\n")
                if end < 0:
                    return None
                line = bytes(buf[:end])
                del buf[: end + 2]
                try:
                    self._chunk = int(line.partition(b";")[0], 16)
                except ValueError:
                    self._chunk = -1
                if self._chunk < 0:
                    msg = f"malformed chunk size {line!r} from {self.where}"
                    raise HttpClientError(msg)
            elif self._chunk == 0:  # trailers (ignored) up to an empty line end the body
                end = buf.find(b"\r\n")
                if end < 0:
                    return None
                del buf[: end + 2]
                if end == 0:
                    return self._status, bytes(self._body)
            else:
                if len(buf) < self._chunk + 2:
                    return None
                if buf[self._chunk : self._chunk + 2] != b"\r\n":
                    msg = f"chunk not ended by CRLF from {self.where}"
                    raise HttpClientError(msg)
                self._body += buf[: self._chunk]
                del buf[: self._chunk + 2]
                self._chunk = -1


class HttpClient:
    """Keep-alive HTTP/1.1 connections to one server, at most ``connections`` at once.

    An idle connection is reused last-in first-out (the one most recently used,
    so the others can be timed out by the server rather than all kept half
    warm); requests wait for a connection first-come first-served. A connection
    that failed or timed out is closed, never reused: its answer may still come.
    Requests are not retried (an authorize sent twice would reserve twice).
    """

    def __init__(
        self,
        base: str,
        *,
        connections: int,
        timeout: float,
        headers: dict[str, str] | None = None,
    ) -> None:
        parts = urlsplit(base)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            msg = f"cannot use {base!r} as the API address: expected http://host:port"
            raise HttpClientError(msg)
        self.base = base.rstrip("/")
        self.connections, self.timeout = connections, timeout
        self._host = parts.hostname
        self._port = parts.port or (443 if parts.scheme == "https" else 80)
        self._ssl = ssl.create_default_context() if parts.scheme == "https" else None
        self._where = f"{self._host}:{self._port}"
        self._prefix = parts.path.rstrip("/").encode()
        fixed = {"Host": parts.netloc.rpartition("@")[2], **(headers or {})}
        self._fixed = "".join(f"{k}: {v}\r\n" for k, v in fixed.items()).encode("latin-1")
        self._idle: list[_Connection] = []
        self._waiters: deque[asyncio.Future[_Connection | None]] = deque()
        self._slots = 0  # connections open or opening, at most ``connections``
        self._open: set[_Connection] = set()

    async def request(self, method: str, path: str, body: bytes | None = None) -> tuple[int, bytes]:
        """``method path`` (relative to the base), ``body`` as JSON: the status and body.

        Raises TimeoutError after ``timeout`` seconds in all (waiting for a
        connection included), OSError when the server cannot be reached and
        HttpClientError when its answer cannot be read.
        """
        if body is None:  # a POST without a body still says so, or the server waits for one
            extra = b"" if method in ("GET", "HEAD") else b"Content-Length: 0\r\n"
            body = b""
        else:
            extra = b"Content-Type: application/json\r\nContent-Length: %d\r\n" % len(body)
        line = b"%s %s%s HTTP/1.1\r\n" % (method.encode(), self._prefix, path.encode())
        request = b"".join((line, self._fixed, extra, b"\r\n", body))
        async with asyncio.timeout(self.timeout):
            conn = await self._acquire()
            try:
                return await conn.send(request, method == "HEAD")
            except BaseException:
                conn.reusable = False  # timed out or cancelled: its answer may still come
                raise
            finally:
                self._release(conn)

    async def close(self) -> None:
        """Close every connection (requests in flight fail with HttpClientError)."""
        self._slots -= len(self._idle)
        self._idle.clear()
        for conn in self._open:
            conn.close()
        self._open.clear()
        await asyncio.sleep(0)  # let the transports call connection_lost

    async def __aenter__(self) -> HttpClient:
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    # -- the pool ------------------------------------------------------------------------------
    async def _acquire(self) -> _Connection:
        while self._idle:
            conn = self._idle.pop()
            if conn.reusable:
                return conn
            self._drop(conn)  # the server closed it while idle; its slot is free again
            self._slots -= 1
        if self._slots < self.connections:
            self._slots += 1
        else:
            waiter: asyncio.Future[_Connection | None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                handed = await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled():
                    self._give(waiter.result())  # handed over as we were cancelled: pass it on
                raise
            if handed is not None and handed.reusable:
                return handed
            if handed is not None:
                self._drop(handed)  # closed since it was handed over: open one in its slot
        try:
            return await self._connect()
        except BaseException:
            self._give(None)
            raise

    async def _connect(self) -> _Connection:
        loop = asyncio.get_running_loop()
        conn = _Connection(self._where, loop)
        await loop.create_connection(lambda: conn, self._host, self._port, ssl=self._ssl)
        self._open.add(conn)
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.reusable:
            self._give(conn)
        else:
            self._drop(conn)
            self._give(None)

    def _give(self, conn: _Connection | None) -> None:
        """Hand ``conn`` (None: the right to open one) to the first waiter, else keep it."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():  # a cancelled waiter stays queued until here
                waiter.set_result(conn)
                return
        if conn is None:
            self._slots -= 1
        else:
            self._idle.append(conn)

    def _drop(self, conn: _Connection) -> None:
        conn.close()
        self._open.discard(conn)
