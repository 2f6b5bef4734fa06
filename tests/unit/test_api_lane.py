"""The API lane on a real socket, with aiohttp's protocol behind it for what it hands over.

The API under it is :class:`engine.api.Api` with :meth:`call` scripted: each test says
how long a key's answer takes and what it is, and the routes aiohttp serves after a
hand-over are ``Api.add_routes``' own, calling the same scripted ``call``.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

import msgspec
import pytest
import uvloop
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st

from engine import api_lane
from engine.api import Api, Reply
from engine.api_lane import MAX_PENDING, Lane, encode_reply, parse_head


class ScriptedApi(Api):
    """``call`` answers ``{"route", "key", "body", "via"}``, after ``delays[key]`` seconds."""

    def __init__(self, delays: Mapping[str, float] | None = None) -> None:
        self.delays = dict(delays or {})
        self.calls: list[tuple[str, str]] = []
        self.release = asyncio.Event()
        self.release.set()

    async def call(
        self, route: str, key: str, body: bytes, headers: Mapping[str, str], path: str
    ) -> Reply:
        self.calls.append((route, key))
        await self.release.wait()
        await asyncio.sleep(self.delays.get(key, 0.0))
        if key == "boom":
            raise RuntimeError(key)
        answer = {"route": route, "key": key, "body": body.decode(), "path": path,
                  "auth": headers.get("authorization", "")}  # fmt: skip
        return Reply(200, msgspec.json.encode(answer))


def application(api: ScriptedApi) -> web.Application:
    app = web.Application()
    api.add_routes(app.router)

    async def other(request: web.Request) -> web.Response:
        return web.Response(text="aiohttp here")

    app.router.add_get("/other", other)
    return app


@asynccontextmanager
async def lane(
    api: ScriptedApi, *, plain: bool = False
) -> AsyncIterator[tuple[asyncio.StreamReader, asyncio.StreamWriter, Lane]]:
    """A lane on a free port with aiohttp's protocol behind it; a connection to it.

    ``plain``: aiohttp alone (Faust's web server as it comes), for comparison.
    """
    runner = web.AppRunner(application(api), access_log=None)
    await runner.setup()
    assert runner.server is not None
    served = Lane(api, runner.server)
    if plain:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        port = runner.addresses[0][1]
    else:
        await served.start("127.0.0.1", 0)
        assert served._server is not None
        port = served._server.sockets[0].getsockname()[1]
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        yield reader, writer, served
    finally:
        writer.close()
        await served.stop()
        await runner.cleanup()


async def answer(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode().split("\r\n")
    headers = {}
    for line in lines[1:]:
        if line:
            name, _, value = line.partition(":")
            headers[name.lower()] = value.strip()
    body = await reader.readexactly(int(headers["content-length"]))
    return int(lines[0].split()[1]), headers, body


def post(path: str, body: bytes = b"", extra: str = "") -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{extra}\r\n"
            .encode() + body)  # fmt: skip


def run(coro: Coroutine[Any, Any, None]) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(coro)


def test_pipelined_answers_come_back_in_request_order() -> None:
    async def go() -> None:
        api = ScriptedApi({"slow": 0.05})
        async with lane(api) as (reader, writer, _):
            writer.write(post("/accounts/slow/authorize", b'{"a":1}')
                         + post("/reservations/fast~1/commit", b"{}")
                         + b"GET /accounts/fast/balances HTTP/1.1\r\nHost: x\r\n\r\n")  # fmt: skip
            got = [await answer(reader) for _ in range(3)]
        assert [s for s, _, _ in got] == [200, 200, 200]
        bodies = [msgspec.json.decode(b) for _, _, b in got]
        assert [(b["route"], b["key"], b["body"]) for b in bodies] == [
            ("authorize", "slow", '{"a":1}'), ("commit", "fast~1", "{}"), ("balances", "fast", ""),
        ]  # fmt: skip
        assert got[0][1]["content-type"] == "application/json"
        assert "date" in got[0][1]

    run(go())


def test_other_requests_go_to_aiohttp_after_the_answers_before_them() -> None:
    async def go() -> None:
        api = ScriptedApi({"slow": 0.05})
        async with lane(api) as (reader, writer, _):
            writer.write(post("/accounts/slow/authorize")
                         + b"GET /other HTTP/1.1\r\nHost: x\r\n\r\n"
                         + post("/accounts/after/authorize"))  # fmt: skip
            first, second, third = [await answer(reader) for _ in range(3)]
        assert msgspec.json.decode(first[2])["key"] == "slow"
        assert (second[0], second[2]) == (200, b"aiohttp here")
        assert "aiohttp" in second[1]["server"].lower()  # aiohttp's writer, not the lane's
        assert msgspec.json.decode(third[2])["key"] == "after"  # aiohttp's route, same call
        assert "server" in third[1]

    run(go())


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (
            b"POST /accounts/a/authorize HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b'4\r\n{"a"\r\n3\r\n:1}\r\n0\r\n\r\n',
            200,
        ),  # chunked: aiohttp reads it
        (b"GET /accounts/a/balances HTTP/1.0\r\nHost: x\r\n\r\n", 200),
        (b"DELETE /accounts/a/balances HTTP/1.1\r\nHost: x\r\n\r\n", 405),
        (b"GET /nowhere HTTP/1.1\r\nHost: x\r\n\r\n", 404),
        (
            b"GET /accounts/a/balances HTTP/1.1\r\nHost: x\r\nX-Long: " + b"y" * 9000 + b"\r\n\r\n",
            400,
        ),
        (post("/accounts/a/authorize", b"x" * ((1 << 20) + 1)), 413),
        (
            b"POST /accounts/a/authorize HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n"
            b"\r\nxy",
            400,
        ),
    ],
    ids=["chunked", "http-1.0", "method", "path", "long-header", "big-body", "two-lengths"],
)
def test_what_the_lane_does_not_take_aiohttp_answers(request_bytes: bytes, status: int) -> None:
    async def go() -> None:
        api = ScriptedApi()
        async with lane(api) as (reader, writer, _):
            writer.write(request_bytes)
            got, headers, body = await answer(reader)
        assert got == status, body
        assert "aiohttp" in headers["server"].lower()
        if status == 200:
            assert api.calls == [(("authorize" if b"POST" in request_bytes else "balances"), "a")]
            if b"chunked" in request_bytes:
                assert msgspec.json.decode(body)["body"] == '{"a":1}'
        else:
            assert api.calls == []

    run(go())


def test_connection_close_is_answered_then_closed_and_nothing_after_it_read() -> None:
    async def go() -> None:
        api = ScriptedApi()
        async with lane(api) as (reader, writer, _):
            writer.write(post("/accounts/a/authorize", b"", "Connection: close\r\n")
                         + post("/accounts/b/authorize"))  # fmt: skip
            status, headers, _ = await answer(reader)
            assert (status, headers["connection"]) == (200, "close")
            assert await reader.read() == b""  # closed, the second request never answered
        assert api.calls == [("authorize", "a")]

    run(go())


def test_keys_are_percent_decoded_and_query_strings_ignored() -> None:
    async def go() -> None:
        api = ScriptedApi()
        async with lane(api) as (reader, writer, _):
            writer.write(post("/accounts/a%2Fb%20c/authorize?x=1", b"", "Authorization: T\r\n"))
            _, _, body = await answer(reader)
        got = msgspec.json.decode(body)
        assert (got["key"], got["path"], got["auth"]) == ("a/b c", "/accounts/a/b c/authorize", "T")

    run(go())


def test_a_failing_call_answers_500_and_the_connection_goes_on() -> None:
    async def go() -> None:
        api = ScriptedApi()
        async with lane(api) as (reader, writer, _):
            writer.write(post("/accounts/boom/authorize") + post("/accounts/ok/authorize"))
            first, second = await answer(reader), await answer(reader)
        assert first[0] == 500
        assert msgspec.json.decode(first[2])["error"] == "INTERNAL"
        assert (second[0], msgspec.json.decode(second[2])["key"]) == (200, "ok")

    run(go())


def test_reading_pauses_while_too_many_answers_are_pending() -> None:
    async def go() -> None:
        api = ScriptedApi()
        api.release.clear()
        async with lane(api) as (reader, writer, _):
            writer.write(
                b"".join(post(f"/accounts/k{i}/authorize") for i in range(3 * MAX_PENDING))
            )
            await asyncio.sleep(0.2)
            started = len(api.calls)
            api.release.set()
            got = [await answer(reader) for _ in range(3 * MAX_PENDING)]
        assert started == MAX_PENDING
        keys = [msgspec.json.decode(b)["key"] for _, _, b in got]
        assert keys == [f"k{i}" for i in range(3 * MAX_PENDING)]

    run(go())


SAME = [
    post("/accounts/a/authorize", b'{"category":"call","usage":"2m"}'),
    post("/accounts/a%2Fb/authorize?x=1&y=2"),
    post("/accounts/%C3%A9t%C3%A9/authorize", b"{}", "authorization: Bearer T\r\n"),
    post("/accounts/a+b/authorize", b"", "AUTHORIZATION:   Bearer  x  \r\n"),
    post("/reservations/a~x-1/release", b"", "X-Ratewire-Forwarded: 1\r\n"),
    b"GET /accounts/a/balances HTTP/1.1\r\nHost: x\r\n\r\n",
]


def test_the_lane_answers_as_aiohttp_alone_does() -> None:
    """The same requests, through the lane and through aiohttp alone: the same calls
    (route, key, body, path, Authorization) and the same answers."""

    async def answers(plain: bool) -> tuple[list[Any], list[Any]]:
        api = ScriptedApi()
        async with lane(api, plain=plain) as (reader, writer, _):
            writer.write(b"".join(SAME))
            got = [await answer(reader) for _ in SAME]
        return [(status, body) for status, _, body in got], api.calls

    results: dict[bool, Any] = {}

    async def go() -> None:
        results[True] = await answers(plain=True)
        results[False] = await answers(plain=False)

    run(go())
    assert results[False] == results[True]
    assert [msgspec.json.decode(b)["key"] for _, b in results[False][0]] == [
        "a", "a/b", "été", "a+b", "a~x-1", "a",
    ]  # fmt: skip


@given(st.binary(max_size=300))
def test_parse_head_never_raises(head: bytes) -> None:
    request = parse_head(b"POST /accounts/a/authorize HTTP/1.1\r\n" + head)
    if request is not None:
        assert request.route == "authorize"
        assert 0 <= request.length <= (1 << 20)


def test_parse_head_and_encode_reply() -> None:
    head = b"POST /reservations/a~1/commit HTTP/1.1\r\nContent-Length: 12\r\nX-A: b"
    request = parse_head(head)
    assert request is not None
    assert (request.route, request.key, request.length, request.close) == (
        "commit",
        "a~1",
        12,
        False,
    )
    assert request.headers == {"content-length": "12", "x-a": "b"}
    assert parse_head(b"POST /reservations/a~1/commit HTTP/1.1\r\n folded: x") is None
    assert parse_head(b"POST /reservations//commit HTTP/1.1") is None
    assert parse_head(b"GET /accounts/a/authorize HTTP/1.1") is None
    assert encode_reply(Reply(404, b"{}"), close=True, date=b"D") == (
        b"HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: 2\r\n"
        b"Date: D\r\nConnection: close\r\n\r\n{}"
    )


def test_a_client_gone_before_its_answer_leaves_the_lane_serving_others() -> None:
    async def go() -> None:
        api = ScriptedApi({"slow": 0.05})
        async with lane(api) as (reader, writer, _):
            port = writer.get_extra_info("peername")[1]
            _, gone = await asyncio.open_connection("127.0.0.1", port)
            gone.write(post("/accounts/slow/authorize"))
            await asyncio.sleep(0.01)
            gone.close()
            await asyncio.sleep(0.1)  # its answer is ready now, with nobody to take it
            writer.write(post("/accounts/next/authorize"))
            status, _, body = await answer(reader)
        assert (status, msgspec.json.decode(body)["key"]) == (200, "next")
        assert api.calls == [("authorize", "slow"), ("authorize", "next")]

    run(go())


def test_idle_connections_are_closed_by_the_sweep(monkeypatch: pytest.MonkeyPatch) -> None:
    async def go() -> None:
        api = ScriptedApi()
        async with lane(api) as (reader, writer, served):
            writer.write(post("/accounts/a/authorize"))
            await answer(reader)
            served._sweep()  # idle for less than IDLE_SECONDS: kept
            writer.write(post("/accounts/b/authorize"))
            assert (await answer(reader))[0] == 200
            monkeypatch.setattr(api_lane, "IDLE_SECONDS", 0.0)
            served._sweep()
            assert await reader.read() == b""  # closed by the server

    run(go())
