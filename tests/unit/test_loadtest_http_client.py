"""The load driver's HTTP client against real local servers: an aiohttp app for the
ordinary answers, raw asyncio servers for the awkward ones (chunks, byte-at-a-time
writes, early closes, malformed answers, silence)."""

from __future__ import annotations

import asyncio
import re
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import msgspec
import pytest
import uvloop
from aiohttp import web

from loadtest.exceptions import HttpClientError
from loadtest.http_client import HttpClient

Handler = Callable[[int, asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@asynccontextmanager
async def app_server(app: web.Application) -> AsyncIterator[str]:
    """``app`` served on 127.0.0.1 at a free port: its base URL."""
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()


@asynccontextmanager
async def raw_server(handle: Handler) -> AsyncIterator[tuple[str, list[bool]]]:
    """A raw server calling ``handle(n, reader, writer)`` for its n-th connection (from 1):
    its base URL and, per connection, whether it has ended."""
    ended: list[bool] = []

    async def connected(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        ended.append(False)
        n = len(ended)
        try:
            await handle(n, reader, writer)
        finally:
            writer.close()
            ended[n - 1] = True

    server = await asyncio.start_server(connected, "127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}", ended
    finally:
        server.close()
        await server.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> bytes:
    """One request, head and body (b"" once the client has closed)."""
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except asyncio.IncompleteReadError:
        return b""
    length = 0
    for line in head.split(b"\r\n"):
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            length = int(value)
    return head + await reader.readexactly(length)


def answering(*answers: bytes) -> Handler:
    """A handler writing ``answers[k]`` to the k-th request on each connection, then
    reading until the client closes."""

    async def handle(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        for answer in answers:
            if not await read_request(reader):
                return
            writer.write(answer)
        await reader.read()

    return handle


def first_then(first: bytes, then: bytes) -> Handler:
    """A handler answering ``first`` on the first connection, ``then`` on later ones."""

    async def handle(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await answering(first if n == 1 else then)(n, reader, writer)

    return handle


OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
CHUNKED = (
    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;name=value\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: yes\r\n\r\n"
)


# -- ordinary answers -----------------------------------------------------------------------
def echo_app(seen: list[str], peers: set[object]) -> web.Application:
    """``/api/echo/{n}`` answers what it was sent; ``seen`` gets each n, ``peers`` each
    client connection."""

    async def echo(request: web.Request) -> web.Response:
        seen.append(request.match_info["n"])
        peers.add(request.transport.get_extra_info("peername") if request.transport else None)
        body = await request.read()
        answer = {
            "method": request.method,
            "n": request.match_info["n"],
            "type": request.headers.get("Content-Type", ""),
            "auth": request.headers.get("Authorization", ""),
            "body": msgspec.json.decode(body) if body else None,
        }
        await asyncio.sleep(float(request.query.get("sleep", "0")))
        return web.Response(status=201 if body else 200, body=msgspec.json.encode(answer))

    app = web.Application()
    app.router.add_route("*", "/api/echo/{n}", echo)
    return app


def test_get_and_post_answer_the_exact_status_and_body() -> None:
    async def main() -> list[tuple[int, bytes]]:
        async with (
            app_server(echo_app([], set())) as base,
            HttpClient(
                f"{base}/api/", connections=4, timeout=5, headers={"Authorization": "Bearer t"}
            ) as client,
        ):
            return [
                await client.request("GET", "/echo/1"),
                await client.request("POST", "/echo/2", msgspec.json.encode({"usage": 60})),
                await client.request("POST", "/echo/3"),
                await client.request("GET", "/nowhere"),
            ]

    answers = asyncio.run(main())
    assert answers == [
        (200, b'{"method":"GET","n":"1","type":"","auth":"Bearer t","body":null}'),
        (
            201,
            b'{"method":"POST","n":"2","type":"application/json","auth":"Bearer t",'
            b'"body":{"usage":60}}',
        ),
        (200, b'{"method":"POST","n":"3","type":"","auth":"Bearer t","body":null}'),
        (404, b"404: Not Found"),
    ]


def test_sequential_requests_reuse_one_connection() -> None:
    seen: list[str] = []
    peers: set[object] = set()

    async def main() -> list[int]:
        async with (
            app_server(echo_app(seen, peers)) as base,
            HttpClient(base, connections=8, timeout=5) as client,
        ):
            return [(await client.request("GET", f"/api/echo/{i}"))[0] for i in range(100)]

    assert asyncio.run(main()) == [200] * 100
    assert seen == [str(i) for i in range(100)]
    assert len(peers) == 1


def test_concurrent_requests_never_open_more_than_the_connections_allowed() -> None:
    seen: list[str] = []
    peers: set[object] = set()

    async def main() -> list[tuple[int, bytes]]:
        async with (
            app_server(echo_app(seen, peers)) as base,
            HttpClient(base, connections=2, timeout=5) as client,
        ):
            return await asyncio.gather(
                *(client.request("GET", f"/api/echo/{i}?sleep=0.01") for i in range(20))
            )

    answers = asyncio.run(main())
    assert [status for status, _ in answers] == [200] * 20
    assert [msgspec.json.decode(body)["n"] for _, body in answers] == [str(i) for i in range(20)]
    assert sorted(seen, key=int) == [str(i) for i in range(20)]
    assert len(peers) == 2


def test_requests_waiting_for_a_connection_are_served_first_come_first_served() -> None:
    seen: list[str] = []

    async def main() -> None:
        async with (
            app_server(echo_app(seen, set())) as base,
            HttpClient(base, connections=1, timeout=5) as client,
        ):
            await asyncio.gather(*(client.request("GET", f"/api/echo/{i}") for i in range(6)))

    asyncio.run(main())
    assert seen == ["0", "1", "2", "3", "4", "5"]


@pytest.mark.parametrize("loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop])
def test_connections_send_without_nagle_delay(
    loop_factory: Callable[[], asyncio.AbstractEventLoop],
) -> None:
    async def main() -> int:
        async with (
            raw_server(answering(OK)) as (base, _),
            HttpClient(base, connections=1, timeout=5) as client,
        ):
            await client.request("GET", "/")
            sock = client._idle[0]._transport.get_extra_info("socket")  # type: ignore[union-attr]
            return int(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY))

    with asyncio.Runner(loop_factory=loop_factory) as runner:
        assert runner.run(main()) == 1


# -- awkward answers --------------------------------------------------------------------------
def test_a_chunked_answer_is_joined_and_its_connection_reused() -> None:
    async def main() -> tuple[list[tuple[int, bytes]], list[bool]]:
        async with raw_server(answering(CHUNKED, OK)) as (base, ended):
            async with HttpClient(base, connections=1, timeout=5) as client:
                answers = [await client.request("GET", "/"), await client.request("GET", "/")]
            await asyncio.sleep(0.05)  # the server reads the close
            return answers, ended

    answers, ended = asyncio.run(main())
    assert answers == [(200, b"hello, world"), (200, b"ok")]
    assert ended == [True]  # one connection, closed by ``async with``


@pytest.mark.parametrize(
    ("answer", "body"),
    [(b"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", b"hello world"),
     (CHUNKED, b"hello, world")],
)  # fmt: skip
def test_an_answer_written_one_byte_at_a_time(answer: bytes, body: bytes) -> None:
    async def handle(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await read_request(reader):
            for i in range(len(answer)):
                writer.write(answer[i : i + 1])
                await writer.drain()
                await asyncio.sleep(0.001)

    async def main() -> tuple[list[tuple[int, bytes]], int]:
        async with (
            raw_server(handle) as (base, ended),
            HttpClient(base, connections=1, timeout=5) as client,
        ):
            return [await client.request("GET", "/") for _ in range(2)], len(ended)

    assert asyncio.run(main()) == ([(200, body), (200, body)], 1)


def test_an_interim_answer_and_the_answer_in_one_write() -> None:
    interim = b"HTTP/1.1 100 Continue\r\n\r\n" + OK

    async def main() -> tuple[list[tuple[int, bytes]], int]:
        async with (
            raw_server(answering(interim, OK)) as (base, ended),
            HttpClient(base, connections=1, timeout=5) as client,
        ):
            return [await client.request("POST", "/", b"{}") for _ in range(2)], len(ended)

    assert asyncio.run(main()) == ([(200, b"ok"), (200, b"ok")], 1)


def test_a_connection_close_answer_is_not_reused() -> None:
    closing = b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 3\r\n\r\nbye"

    async def main() -> tuple[list[tuple[int, bytes]], list[bool]]:
        async with (
            raw_server(first_then(closing, OK)) as (base, ended),
            HttpClient(base, connections=1, timeout=5) as client,
        ):
            answers = [await client.request("GET", "/") for _ in range(2)]
            await asyncio.sleep(0.05)  # the server reads the close of the first connection
            return answers, list(ended)

    assert asyncio.run(main()) == ([(200, b"bye"), (200, b"ok")], [True, False])


def test_an_answer_without_a_length_ends_when_the_server_closes() -> None:
    async def handle(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n\r\nuntil ")
        await writer.drain()
        await asyncio.sleep(0.01)
        writer.write(b"the end")

    async def main() -> tuple[list[tuple[int, bytes]], int]:
        async with (
            raw_server(handle) as (base, ended),
            HttpClient(base, connections=1, timeout=5) as client,
        ):
            return [await client.request("GET", "/") for _ in range(2)], len(ended)

    assert asyncio.run(main()) == ([(200, b"until the end"), (200, b"until the end")], 2)


# -- failures ---------------------------------------------------------------------------------
def test_a_server_closing_mid_body_fails_that_request_only() -> None:
    async def handle(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if n == 1:
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
            return  # closes mid-body
        writer.write(OK)
        await reader.read()

    async def main() -> tuple[str, tuple[int, bytes], int]:
        async with (
            raw_server(handle) as (base, ended),
            HttpClient(base, connections=1, timeout=5) as client,
        ):
            with pytest.raises(HttpClientError) as failed:
                await client.request("GET", "/")
            return str(failed.value), await client.request("GET", "/"), len(ended)

    message, answer, connections = asyncio.run(main())
    assert re.fullmatch(r"127\.0\.0\.1:\d+ closed the connection mid-response", message)
    assert (answer, connections) == ((200, b"ok"), 2)


@pytest.mark.parametrize(
    ("answer", "what"),
    [
        (b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n", "status line b'HTTP/1.1 2x0 OK'"),
        (b"SPDY 200 OK\r\nContent-Length: 0\r\n\r\n", "status line b'SPDY 200 OK'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length 2\r\n\r\nok", "header b'Content-Length 2'"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: two\r\n\r\nok", "header b'Content-Length: two'"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "chunk size b'zz'"),
    ],
)
def test_a_malformed_answer_names_what_was_wrong(answer: bytes, what: str) -> None:
    async def main() -> tuple[str, str]:
        async with (
            raw_server(answering(answer)) as (base, _),
            HttpClient(base, connections=1, timeout=5) as client,
        ):
            with pytest.raises(HttpClientError) as failed:
                await client.request("GET", "/")
            return str(failed.value), base.removeprefix("http://")

    message, where = asyncio.run(main())
    assert message == f"malformed {what} from {where}"


def test_a_malformed_answer_closes_its_connection() -> None:
    async def main() -> tuple[tuple[int, bytes], list[bool]]:
        bad = b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n"
        async with (
            raw_server(first_then(bad, OK)) as (base, ended),
            HttpClient(base, connections=1, timeout=5) as client,
        ):
            with pytest.raises(HttpClientError):
                await client.request("GET", "/")
            answer = await client.request("GET", "/")
            await asyncio.sleep(0.05)
            return answer, list(ended)

    assert asyncio.run(main()) == ((200, b"ok"), [True, False])


def test_a_timeout_drops_the_connection() -> None:
    async def handle(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if n > 1:
            writer.write(OK)
        await reader.read()  # the first connection never answers

    async def main() -> tuple[tuple[int, bytes], list[bool]]:
        async with (
            raw_server(handle) as (base, ended),
            HttpClient(base, connections=1, timeout=0.2) as client,
        ):
            with pytest.raises(TimeoutError):
                await client.request("GET", "/")
            answer = await client.request("GET", "/")
            await asyncio.sleep(0.05)
            return answer, list(ended)

    assert asyncio.run(main()) == ((200, b"ok"), [True, False])


def test_waiting_for_a_connection_counts_in_the_timeout() -> None:
    async def silent(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()

    async def main() -> tuple[list[type], float]:
        async with (
            raw_server(silent) as (base, _),
            HttpClient(base, connections=1, timeout=0.2) as client,
        ):
            start = time.perf_counter()
            outcomes = await asyncio.gather(
                client.request("GET", "/"), client.request("GET", "/"), return_exceptions=True
            )
            return [type(o) for o in outcomes], time.perf_counter() - start

    failures, seconds = asyncio.run(main())
    # the second request waited for the first one's connection, and gave up with it
    assert failures == [TimeoutError, TimeoutError]
    assert seconds < 0.35


def test_a_cancelled_request_gives_back_its_connection_slot() -> None:
    async def handle(n: int, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await read_request(reader)
        if n > 1:
            writer.write(OK)
        await reader.read()

    async def main() -> tuple[tuple[int, bytes], int]:
        async with (
            raw_server(handle) as (base, ended),
            HttpClient(base, connections=1, timeout=5) as client,
        ):
            hanging = asyncio.create_task(client.request("GET", "/"))
            waiting = asyncio.create_task(client.request("GET", "/"))
            await asyncio.sleep(0.05)
            hanging.cancel()
            return await waiting, len(ended)

    assert asyncio.run(main()) == ((200, b"ok"), 2)


def test_a_refused_connection_raises_os_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # free again once closed: nobody listens there

    async def main() -> None:
        async with HttpClient(f"http://127.0.0.1:{port}", connections=1, timeout=5) as client:
            await client.request("GET", "/")

    with pytest.raises(ConnectionRefusedError):
        asyncio.run(main())
