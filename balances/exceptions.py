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


class UnknownAccountError(BalanceError):
    """An operation names an account the ledger does not hold."""

    code = "ACCOUNT_UNKNOWN"


class AccountExistsError(BalanceError):
    """An account is created under an id the ledger already holds."""

    code = "ACCOUNT_EXISTS"


class UnitNotHeldError(BalanceError):
    """A credit is in a money unit that is neither the account's currency nor one it holds."""

    code = "UNIT_NOT_HELD"


class OperationConflictError(BalanceError):
    """An ``op_id`` that already named one operation is reused for a different one.

    Caller action: give every distinct operation its own ``op_id``; reuse an
    ``op_id`` only to retry exactly the same operation.
    """

    code = "OPERATION_CONFLICT"


class VoucherError(BalanceError):
    """Root of the gift-voucher errors: issuing a batch or redeeming a code."""

    code = "VOUCHER_ERROR"


class VoucherBatchConflictError(VoucherError):
    """A voucher batch id is issued again with other parameters than the first time."""

    code = "VOUCHER_BATCH_CONFLICT"


class VoucherMistypedError(VoucherError):
    """A voucher code has a character outside the alphabet, a wrong length or check character."""

    code = "VOUCHER_MISTYPED"


class VoucherUnknownError(VoucherError):
    """A well-formed voucher code that was never issued."""

    code = "VOUCHER_UNKNOWN"


class VoucherAlreadyRedeemedError(VoucherError):
    """A voucher that was redeemed before (the message says when and by which account)."""

    code = "VOUCHER_ALREADY_REDEEMED"


class VoucherExpiredError(VoucherError):
    """A voucher redeemed at or after the end of its validity."""

    code = "VOUCHER_EXPIRED"


class VoucherNotYetValidError(VoucherError):
    """A voucher redeemed before the start of its validity."""

    code = "VOUCHER_NOT_YET_VALID"


class LoyaltyError(BalanceError):
    """Root of the loyalty errors; raised itself for an unusable loyalty rules file."""

    code = "LOYALTY_ERROR"


class UnknownOfferError(LoyaltyError):
    """A redemption names an offer the loyalty rules do not have."""

    code = "LOYALTY_UNKNOWN_OFFER"


class NotEnoughPointsError(LoyaltyError):
    """An account's usable points do not cover an offer (the message says how many it holds)."""

    code = "LOYALTY_NOT_ENOUGH_POINTS"


class ReferralError(BalanceError):
    """Root of the referral errors; raised itself for an account that names no referrer."""

    code = "REFERRAL_ERROR"


class SelfReferralError(ReferralError):
    """An account names itself as its referrer."""

    code = "REFERRAL_SELF"


class UnknownReferrerError(ReferralError):
    """An account names a referrer the ledger does not hold."""

    code = "REFERRAL_UNKNOWN_REFERRER"


class ReferralLoopError(ReferralError):
    """The referrer was, directly or through others, referred by the new account."""

    code = "REFERRAL_LOOP"


class ReferralAlreadyRewardedError(ReferralError):
    """A referee whose referral was rewarded before (the message says by whom and when)."""

    code = "REFERRAL_ALREADY_REWARDED"


class ReservationError(BalanceError):
    """Root of the reservation errors; raised itself for a request that cannot be served
    as asked (a requested usage that is not positive, a negative actual usage)."""

    code = "RESERVATION_ERROR"


class UnknownReservationError(ReservationError):
    """A commit or release names a reservation this ledger does not hold: never granted
    here, or finished longer ago than finished reservations are kept.

    Caller action: commit with the ``reservation_id`` of the grant; a commit retried
    after that long needs an ``op_id`` to be recognised.
    """

    code = "RESERVATION_UNKNOWN"


class ReservationFinishedError(ReservationError):
    """A commit or release of a reservation that holds nothing any more: it was released,
    expired (the message says when) or, for a release, committed.

    Caller action: usage of an expired reservation was never charged; rate it as a CDR.
    """

    code = "RESERVATION_FINISHED"
