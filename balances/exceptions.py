"""Errors raised by the balances package: ledgers, reservations and their stores."""

from engine.exceptions import RatewireError


class BalanceError(RatewireError):
    """Root of every error the balances package raises on purpose."""

    code = "BALANCE_ERROR"


class StoreError(BalanceError):
    """A balance store could not be opened, read or written.

    Operator action: read the message, which names the store's directory and
    what to check (a file where the directory should be, another worker holding
    the store's lock, disk space, permissions); nothing of a batch that fails
    to write is acknowledged.
    """

    code = "STORE_ERROR"
