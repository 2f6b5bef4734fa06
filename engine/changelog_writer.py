"""The changelog's own Kafka writer: Produce requests written on plain connections.

A checkpoint's messages must be on the changelog before the work they record
is acknowledged, so every API request cycle waits for one produce round trip.
Through aiokafka's producer that round trip cost ~140 µs of the worker's CPU
(a message accumulator, a sender task, a request task, a connection reader,
a timeout task) and several turns of the event loop; the same request written
here costs ~55 µs and one turn each way (measured with uvloop on this
machine, idle: 0.23-0.29 against 0.17 ms to the acknowledgement). At 2,000
API requests/s a worker makes 700-1,200 such round trips a second.

:meth:`ChangelogWriter.write` takes the messages of one or more partitions
and sends them in one Produce request per leader (v3-v7: one record batch
per partition, zstd-compressed from 4 KB on v7), and answers with each
partition's offset after its last message, or the error that kept it out. Which broker leads a
partition comes from an aiokafka client's metadata, refreshed when an answer
says it moved. Retriable failures (a broken connection, a leader that moved,
no answer in time) are tried again until ``timeout`` has passed: a message
written twice is harmless, because changelog groups chain by sequence number
and a replay skips a copy it has applied (:class:`engine.changelog.Replay`).
Plain TCP, like the rest of the worker's Kafka traffic.
"""

from __future__ import annotations

import asyncio
import contextlib
import struct
import time
from collections import deque
from collections.abc import Mapping, Sequence

from aiokafka import TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import for_code
from aiokafka.record.default_records import DefaultRecordBatchBuilder

from engine.exceptions import RatewireError
from engine.runs import runs_under

PRODUCE, API_VERSIONS = 0, 18  # Kafka API keys
PRODUCE_VERSIONS = (3, 7)  # record batches v2, no per-record errors (v8)
ZSTD = 4  # a record batch's compression attribute
ZSTD_FROM_VERSION = 7  # the first Produce version that may carry zstd batches
COMPRESS_FROM = 4096  # bytes of a batch's values: smaller ones are sent as they are
BATCH_BYTES = 1 << 20  # uncompressed bytes per record batch (Kafka's message.max.bytes: ~1 MiB)
RECORD_OVERHEAD = 64  # bytes a record adds to its value in a batch, at most
BACKOFF = 0.1  # seconds before a retriable failure is tried again
CLIENT_ID = b"ratewire-changelog"
_HEADER_TAIL = struct.pack(">h", len(CLIENT_ID)) + CLIENT_ID  # after the correlation id


class ChangelogWriteError(RatewireError):
    """Changelog messages the broker refused, or that did not get through in time."""

    code = "CHANGELOG_WRITE_FAILED"


class _Retriable(Exception):
    """A failure worth trying again: the leader moved, the connection broke, no answer."""


class _Connection(asyncio.Protocol):
    """One connection to a broker; Kafka answers a connection's requests in order."""

    def __init__(self, where: str) -> None:
        self.where = where
        self.version = 0  # of Produce, once the broker has said which it speaks
        self.closed = False
        self._transport: asyncio.Transport | None = None
        self._buf = bytearray()
        self._correlation = 0
        self._waiting: deque[tuple[int, asyncio.Future[bytes], asyncio.TimerHandle]] = deque()

    def send(self, api: int, version: int, body: bytes, timeout: float) -> asyncio.Future[bytes]:
        """Write one request; the future gets its answer's body (after the correlation id).

        With no answer in ``timeout`` seconds the connection is closed, and every
        request waiting on it fails.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[bytes] = loop.create_future()
        if self.closed or self._transport is None:
            future.set_exception(_Retriable(f"the connection to {self.where} is closed"))
            return future
        self._correlation = (self._correlation + 1) & 0x7FFFFFFF
        head = struct.pack(">ihhi", 8 + len(_HEADER_TAIL) + len(body), api, version,
                           self._correlation)  # fmt: skip
        self._transport.write(b"".join((head, _HEADER_TAIL, body)))
        timer = loop.call_later(timeout, self._late, future)
        self._waiting.append((self._correlation, future, timer))
        return future

    def close(self) -> None:
        self.closed = True
        if self._transport is not None:
            self._transport.close()

    # -- asyncio.Protocol ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        buf = self._buf
        buf += data
        at = 0
        while len(buf) - at >= 8:
            size, correlation = struct.unpack_from(">ii", buf, at)
            if size < 4:
                self._fail(_Retriable(f"{self.where} sent a frame of {size} bytes"))
                self.close()
                return
            if len(buf) - at - 4 < size:
                break
            answer = bytes(buf[at + 8 : at + 4 + size])
            at += 4 + size
            if not self._waiting or self._waiting[0][0] != correlation:
                self._fail(_Retriable(f"{self.where} answered out of order"))
                self.close()
                return
            _, future, timer = self._waiting.popleft()
            timer.cancel()
            if not future.done():
                future.set_result(answer)
        del buf[:at]

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._fail(_Retriable(f"the connection to {self.where} was lost ({exc or 'closed'})"))

    def _late(self, future: asyncio.Future[bytes]) -> None:
        if not future.done():
            self._fail(_Retriable(f"no answer from {self.where} in time"))
            self.close()

    def _fail(self, error: Exception) -> None:
        while self._waiting:
            _, future, timer = self._waiting.popleft()
            timer.cancel()
            if not future.done():
                future.set_exception(error)


class ChangelogWriter:
    """Appends each partition's messages to ``topic``; gives the offset after them."""

    def __init__(
        self, bootstrap: str, topic: str, *, timeout: float = 30.0, compress: bool = True,
        batch_bytes: int = BATCH_BYTES,
    ) -> None:  # fmt: skip
        self._bootstrap, self._topic = bootstrap, topic
        name = topic.encode()
        self._name = struct.pack(">h", len(name)) + name
        self._timeout, self._batch_bytes, self._compress = timeout, batch_bytes, compress
        self._client: AIOKafkaClient | None = None
        self._stopped = False
        self._connections: dict[int, _Connection] = {}
        self._starting = asyncio.Lock()
        self._connecting: dict[int, asyncio.Lock] = {}  # per broker

    async def start(self) -> None:
        """Read the metadata and connect to the leaders of ``topic`` (else the first write does)."""
        deadline = time.monotonic() + self._timeout
        async with self._starting:
            if self._stopped:
                msg = f"changelog {self._topic}: the writer is stopped"
                raise ChangelogWriteError(msg)
            if self._client is None:
                client = AIOKafkaClient(bootstrap_servers=self._bootstrap,
                                        client_id=CLIENT_ID.decode())  # fmt: skip
                await client.bootstrap()
                self._client = client
        await self._refresh(deadline)
        leaders = {self._leader(p) for p in self._partitions()}
        for leader in sorted(x for x in leaders if x >= 0):
            with contextlib.suppress(_Retriable):  # the first write tries again
                await self._connection(leader, deadline)

    async def stop(self) -> None:
        """Close; a write under way gets its errors at once, and later writes are refused."""
        self._stopped = True
        async with self._starting:
            for connection in self._connections.values():
                connection.close()  # fails what waits on it
            self._connections.clear()
            client, self._client = self._client, None
            if client is not None:
                await client.close()

    async def write(self, messages: Mapping[int, Sequence[bytes]]) -> dict[int, int | Exception]:
        """Each partition's offset after its last message, or why its messages are not all in.

        A partition's messages are appended in order: in one record batch when
        they fit in ``batch_bytes``, else in several batches, each sent once the
        one before it is in. Every partition needs at least one message.
        """
        for p, ms in messages.items():
            if not ms:
                msg = f"changelog {self._topic}[{p}]: nothing to write"
                raise ValueError(msg)
        if self._client is None:
            await self.start()
        deadline = time.monotonic() + self._timeout
        rounds = {p: runs_under(ms, lambda m: len(m) + RECORD_OVERHEAD, self._batch_bytes)
                  for p, ms in messages.items()}  # fmt: skip
        out: dict[int, int | Exception] = {}
        while rounds:
            done = await self._attempt({p: runs.pop(0) for p, runs in rounds.items()}, deadline)
            out |= done
            rounds = {p: runs for p, runs in rounds.items()
                      if runs and not isinstance(done[p], Exception)}  # fmt: skip
        return out

    async def _attempt(
        self, batches: dict[int, list[bytes]], deadline: float
    ) -> dict[int, int | Exception]:
        """Each partition's batch sent (again, on a retriable failure, until ``deadline``)."""
        out: dict[int, int | Exception] = {}
        while batches:
            by_leader: dict[int, list[int]] = {}
            for p in batches:
                by_leader.setdefault(self._leader(p), []).append(p)
            sends = [self._produce(leader, {p: batches[p] for p in ps}, deadline)
                     for leader, ps in by_leader.items()]  # fmt: skip
            # leaders in parallel; one (the usual case) without gather's task and loop turn
            answers = [await sends[0]] if len(sends) == 1 else await asyncio.gather(*sends)
            retry: dict[int, list[bytes]] = {}
            for p, result in (item for answer in answers for item in answer.items()):
                if not isinstance(result, _Retriable):
                    out[p] = result
                elif time.monotonic() < deadline and not self._stopped:
                    retry[p] = batches[p]
                else:
                    why = "the writer stopped" if self._stopped else f"{self._timeout:g} s passed"
                    out[p] = ChangelogWriteError(
                        f"changelog {self._topic}[{p}]: not written, {why} ({result})"
                    )
            if retry:
                await asyncio.sleep(BACKOFF)
                await self._refresh(deadline)
            batches = retry
        return out

    async def _produce(
        self, leader: int, batches: dict[int, list[bytes]], deadline: float
    ) -> dict[int, int | Exception]:
        """One Produce request to ``leader`` (-1: none known) for these partitions."""
        connection = None
        try:
            if leader < 0:
                msg = f"no leader known for {self._topic} {sorted(batches)}"
                raise _Retriable(msg)
            connection = await self._connection(leader, deadline)
            left = _left(deadline)
            request = self._request(batches, connection.version, left)
            answer = await connection.send(PRODUCE, connection.version, request, left)
            return self._answers(answer, batches, connection.version)
        except (_Retriable, ChangelogWriteError) as exc:
            return dict.fromkeys(batches, exc)
        except struct.error as exc:  # an answer that does not parse: the connection is suspect
            if connection is not None:
                connection.close()
            return dict.fromkeys(batches, _Retriable(f"an answer that does not parse: {exc}"))

    def _request(self, batches: dict[int, list[bytes]], version: int, left: float) -> bytes:
        """A Produce v3-v7 body: no transactional id, acks from all replicas, one topic.

        The broker is given 80 % of the time left to replicate, so that its
        answer comes back before this side gives up on it.
        """
        parts = [struct.pack(">hhii", -1, -1, max(int(left * 800), 1), 1), self._name,
                 struct.pack(">i", len(batches))]  # fmt: skip
        now = int(time.time() * 1000)
        # zstd needs Produce v7 (KIP-110). An API cycle's few hundred bytes do not shrink
        # (292 bytes compressed against 252 in the median), and zstd lets go of the GIL,
        # which another thread may then keep
        zstd = self._compress and version >= ZSTD_FROM_VERSION
        for p, messages in batches.items():
            big = sum(map(len, messages)) >= COMPRESS_FROM
            builder = DefaultRecordBatchBuilder(
                magic=2, compression_type=ZSTD if zstd and big else 0, is_transactional=0,
                producer_id=-1, producer_epoch=-1, base_sequence=-1, batch_size=1 << 30,
            )  # fmt: skip
            for i, value in enumerate(messages):
                builder.append(i, timestamp=now, key=None, value=value, headers=[])
            records = builder.build()
            parts += (struct.pack(">ii", p, len(records)), bytes(records))
        return b"".join(parts)

    def _answers(
        self, answer: bytes, batches: dict[int, list[bytes]], version: int
    ) -> dict[int, int | Exception]:
        """Each partition's offset after its batch, or its error, from a Produce answer."""
        entry = 22 if version < 5 else 30  # partition, error, base offset, append time (+start)
        out: dict[int, int | Exception] = {}
        (topics,) = struct.unpack_from(">i", answer)
        at = 4
        for _ in range(topics):
            at += 2 + struct.unpack_from(">h", answer, at)[0]  # the topic's name
            (count,) = struct.unpack_from(">i", answer, at)
            at += 4
            for _ in range(count):
                p, code, base = struct.unpack_from(">ihq", answer, at)
                at += entry
                if p not in batches:
                    continue
                if code == 0:
                    out[p] = base + len(batches[p])
                    continue
                error = for_code(code)
                text = (
                    f"changelog {self._topic}[{p}]: the broker answered {error.__name__} ({code})"
                )
                out[p] = _Retriable(text) if error.retriable else ChangelogWriteError(text)
        for p in batches:
            if p not in out:
                out[p] = ChangelogWriteError(f"changelog {self._topic}[{p}]: not in the answer")
        return out

    # -- brokers ---------------------------------------------------------------------------
    def _partitions(self) -> set[int]:
        client = self._client
        return (client.cluster.partitions_for_topic(self._topic) or set()) if client else set()

    def _leader(self, partition: int) -> int:
        client = self._client
        if client is None:
            return -1
        leader = client.cluster.leader_for_partition(TopicPartition(self._topic, partition))
        return -1 if leader is None else leader

    async def _refresh(self, deadline: float) -> None:
        """Newer metadata, if it comes before ``deadline`` (else the next attempt uses the old)."""
        client = self._client
        if client is None:
            return
        client.add_topic(self._topic)
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.force_metadata_update(), _left(deadline))

    async def _connection(self, leader: int, deadline: float) -> _Connection:
        found = self._connections.get(leader)
        if found is not None and not found.closed:
            return found
        async with self._connecting.setdefault(leader, asyncio.Lock()):
            found = self._connections.get(leader)
            if found is not None and not found.closed:
                return found
            if self._stopped or self._client is None:
                msg = f"changelog {self._topic}: the writer stopped"
                raise _Retriable(msg)
            broker = self._client.cluster.broker_metadata(leader)
            if broker is None:
                msg = f"no address known for broker {leader}"
                raise _Retriable(msg)
            where = f"{broker.host}:{broker.port}"
            try:
                _, connection = await asyncio.wait_for(
                    asyncio.get_running_loop().create_connection(
                        lambda: _Connection(where), broker.host, broker.port
                    ),
                    _left(deadline),
                )  # fmt: skip
            except (OSError, TimeoutError) as exc:
                msg = f"cannot connect to {where}: {exc!r}"
                raise _Retriable(msg) from exc
            try:
                answer = await connection.send(API_VERSIONS, 0, b"", _left(deadline))
                connection.version = _produce_version(answer, where)
            except BaseException:
                connection.close()
                raise
            if self._stopped:  # stopped while connecting: nobody would close it
                connection.close()
                msg = f"changelog {self._topic}: the writer stopped"
                raise _Retriable(msg)
            self._connections[leader] = connection
            return connection


def _left(deadline: float) -> float:
    """Seconds until ``deadline``, at least a few milliseconds (a last try gets a chance)."""
    return max(deadline - time.monotonic(), 0.005)


def _produce_version(answer: bytes, where: str) -> int:
    """The highest Produce version both sides speak, from an ApiVersions v0 answer."""
    code, count = struct.unpack_from(">hi", answer)
    if code:
        msg = f"{where} refused ApiVersions: {for_code(code).__name__}"
        raise ChangelogWriteError(msg)
    for i in range(count):
        key, low, high = struct.unpack_from(">hhh", answer, 6 + 6 * i)
        if key == PRODUCE and max(low, PRODUCE_VERSIONS[0]) <= min(high, PRODUCE_VERSIONS[1]):
            return min(int(high), PRODUCE_VERSIONS[1])
    low, high = PRODUCE_VERSIONS
    msg = f"{where} does not speak Produce v{low}-v{high}, which the changelog writer needs"
    raise ChangelogWriteError(msg)
