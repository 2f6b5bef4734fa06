"""The worker's zstd level reaches aiokafka's batch builders (it has no setting of its own)."""

from __future__ import annotations

import cramjam
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.record.memory_records import MemoryRecords

from engine.kafka_transport import ZSTD_LEVEL, zstd_level

ZSTD = 4  # aiokafka's compression_type code
LINES = b"".join(
    b'{"cdr_id":"2026-%09d","tenant":"ratewire.demo","cost":"0.09","rate":"RT_SMS"}\n' % i
    for i in range(3_000)
)


def batch() -> bytes:
    builder = DefaultRecordBatchBuilder(
        magic=2, compression_type=ZSTD, is_transactional=0, producer_id=-1, producer_epoch=-1,
        base_sequence=-1, batch_size=1 << 24,
    )  # fmt: skip
    builder.append(0, timestamp=1, key=None, value=LINES, headers=[])
    return bytes(builder.build())


def test_batches_are_compressed_at_the_level_set_and_read_back_whole() -> None:
    try:
        sizes = {}
        for level in (1, 19):
            zstd_level(level)
            raw = batch()
            sizes[level] = len(raw)
            records = MemoryRecords(raw)
            (record,) = list(records.next_batch())
            assert record.value == LINES
        # a level's own output size: the builder used the level given
        assert sizes[1] != sizes[19]
        assert 0 < sizes[1] - len(bytes(cramjam.zstd.compress(LINES, level=1))) < 100
    finally:
        zstd_level(ZSTD_LEVEL)


def test_each_thread_compresses_with_its_own_context() -> None:
    """Batches built at once on two threads (the worker's loop and Faust's consumer
    thread) each read back whole: the kept context is one per thread."""
    from concurrent.futures import ThreadPoolExecutor

    def build(n: int) -> list[bytes]:
        out = []
        for _ in range(50):
            builder = DefaultRecordBatchBuilder(
                magic=2, compression_type=ZSTD, is_transactional=0, producer_id=-1,
                producer_epoch=-1, base_sequence=-1, batch_size=1 << 24,
            )  # fmt: skip
            builder.append(0, timestamp=1, key=None, value=LINES[: 1000 * n], headers=[])
            (record,) = list(MemoryRecords(bytes(builder.build())).next_batch())
            out.append(record.value)
        return out

    zstd_level(ZSTD_LEVEL)
    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(build, (1, 2)))
    assert results == [[LINES[:1000]] * 50, [LINES[:2000]] * 50]
