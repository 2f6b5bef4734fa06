"""Sending invoices: rendered files in an outbox folder, optionally a ``notifications`` topic.

For each issued invoice or credit note, :func:`send` writes

    <outbox>/<issuer, or "operator">/<number>.html, .txt, .json (and .pdf with a renderer)

each first to a temporary name in the same folder; once a chunk's files are all
on disk (one ``sync`` per chunk, far cheaper than an fsync per file) they are
renamed into place and the folders synced, so a mail or print system picking
files up never sees half a file, even after a power cut. The ``.json`` is the
machine-readable invoice (amounts in nanos). Then, with a notifier, one message
per invoice goes to topic :data:`NOTIFICATIONS` (keyed by account), and last
the invoice's history records ``sent`` with where it went.

Re-running is safe: an invoice already sent is skipped unless ``resend`` (then
its files are rewritten with the same names and history says ``resent``). A
crash between the files and the history mark sends that invoice again on the
next run (same files; the notification may repeat: its value names the invoice
id and number for consumers to drop duplicates). Drafts and cancelled invoices
are not sent.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import msgspec

from billing.invoices import InvoiceStore, check_sendable, was_sent
from billing.model import Invoice
from billing.render import Renderer
from engine.exceptions import BrokerError

NOTIFICATIONS: Final = "notifications"
CHUNK = 200

Notify = Callable[[Sequence[tuple[bytes, bytes]]], None]  # (key, value) messages


@dataclass(slots=True)
class SendSummary:
    sent: int = 0
    resent: int = 0
    skipped: int = 0  # sent before, and no resend asked
    notified: int = 0
    files: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {"sent": self.sent, "resent": self.resent, "skipped": self.skipped,
                "notified": self.notified, "files": len(self.files)}  # fmt: skip


def folder_of(outbox: Path, inv: Invoice) -> Path:
    return outbox / (inv.issuer or "operator")


def write_temporary(path: Path, data: bytes) -> Path:
    """``data`` in a hidden sibling of ``path`` (not synced); returns the sibling."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    return tmp


def publish(staged: Sequence[tuple[Path, Path]]) -> None:
    """Make temporary files durable, rename each over its final name, sync the folders."""
    os.sync()
    for tmp, path in staged:
        tmp.replace(path)
    for folder in {path.parent for _, path in staged}:
        _sync_dir(folder)


def _sync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def documents(inv: Invoice, renderer: Renderer, original: Invoice | None) -> dict[str, bytes]:
    """File suffix → content of one invoice's documents."""
    docs = {
        ".html": renderer.render(inv, "html", original=original).encode(),
        ".txt": renderer.render(inv, "txt", original=original).encode(),
        ".json": msgspec.json.format(msgspec.json.encode(inv)) + b"\n",
    }
    pdf = renderer.render_pdf(inv)
    if pdf is not None:  # pragma: no cover - no PDF renderer installed here
        docs[".pdf"] = pdf
    return docs


def notification(inv: Invoice, files: Sequence[str], *, resent: bool) -> tuple[bytes, bytes]:
    value = {
        "kind": "credit_note" if inv.credit_note_for else "invoice",
        "invoice_id": inv.invoice_id, "number": inv.number, "account": inv.account,
        "issuer": inv.issuer, "language": inv.language, "currency": inv.currency,
        "total": inv.total, "amount_due": inv.amount_due, "due_day": inv.due_day,
        "files": list(files), "resent": resent,
    }  # fmt: skip
    return inv.account.encode(), msgspec.json.encode(value)


def send(
    invoices: InvoiceStore,
    ids: Sequence[str],
    *,
    outbox: Path,
    renderer: Renderer,
    actor: str,
    resend: bool = False,
    notify: Notify | None = None,
    chunk: int = CHUNK,
) -> SendSummary:
    """Send the invoices ``ids`` (see the module doc); unknown ids and drafts raise
    before anything of their chunk is written."""
    summary = SendSummary()
    for lo in range(0, len(ids), chunk):
        part = [invoices.require(i) for i in ids[lo : lo + chunk]]
        for inv in part:
            check_sendable(inv)
        todo = [inv for inv in part if resend or not was_sent(inv)]
        summary.skipped += len(part) - len(todo)
        if not todo:
            continue
        marks, messages, staged = [], [], []
        for inv in todo:
            original = invoices.get(inv.credit_note_for) if inv.credit_note_for else None
            folder = folder_of(outbox, inv)
            folder.mkdir(parents=True, exist_ok=True)
            files = []
            for suffix, data in documents(inv, renderer, original).items():
                path = folder / f"{inv.number}{suffix}"
                staged.append((write_temporary(path, data), path))
                files.append(str(path))
            summary.files += files
            messages.append(notification(inv, files, resent=was_sent(inv)))
            where = str(folder / inv.number) + " (" + " ".join(Path(f).suffix for f in files) + ")"
            marks.append((inv.invoice_id, where + (f" + topic {NOTIFICATIONS}" if notify else "")))
        publish(staged)
        if notify is not None:
            notify(messages)
            summary.notified += len(messages)
        for inv in invoices.mark_sent_many(marks, actor):
            if inv.history[-1].action == "resent":
                summary.resent += 1
            else:
                summary.sent += 1
    return summary


class KafkaNotifier:
    """Produces notification messages to a Kafka broker (``kafka://host:port``);
    use it as a context manager around :func:`send`."""

    def __init__(self, broker: str, topic: str = NOTIFICATIONS) -> None:
        from engine.broker import bootstrap_of

        self.bootstrap = bootstrap_of(broker)
        self.topic = topic
        self._loop = asyncio.new_event_loop()
        self._producer: Any = None

    def __enter__(self) -> Self:
        from engine.produce import producer

        async def start() -> Any:
            p = producer(self.bootstrap)
            try:
                await p.start()
            except BaseException:
                await p.stop()
                raise
            return p

        try:
            self._producer = self._loop.run_until_complete(start())
        except Exception as exc:  # aiokafka raises its own and OS errors alike
            self._loop.close()
            msg = (
                f"cannot reach broker {self.bootstrap} to send to topic {self.topic}: {exc}."
                " Operator action: check the address and that the broker runs; nothing was"
                " marked sent"
            )
            raise BrokerError(msg) from exc
        return self

    def __call__(self, messages: Sequence[tuple[bytes, bytes]]) -> None:
        async def produce() -> None:
            sent = [
                await self._producer.send(self.topic, value, key=key) for key, value in messages
            ]
            await asyncio.gather(*sent)

        try:
            self._loop.run_until_complete(produce())
        except Exception as exc:
            msg = (
                f"sending {len(messages)} notifications to {self.topic} on {self.bootstrap}"
                f" failed: {exc}. Operator action: run the same send again once the broker is"
                " back; the invoices of this chunk were not marked sent"
            )
            raise BrokerError(msg) from exc

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        try:
            if self._producer is not None:
                self._loop.run_until_complete(self._producer.stop())
        finally:
            self._loop.close()


__all__ = ["NOTIFICATIONS", "KafkaNotifier", "SendSummary", "publish", "send"]
