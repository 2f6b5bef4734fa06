"""The Kafka topics ratewire reads and writes, and how many partitions each gets.

Records keyed by account land on the partition
:func:`engine.partitioning.partitions_of` computes, so every topic keyed by
account must have the same partition count (``partitions``) for an account's
CDRs, state and rated output to meet on the same worker.
"""

from __future__ import annotations

from typing import Final

CDRS: Final = "cdrs"
RATED: Final = "rated-cdrs"
REJECTED: Final = "cdrs-rejected"
ALERTS: Final = "alerts"
ACCOUNTS: Final = "accounts"
CHANGELOG: Final = "ratewire-state-changelog"
BILLING_EVENTS: Final = "billing-events"  # profiles, subscriptions, charges, renewal outcomes

DEFAULT_PARTITIONS: Final = 4


def all_topics(partitions: int) -> dict[str, int]:
    """Every topic with its partition count: ``partitions`` each, but one for alerts.

    Alerts are few and read in order by people and pagers, so they keep one
    partition (one total order) whatever the others get.
    """
    keyed = (CDRS, RATED, REJECTED, ACCOUNTS, CHANGELOG, BILLING_EVENTS)
    return {**dict.fromkeys(keyed, partitions), ALERTS: 1}
