"""The billing store: one RocksDB folder with profiles, usage totals, invoices and indexes.

Written in bulk: the consumer's batches, and a mass run's million drafts with
their index rows (~2 GB). The options let such a write land in level 0 (up to
two 512 MB memtables in memory; level 0 compacted at 30 files or 2 GB instead
of RocksDB's 4 files or 256 MB), so a run does not compact while it runs:
measured on 1 M drafts on a 2-core machine, 29 s of compaction CPU during the
run with RocksDB's defaults, 0 with these (the population's own leftovers
aside). The run's writes are compacted later, in fewer and larger steps (the
next bulk write, e.g. issuing the drafts); a lookup checks each level-0 file's
bloom filter first.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from balances.store import RocksStore, StoreOptions

OPTIONS = StoreOptions(write_buffer_mb=512, l0_compaction_trigger=30, level_base_mb=2048)


def open_store(path: Path, *, read_only: bool = False) -> RocksStore:
    """The billing store at ``path``; ``read_only``: a reader beside its writer."""
    if read_only:  # every table file open from the start (see RocksStore)
        return RocksStore(path, replace(OPTIONS, max_open_files=-1), read_only=True)
    return RocksStore(path, OPTIONS)
