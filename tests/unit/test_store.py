"""One suite for both balance stores: MemoryStore and RocksStore (real RocksDB in tmp_path)."""

from __future__ import annotations

import random
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import rocksdict
from hypothesis import given, settings
from hypothesis import strategies as st

from balances.exceptions import BalanceError, StoreError
from balances.store import Cursor, MemoryStore, RocksStore, Store, StoreOptions, WriteBatch
from engine.exceptions import RatewireError


@pytest.fixture(params=["memory", "rocks"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    made: Store = MemoryStore() if request.param == "memory" else RocksStore(tmp_path / "db")
    with made:
        yield made


def put_all(store: Store, items: dict[bytes, bytes]) -> None:
    batch = WriteBatch()
    for key, value in items.items():
        batch.put(key, value)
    store.write(batch)


def contents(store: Store) -> dict[bytes, bytes]:
    return dict(store.scan(b""))


# --- reads and writes ---------------------------------------------------------------------


def test_missing_key_reads_as_none(store: Store) -> None:
    assert store.get(b"nobody") is None
    assert list(store.scan(b"")) == []


def test_put_then_get_then_delete(store: Store) -> None:
    put_all(store, {b"acct/1": b"100", b"acct/2": b"200"})
    assert store.get(b"acct/1") == b"100"
    assert store.get(b"acct/2") == b"200"

    batch = WriteBatch()
    batch.delete(b"acct/1")
    store.write(batch)

    assert store.get(b"acct/1") is None
    assert contents(store) == {b"acct/2": b"200"}


def test_put_overwrites_a_stored_value(store: Store) -> None:
    put_all(store, {b"k": b"old"})
    put_all(store, {b"k": b"new"})
    assert store.get(b"k") == b"new"


def test_later_put_of_the_same_key_wins(store: Store) -> None:
    batch = WriteBatch()
    batch.put(b"k", b"first")
    batch.put(b"k", b"second")
    store.write(batch)
    assert contents(store) == {b"k": b"second"}


def test_delete_then_put_in_one_batch_keeps_the_put(store: Store) -> None:
    put_all(store, {b"k": b"stored"})
    batch = WriteBatch()
    batch.delete(b"k")
    batch.put(b"k", b"replaced")
    store.write(batch)
    assert store.get(b"k") == b"replaced"


@pytest.mark.parametrize("stored_before", [False, True])
def test_put_then_delete_in_one_batch_leaves_no_key(store: Store, stored_before: bool) -> None:
    if stored_before:
        put_all(store, {b"k": b"stored"})
    batch = WriteBatch()
    batch.put(b"k", b"transient")
    batch.delete(b"k")
    store.write(batch)
    assert store.get(b"k") is None
    assert contents(store) == {}


def test_deleting_a_missing_key_is_harmless(store: Store) -> None:
    put_all(store, {b"keep": b"1"})
    batch = WriteBatch()
    batch.delete(b"never-written")
    store.write(batch)
    assert contents(store) == {b"keep": b"1"}


def test_batch_applies_puts_and_deletes_together(store: Store) -> None:
    put_all(store, {b"a": b"1", b"b": b"2", b"c": b"3"})
    batch = WriteBatch()
    batch.delete(b"a")
    batch.put(b"b", b"20")
    batch.put(b"d", b"4")
    store.write(batch)
    assert contents(store) == {b"b": b"20", b"c": b"3", b"d": b"4"}


def test_batch_length_counts_distinct_keys() -> None:
    batch = WriteBatch()
    assert len(batch) == 0
    batch.put(b"a", b"1")
    batch.put(b"a", b"2")
    batch.delete(b"b")
    batch.put(b"b", b"3")
    assert len(batch) == 2
    assert dict(batch.operations()) == {b"a": b"2", b"b": b"3"}


def test_empty_batch_changes_nothing(store: Store) -> None:
    put_all(store, {b"k": b"v"})
    store.write(WriteBatch())
    assert contents(store) == {b"k": b"v"}


def test_write_leaves_the_batch_unchanged_for_a_retry(store: Store) -> None:
    batch = WriteBatch()
    batch.put(b"k", b"v")
    batch.delete(b"gone")
    store.write(batch)
    assert len(batch) == 2
    put_all(store, {b"k": b"changed", b"gone": b"back"})
    store.write(batch)  # the same batch again: same outcome
    assert contents(store) == {b"k": b"v"}


def test_large_values_round_trip(store: Store, rng: random.Random) -> None:
    big = rng.randbytes(10 * 1024 * 1024)  # 10 MiB, incompressible
    other = big[::-1]
    put_all(store, {b"big/1": big, b"big/2": other})
    assert store.get(b"big/1") == big
    assert store.get_many([b"big/2", b"big/1"]) == [other, big]
    assert [key for key, _ in store.scan(b"big/")] == [b"big/1", b"big/2"]


# --- get_many -------------------------------------------------------------------------------


def test_get_many_keeps_the_order_of_keys_and_reports_misses(store: Store) -> None:
    put_all(store, {b"a": b"1", b"b": b"2", b"\x00": b"zero"})
    keys = [b"b", b"missing", b"a", b"\x00", b"b", b""]
    assert store.get_many(keys) == [b"2", None, b"1", b"zero", b"2", None]


def test_get_many_of_no_keys_is_empty(store: Store) -> None:
    assert store.get_many([]) == []


def test_get_many_accepts_any_sequence(store: Store) -> None:
    put_all(store, {b"a": b"1"})
    assert store.get_many((b"a", b"x")) == [b"1", None]


# --- scan -----------------------------------------------------------------------------------

BYTE_ORDER_KEYS = [
    b"\x00",
    b"\x00\x00",
    b"\x00\xff",
    b"a",
    b"a\x00",
    b"a\x00b",
    b"ab",
    b"a\xff",
    b"a\xff\xff",
    b"b",
    b"\xff",
    b"\xff\x00",
    b"\xff\xff",
    b"\xff\xff\x00",
    b"\xff\xff\xff",
]


def test_scan_yields_every_key_in_byte_order(store: Store) -> None:
    # Written in reverse so that insertion order cannot pass for byte order.
    put_all(store, {key: b"v" + key for key in reversed(BYTE_ORDER_KEYS)})
    assert list(store.scan(b"")) == [(key, b"v" + key) for key in BYTE_ORDER_KEYS]


@pytest.mark.parametrize(
    ("prefix", "expected"),
    [
        (b"\x00", [b"\x00", b"\x00\x00", b"\x00\xff"]),
        (b"a", [b"a", b"a\x00", b"a\x00b", b"ab", b"a\xff", b"a\xff\xff"]),
        (b"a\x00", [b"a\x00", b"a\x00b"]),
        (b"a\xff", [b"a\xff", b"a\xff\xff"]),
        (b"\xff", [b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\xff"]),
        (b"\xff\xff", [b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\xff"]),
        (b"\xff\xff\xff\xff", []),
        (b"c", []),
        (b"ab\x00", []),
    ],
)
def test_scan_by_prefix(store: Store, prefix: bytes, expected: list[bytes]) -> None:
    put_all(store, {key: key * 2 for key in BYTE_ORDER_KEYS})
    assert list(store.scan(prefix)) == [(key, key * 2) for key in expected]


@pytest.mark.parametrize(
    ("prefix", "start", "expected"),
    [
        (b"a", b"\x00b", [b"a\x00b", b"ab", b"a\xff", b"a\xff\xff"]),
        (b"a", b"b", [b"ab", b"a\xff", b"a\xff\xff"]),
        (b"a", b"c", [b"a\xff", b"a\xff\xff"]),
        (b"a", b"\xff\xff\x00", []),
        (b"\xff", b"", [b"\xff", b"\xff\x00", b"\xff\xff", b"\xff\xff\x00", b"\xff\xff\xff"]),
        (b"", b"\xff\xff\xff", [b"\xff\xff\xff"]),
    ],
)
def test_scan_from_a_start_key(
    store: Store, prefix: bytes, start: bytes, expected: list[bytes]
) -> None:
    put_all(store, {key: key * 2 for key in BYTE_ORDER_KEYS})
    assert [key for key, _ in store.scan(prefix, start)] == expected


def test_a_read_only_rocks_store_reads_beside_the_writer_and_refuses_writes(
    tmp_path: Path,
) -> None:
    with RocksStore(tmp_path / "db") as writer:
        put_all(writer, {b"k/1": b"1", b"k/2": b"2"})  # in the write-ahead log only
        reader = RocksStore(tmp_path / "db", StoreOptions(max_open_files=-1), read_only=True)
        with reader:
            put_all(writer, {b"k/3": b"3"})
            assert list(reader.scan(b"k/")) == [(b"k/1", b"1"), (b"k/2", b"2")]  # as opened
            batch = WriteBatch()
            batch.put(b"k/4", b"4")
            with pytest.raises(StoreError, match="open read-only: writing 1 keys refused"):
                reader.write(batch)
        assert writer.get(b"k/4") is None
        assert writer.get(b"k/3") == b"3"


def test_scan_sees_the_store_as_of_the_call(store: Store) -> None:
    put_all(store, {b"p/1": b"1", b"p/2": b"2"})
    scan = store.scan(b"p/")
    batch = WriteBatch()
    batch.put(b"p/3", b"3")
    batch.delete(b"p/1")
    batch.put(b"p/2", b"changed")
    store.write(batch)
    assert list(scan) == [(b"p/1", b"1"), (b"p/2", b"2")]
    assert list(store.scan(b"p/")) == [(b"p/2", b"changed"), (b"p/3", b"3")]


def test_finished_scan_stays_finished(store: Store) -> None:
    put_all(store, {b"k": b"v"})
    scan = store.scan(b"")
    assert list(scan) == [(b"k", b"v")]
    assert list(scan) == []


# --- lifecycle and errors -------------------------------------------------------------------


def test_closed_store_refuses_every_use(store: Store) -> None:
    store.close()
    store.close()  # twice is harmless
    with pytest.raises(StoreError, match="closed"):
        store.get(b"k")
    with pytest.raises(StoreError, match="closed"):
        store.get_many([b"k"])
    with pytest.raises(StoreError, match="closed"):
        store.scan(b"")
    with pytest.raises(StoreError, match="closed"):
        store.write(WriteBatch())


def test_closing_ends_unfinished_scans(store: Store) -> None:
    put_all(store, {b"a": b"1", b"b": b"2"})
    scan = store.scan(b"")
    assert next(scan) == (b"a", b"1")
    store.close()
    with pytest.raises(StoreError, match="closed during a scan"):
        next(scan)


def test_context_manager_closes_the_store(store: Store) -> None:
    with store as same:
        assert same is store
    with pytest.raises(StoreError):
        store.get(b"k")


@pytest.mark.parametrize(
    "misuse",
    [
        lambda s: s.get("text"),
        lambda s: s.get_many([b"ok", bytearray(b"no")]),
        lambda s: s.scan("p"),
        lambda s: WriteBatch().put("k", b"v"),  # type: ignore[arg-type]
        lambda s: WriteBatch().put(b"k", "v"),  # type: ignore[arg-type]
        lambda s: WriteBatch().delete(1),  # type: ignore[arg-type]
    ],
)
def test_keys_and_values_must_be_bytes(store: Store, misuse: Callable[[Store], object]) -> None:
    with pytest.raises(TypeError, match="must be bytes"):
        misuse(store)


def test_store_error_belongs_to_the_project_tree() -> None:
    assert issubclass(StoreError, BalanceError)
    assert issubclass(BalanceError, RatewireError)
    assert (StoreError.code, BalanceError.code) == ("STORE_ERROR", "BALANCE_ERROR")


# --- both stores agree with a dict ----------------------------------------------------------

KEYS = st.binary(max_size=3).map(lambda b: b.replace(b"\x01", b"\xff"))
OPERATION = st.tuples(KEYS, st.none() | st.binary(max_size=4))  # None: delete
BATCHES = st.lists(st.lists(OPERATION, max_size=8), max_size=6)


@settings(max_examples=40, deadline=None, database=None)
@given(batches=BATCHES, prefixes=st.lists(KEYS, max_size=4))
def test_both_stores_agree_with_a_dict(
    batches: list[list[tuple[bytes, bytes | None]]], prefixes: list[bytes]
) -> None:
    model: dict[bytes, bytes] = {}
    with tempfile.TemporaryDirectory() as directory:
        rocks = RocksStore(Path(directory) / "db", StoreOptions(sync=False))  # fsync: slow, moot
        stores: list[Store] = [MemoryStore(), rocks]
        for operations in batches:
            batch = WriteBatch()
            for key, value in operations:
                if value is None:
                    batch.delete(key)
                    model.pop(key, None)
                else:
                    batch.put(key, value)
                    model[key] = value
            for one in stores:
                one.write(batch)
        probe = sorted({key for ops in batches for key, _ in ops} | {b"", b"\xff"})
        for one in stores:
            for prefix in [b"", *prefixes]:
                expected = sorted((k, v) for k, v in model.items() if k.startswith(prefix))
                assert list(one.scan(prefix)) == expected, (one, prefix)
            assert one.get_many(probe) == [model.get(key) for key in probe], one
            one.close()


# --- RocksStore only ------------------------------------------------------------------------


def test_reopened_rocks_store_keeps_its_data(tmp_path: Path) -> None:
    path = tmp_path / "db"
    with RocksStore(path) as store:
        put_all(store, {b"acct/1": b"100", b"acct/2": b"200", b"gone": b"x"})
        batch = WriteBatch()
        batch.delete(b"gone")
        batch.put(b"acct/2", b"250")
        store.write(batch)
    with RocksStore(path) as store:
        assert contents(store) == {b"acct/1": b"100", b"acct/2": b"250"}
        assert store.get_many([b"acct/2", b"gone"]) == [b"250", None]


def test_rocks_store_reopens_although_a_scan_was_left_unfinished(tmp_path: Path) -> None:
    path = tmp_path / "db"
    store = RocksStore(path)
    put_all(store, {b"a": b"1", b"b": b"2"})
    unfinished = store.scan(b"")
    next(unfinished)
    store.close()  # a live rocksdict iterator would keep RocksDB and its lock held
    with RocksStore(path) as again:
        assert again.get(b"b") == b"2"
    with pytest.raises(StoreError):
        next(unfinished)


def test_opening_a_file_as_a_store_says_what_to_do(tmp_path: Path) -> None:
    path = tmp_path / "not-a-dir"
    path.write_bytes(b"x")
    with pytest.raises(StoreError, match="Operator action") as caught:
        RocksStore(path)
    assert str(path) in str(caught.value)
    assert "not a directory" in str(caught.value)
    assert path.read_bytes() == b"x"  # left alone


def test_opening_a_store_under_a_file_says_what_to_do(tmp_path: Path) -> None:
    (tmp_path / "file").write_bytes(b"x")
    with pytest.raises(StoreError, match="Operator action: check that the directory"):
        RocksStore(tmp_path / "file" / "db")


def test_opening_a_store_twice_in_one_process_says_what_to_do(tmp_path: Path) -> None:
    with RocksStore(tmp_path / "db"), pytest.raises(StoreError, match="already has the store open"):
        RocksStore(tmp_path / "db")


@pytest.mark.parametrize("compression", ["none", "snappy", "lz4", "zstd"])
@pytest.mark.parametrize("sync", [True, False])
def test_every_option_set_opens_and_persists(tmp_path: Path, compression: str, sync: bool) -> None:
    options = StoreOptions(sync=sync, compression=compression, write_buffer_mb=1)  # type: ignore[arg-type]
    value = b"0123456789" * 1000
    with RocksStore(tmp_path / "db", options) as store:
        put_all(store, {b"k/%d" % i: value for i in range(200)})  # > 1 MB: a flush
    with RocksStore(tmp_path / "db", options) as store:
        assert len(list(store.scan(b"k/"))) == 200
        assert store.get(b"k/199") == value


def test_a_store_written_in_bulk_keeps_its_writes_in_level_0(tmp_path: Path) -> None:
    """The billing store's options: flushed files wait in level 0 below the trigger."""
    options = StoreOptions(write_buffer_mb=1, l0_compaction_trigger=30, level_base_mb=2048)
    value = b"0123456789" * 1000
    with RocksStore(tmp_path / "db", options) as store:
        for flush in range(6):
            put_all(store, {b"k/%d/%d" % (flush, i): value for i in range(120)})
            store._live().flush()
        files = store._live().live_files()
        assert len(files) >= 6
        assert {f["level"] for f in files} == {0}
        assert len(list(store.scan(b"k/"))) == 720


def test_store_options_convert_to_rocksdict() -> None:
    options = StoreOptions(sync=False, max_open_files=-1)
    assert isinstance(options.to_options(), rocksdict.Options)
    assert options.write_options().sync is False
    # rocksdict's stub calls disable_wal a method; it is a bool attribute
    assert options.write_options().disable_wal is False  # type: ignore[comparison-overlap]
    assert StoreOptions().write_options().sync is True
    with pytest.raises(AttributeError):
        options.sync = True  # type: ignore[misc]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("write_buffer_mb", 0),
        ("block_cache_mb", 0),
        ("max_open_files", 0),
        ("max_open_files", -2),
        ("compression", "lzma"),
        ("keep_log_files", 0),
        ("l0_compaction_trigger", 0),
        ("level_base_mb", 0),
    ],
)
def test_bad_store_options_are_refused(field: str, value: object) -> None:
    with pytest.raises(StoreError, match=f"invalid store options: {field}"):
        StoreOptions(**{field: value})  # type: ignore[arg-type]


def test_a_batch_of_operations_keeps_the_last_per_key_and_checks_types(store: Store) -> None:
    put_all(store, {b"gone": b"x"})
    store.write(WriteBatch.of([(b"a", b"1"), (b"gone", None), (b"a", b"2")]))
    assert contents(store) == {b"a": b"2"}
    with pytest.raises(TypeError, match="store keys must be bytes, got str"):
        WriteBatch.of([("a", b"1")])  # type: ignore[list-item]
    with pytest.raises(TypeError, match="store values must be bytes, got int"):
        WriteBatch.of([(b"a", 1)])  # type: ignore[list-item]


def test_a_cursor_reads_values_in_key_order_with_one_scan(store: Store) -> None:
    put_all(store, {b"p/a": b"1", b"p/c": b"3", b"p/d": b"4", b"q/b": b"x"})
    cursor = Cursor(store, b"p/", b"b")
    put_all(store, {b"p/b2": b"new"})  # after the cursor was made: not seen
    assert [cursor.get(k) for k in (b"a2", b"b", b"b2", b"c", b"c", b"e")] == [
        None, None, None, b"3", b"3", None]  # fmt: skip
    with pytest.raises(ValueError, match="must not go back: b'd' after b'e'"):
        cursor.get(b"d")
    assert Cursor(store, b"p/").get(b"a") == b"1"
