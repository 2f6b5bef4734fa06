"""Real-time prepaid authorization: reserve what a session may use, charge what it used.

A switch (or an OCS front) asks before usage happens: "may this account use up
to N more units?". :class:`Reservations` answers with a :class:`Grant` and
holds what the grant will cost, so that parallel sessions of one account can
never together spend more than it has. The rules:

- **Price**: a request is rated as a one-record batch through the same
  :class:`~tariffs.rating.Rater` as the stream; the price of usage ``u`` is
  what the debit rules (:mod:`balances.debit`) would charge for it now:
  usage bundles cover billed usage first, the uncovered spans are priced,
  money balances pay, then the postpaid/hybrid main balance's credit.
- **Available** is ``amount - reserved`` of every balance, plus the credit
  limit on the main balance of a postpaid or hybrid account.
- **Grant**: the whole request if its price is payable; else the largest
  usage whose price is, in whole increments of the rate (a started increment
  is billed whole, so granting part of one would be paid for and not usable);
  else nothing, with a reason (:data:`INSUFFICIENT_CREDIT`,
  :data:`UNKNOWN_ACCOUNT` or the rating's error code).
- **Reserve**: exactly that price, from the balances the debit would take it
  from and in the same order, by raising their ``reserved``.
- **Commit** frees the reservation and debits the actual usage through
  :meth:`Ledger.debit <balances.ledger.Ledger.debit>` (journal ref: the
  reservation id). Usage beyond the grant is paid from what is still
  available; what cannot be paid is flagged ``INSUFFICIENT_CREDIT``.
  Committing a reservation again returns the first :class:`Charge`.
- **Release** frees it; a reservation lives until its ``expires_at``
  (``ttl_seconds`` after the grant) and :meth:`Reservations.expire` releases
  the ones past it (authorizing does so too, first). Committing one past its
  ``expires_at`` is refused: its usage must be rated as a CDR.
- **Durability**: each reservation is kept as ``res/<id>`` through the
  ledger's staged writes, so it becomes durable with the balances at the
  next checkpoint; reopening restores the ``reserved`` amounts. Finished
  reservations are kept ``keep_seconds`` (to answer retries), then dropped.

Batches (:meth:`~Reservations.authorize_many`, :meth:`~Reservations.commit_many`)
rate once and run one kernel per batch, the way a server micro-batches
concurrent requests; requests of one account are served in batch order, with
the outcome they would have one at a time. The single-request methods are
batches of one.

Limits: requests are rated without period counters (volume tiers count from
zero within the request, at authorize and at commit alike). For a rate of
basis ``volume`` the price of part of a request is not a prefix of the whole
one's spans, so such requests are searched by rating candidate usages (slow
path, one rating per step of a binary search).

The compiled part (``authorize_kernel``, ``quote_kernel``) mirrors the debit
kernel step for step; its slow twin is "debit ``u`` from a copy of the
balances with :class:`~balances.debit.Debitor` and see that nothing is left
unpaid" (``tests/unit/test_reservations.py``).
"""

from __future__ import annotations

import heapq
import secrets
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any, NamedTuple, cast

import msgspec
import numpy as np

from balances import kernels as bk
from balances.debit import KIND_MEASURE, MEASURE_CODES, Debitor
from balances.exceptions import (
    BalanceError,
    OperationConflictError,
    ReservationError,
    ReservationFinishedError,
    UnknownReservationError,
)
from balances.ledger import Ledger
from balances.reservation_kernels import (
    authorize_kernel,
    quote_kernel,
)
from balances.state import micros
from engine.columns import I64, Columns, StrColumn
from engine.cost import one_record
from tariffs import kernels as tk
from tariffs.compile import (
    BINDING_DESTINATION,
    DRATE_DECIMALS,
    DRATE_MAX_COST,
    DRATE_ROUNDING,
    DRATE_STRATEGY,
    STEP_INCREMENT,
    STEP_PRICE,
    STEP_UNIT,
)
from tariffs.rating import RatedBatch, Rater

# grant and charge reasons ("" is a full grant / a fully paid charge); rating errors
# keep their tariffs.rated codes
INSUFFICIENT_CREDIT = "INSUFFICIENT_CREDIT"
UNKNOWN_ACCOUNT = "UNKNOWN_ACCOUNT"
DUPLICATE = "DUPLICATE"
NOT_RATED = "NOT_RATED"
# reservation states
OPEN, COMMITTED, RELEASED, EXPIRED = "open", "committed", "released", "expired"
_DEFERRED, _REFUSED = 1, 2  # kernel skip codes: left to the slow path, refused before

_PREFIX = b"res/"
# the kernels' ten leading arguments: rec, span_start, sp, money, acc, bal, filt,
# unit_measure, currency, currency_decimals
_Args = tuple[Any, Any, Any, Any, Any, Any, Any, Any, Any, Any]


# -- requests and answers ------------------------------------------------------------
class AuthorizeRequest(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """May ``account`` use up to ``requested`` units from ``start``?

    ``tenant`` defaults to the account's tenant and ``subject`` to the account
    id; ``category`` decides the kind of usage as for ``ratewire cost``.
    """

    account: str
    category: str
    destination: str
    requested: int
    start: datetime
    tenant: str = ""
    subject: str = ""
    session: str = ""  # the caller's session id, kept with the reservation


class Grant(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    reservation_id: str  # "" when nothing was granted
    granted: int  # usage units, 0 <= granted <= requested
    reserved: dict[str, int]  # balance id -> amount held (its unit's integer amount)
    expires_at: float  # clock seconds; 0.0 when nothing was granted
    reason: str = ""  # "" for the whole request, else why it is less


class CommitRequest(msgspec.Struct, frozen=True, gc=False):
    reservation_id: str
    actual: int  # usage units used
    op_id: str = ""  # optional: a retry with the same op_id returns the first result


class Charge(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    """What committing a reservation charged (as :class:`~balances.debit.DebitResult` counts)."""

    reservation_id: str
    account: str
    granted: int
    actual: int
    covered: int  # usage units paid by bundles
    due: int  # money due, in the currency's amount units
    paid: int  # money paid (balances and debt)
    reason: str = ""  # "" when everything due was paid, else INSUFFICIENT_CREDIT, ...


class Release(msgspec.Struct, frozen=True, kw_only=True, gc=False):
    reservation_id: str
    account: str
    freed: dict[str, int]  # balance id -> amount no longer held
    status: str  # RELEASED or EXPIRED


class Reservation(msgspec.Struct, frozen=True, kw_only=True, gc=False, array_like=True):
    """A grant and what it holds; the value kept under ``res/<id>``."""

    id: str
    account: str
    tenant: str
    category: str
    subject: str
    destination: str
    kind: int  # engine.columns KIND_*
    start_us: int
    session: str
    requested: int
    granted: int
    rows: tuple[int, ...]  # balance rows held, in paying order
    amounts: tuple[int, ...]
    expires_at: float
    status: str = OPEN
    finished_at: float = 0.0
    charge: Charge | None = None


class _Asked(NamedTuple):
    """One ledger's authorize requests as the rating reads them, and what reservations keep."""

    rows: I64  # account rows, -1 for an unknown account
    tenants: list[str]
    subjects: list[str]
    kinds: list[int]
    starts: list[int]


class _Shared(NamedTuple):
    """The kernels' inputs that depend on the rated batch only, not on a ledger."""

    rec: I64  # per record: [-, -, usage, start, measure, -, kind, destination]
    sp: I64  # per span
    money: I64  # per record


def _shared(columns: Columns, rated: RatedBatch, rater: Rater) -> _Shared:
    c, by_binding = rated.compiled, rater.binding_drate
    first = np.where(rated.error == 0, rated.first_binding, 0)
    drate = by_binding[first]
    kind = columns.kind.astype(np.int64)
    step = c.steps[rated.sp_step]
    zeros = np.zeros(len(columns), dtype=np.int64)  # the ledger's columns, set per ledger
    rec = _table(zeros, zeros, columns.usage, columns.start_us, KIND_MEASURE[kind], zeros, kind,
                 c.bindings[first, BINDING_DESTINATION])  # fmt: skip
    sp = _table(rated.sp_offset, rated.sp_billed, step[:, STEP_PRICE], step[:, STEP_UNIT],
                by_binding[rated.sp_binding, DRATE_ROUNDING], step[:, STEP_INCREMENT])  # fmt: skip
    money = _table(rated.connect_fee, drate[:, DRATE_DECIMALS], drate[:, DRATE_ROUNDING],
                   drate[:, DRATE_MAX_COST], drate[:, DRATE_STRATEGY] == 1)  # fmt: skip
    return _Shared(rec, sp, money)


class _Rated(NamedTuple):
    """Authorize requests of one or more ledgers, rated in one call."""

    columns: Columns
    rated: RatedBatch
    volume: np.ndarray[Any, np.dtype[np.bool_]]  # a ``volume`` rate's span: price searched
    shared: _Shared


def authorize_together(
    groups: Sequence[tuple[Reservations, Sequence[AuthorizeRequest]]],
) -> list[list[Grant]]:
    """Each ledger's grants for its requests (as ``authorize_many``), all rated in one call.

    A worker's partitions are ledgers of one tariff: an API request cycle
    prices every partition's authorizations together, so the rating's fixed
    cost (string columns, three kernel calls) is paid once per cycle, not once
    per partition. Ledgers with different raters are rated apart. Raises
    :class:`ReservationError` before anything is reserved if a request asks
    for no usage.
    """
    for res, requests in groups:
        res._check(requests)
    out: dict[int, list[Grant]] = {}
    by_rater: dict[int, list[int]] = {}
    for g, (res, requests) in enumerate(groups):
        if requests:
            by_rater.setdefault(id(res._rater), []).append(g)
        else:
            out[g] = []
    for members in by_rater.values():
        asked = [groups[g][0]._asked(groups[g][1]) for g in members]
        batch = _rate(groups[members[0]][0], [groups[g][1] for g in members], asked)
        lo = 0
        for g, a in zip(members, asked, strict=True):
            res, requests = groups[g]
            out[g] = res._grants(requests, a, batch, lo)
            lo += len(requests)
    return [out[g] for g in range(len(groups))]


def _rate(
    res: Reservations, groups: Sequence[Sequence[AuthorizeRequest]], asked: Sequence[_Asked]
) -> _Rated:
    """The requests of ``groups`` as one batch, rated by ``res``'s rater."""
    requests = [q for group in groups for q in group]
    n = len(requests)
    # the rating reads the account only to count volume tiers within the batch: keyed by
    # ledger too, so that one ledger's requests never move another's tier
    accounts = (
        [q.account for q in requests] if len(groups) == 1
        else [f"{g}\x1f{q.account}" for g, group in enumerate(groups) for q in group]
    )  # fmt: skip
    columns = Columns(
        kind=np.array([k for a in asked for k in a.kinds], dtype=np.uint8),
        cdr_id=StrColumn(_NO_IDS.data, np.zeros(n + 1, dtype=np.int64)),
        tenant=StrColumn.from_strings([t for a in asked for t in a.tenants]),
        account=StrColumn.from_strings(accounts),
        category=StrColumn.from_strings([q.category for q in requests]),
        subject=StrColumn.from_strings([t for a in asked for t in a.subjects]),
        destination=StrColumn.from_strings([q.destination for q in requests]),
        start_us=np.array([t for a in asked for t in a.starts], dtype=np.int64),
        usage=np.array([q.requested for q in requests], dtype=np.int64),
    )  # fmt: skip
    rater = res._rater
    rated = rater.rate(columns)
    volume = np.zeros(len(rated.sp_binding) + 1, dtype=np.int64)
    np.cumsum(rater.binding_basis[rated.sp_binding] == tk.BASIS_VOLUME, out=volume[1:])
    found = volume[rated.span_start[1:]] > volume[rated.span_start[:-1]]
    return _Rated(columns, rated, found, _shared(columns, rated, rater))


_ENC = msgspec.msgpack.Encoder()
_DEC = msgspec.msgpack.Decoder(Reservation)
_NO_IDS = StrColumn(np.zeros(0, dtype=np.uint8), np.zeros(1, dtype=np.int64))


class Reservations:
    """Authorize, commit and release usage against a ledger's balances.

    One instance per ledger: it owns the ledger's ``reserved`` amounts. The
    ledger's owner checkpoints as usual, which makes reservations durable with
    the balances. ``clock`` gives seconds (``time.time`` by default); grants
    expire ``ttl_seconds`` after they are made, and finished reservations are
    remembered ``keep_seconds`` (to answer a retried commit with its first result).
    """

    def __init__(
        self, ledger: Ledger, debitor: Debitor, *, ttl_seconds: float = 300,
        keep_seconds: float = 60, clock: Callable[[], float] = time.time,
    ) -> None:  # fmt: skip
        state = ledger.state
        if debitor.state is not state:
            msg = "reservations: the debitor debits another balance state than the ledger's"
            raise ReservationError(msg)
        if ttl_seconds <= 0 or keep_seconds < 0:
            msg = f"reservations: ttl_seconds {ttl_seconds} must be positive, keep_seconds"
            msg += f" {keep_seconds} not negative"
            raise ReservationError(msg)
        if state.bal.arrays["reserved"][: state.bal.size].any():
            msg = "reservations: the ledger holds reserved amounts already (one per ledger)"
            raise ReservationError(msg)
        self._ledger, self._debitor, self._rater = ledger, debitor, debitor.rater
        self._ttl, self._keep, self._clock = float(ttl_seconds), float(keep_seconds), clock
        self._open: dict[str, Reservation] = {}
        self._finished: dict[str, Reservation] = {}
        self._deadlines: list[tuple[float, str]] = []  # heap of (when to look again, id)
        # ids name their account (a worker routes commit/release by it) and stay unique
        # across restarts: "<account>~<random>-<n>"
        self._prefix = secrets.token_hex(6)
        self._seq = 0
        self._kinds: dict[str, int] = {}
        self._rows: dict[str, int] = {}  # account id: row, for the accounts asked about
        measures = [MEASURE_CODES[u.measure] for u in state.units.units]
        self._measures = np.array(measures, dtype=np.int64)
        self._load()

    def __len__(self) -> int:
        """How many reservations are open."""
        return len(self._open)

    def get(self, reservation_id: str) -> Reservation:
        """An open or recently finished reservation."""
        found = self._open.get(reservation_id) or self._finished.get(reservation_id)
        if found is None:
            raise self._unknown(reservation_id)
        return found

    # -- authorize -------------------------------------------------------------------
    def authorize(
        self, account_id: str, *, category: str, destination: str, requested: int,
        start: datetime, tenant: str = "", subject: str = "", session: str = "",
    ) -> Grant:  # fmt: skip
        """Grant and reserve up to ``requested`` units (see the module docstring)."""
        request = AuthorizeRequest(
            account=account_id, category=category, destination=destination, requested=requested,
            start=start, tenant=tenant, subject=subject, session=session,
        )  # fmt: skip
        return self.authorize_many([request])[0]

    def authorize_many(self, requests: Sequence[AuthorizeRequest]) -> list[Grant]:
        """One grant per request, served in order: one rating and one kernel call."""
        return authorize_together([(self, requests)])[0]

    def _check(self, requests: Sequence[AuthorizeRequest]) -> None:
        for q in requests:
            if q.requested <= 0:
                msg = f"authorize {q.account!r}: requested usage {q.requested} is not positive"
                raise ReservationError(msg)

    def _asked(self, requests: Sequence[AuthorizeRequest]) -> _Asked:
        """The requests' account rows and what the rating reads, as lists."""
        state, row_of = self._ledger.state, self._rows
        missing = [q.account for q in requests if q.account not in row_of]
        if missing:  # an account's row never changes: only new names are looked up
            found = state.account_rows(StrColumn.from_strings(missing)).tolist()
            row_of.update((a, row) for a, row in zip(missing, found, strict=True) if row >= 0)
        listed = [row_of.get(q.account, -1) for q in requests]
        rows = np.array(listed, dtype=np.int64)
        tenants, subjects, kinds, starts = [], [], [], []
        for q, row in zip(requests, listed, strict=True):
            tenants.append(q.tenant or (state.accounts[row].tenant if row >= 0 else ""))
            subjects.append(q.subject or q.account)
            kinds.append(self._kind(q.category))
            starts.append(micros(q.start, 0))
        return _Asked(rows, tenants, subjects, kinds, starts)

    def _grants(
        self, requests: Sequence[AuthorizeRequest], asked: _Asked, batch: _Rated, lo: int
    ) -> list[Grant]:
        """Grant and reserve for this ledger's requests, records ``lo …`` of the rated batch.

        The batch may hold other ledgers' records too: they are refused here (row -1).
        """
        columns, rated, now = batch.columns, batch.rated, self._clock()
        self.expire(now)
        # per record as lists: for an API cycle's few records, cheaper than numpy's fixed costs
        n = len(columns)
        known = [-1] * lo + asked.rows.tolist()
        known += [-1] * (n - len(known))
        skips, slow = [], []
        for i, (row, error, volume) in enumerate(
            zip(known, rated.error.tolist(), batch.volume.tolist(), strict=True)
        ):
            if row < 0 or error:
                skips.append(_REFUSED)
            elif volume:
                skips.append(_DEFERRED)
                slow.append(i)
            else:
                skips.append(0)
        rows = np.array(known, dtype=np.int64)
        skip = np.array(skips, dtype=np.int64)
        out = self._reserve(columns, rated, rows, skip, batch.shared)
        granted, short, ptr, held, amounts = (a.tolist() for a in out)
        searched = {i: self._search(columns, i, rows[i : i + 1]) for i in slow}
        expires = now + self._ttl
        names = self._ledger.state.balance_ids
        grants = []
        for i, q in enumerate(requests, start=lo):
            g, s, b_rows, b_amounts = (
                searched[i] if searched and i in searched
                else (granted[i], short[i], held[ptr[i] : ptr[i + 1]], amounts[ptr[i] : ptr[i + 1]])
            )  # fmt: skip
            if g == 0:
                reason = (
                    UNKNOWN_ACCOUNT if known[i] < 0 else rated.error_code(i) or INSUFFICIENT_CREDIT
                )
                grants.append(Grant(reservation_id="", granted=0, reserved={}, expires_at=0.0,
                                    reason=reason))  # fmt: skip
                continue
            k = i - lo
            self._seq += 1
            held_now = Reservation(
                id=f"{q.account}~{self._prefix}-{self._seq}", account=q.account,
                tenant=asked.tenants[k], category=q.category, subject=asked.subjects[k],
                destination=q.destination,
                kind=asked.kinds[k], start_us=asked.starts[k], session=q.session,
                requested=q.requested, granted=g, rows=tuple(b_rows), amounts=tuple(b_amounts),
                expires_at=expires,
            )  # fmt: skip
            self._keep_open(held_now)
            reserved = {names[b]: v for b, v in zip(b_rows, b_amounts, strict=True)}
            reason = INSUFFICIENT_CREDIT if s else ""
            grants.append(Grant(reservation_id=held_now.id, granted=g, reserved=reserved,
                                expires_at=expires, reason=reason))  # fmt: skip
        return grants

    def _kind(self, category: str) -> int:
        """The record kind of a category, by the rule ``ratewire cost`` uses."""
        kind = self._kinds.get(category)
        if kind is None:
            probe = one_record(tenant="", category=category, subject="", destination="",
                               start=datetime.now(UTC), usage=0, time_based=False)  # fmt: skip
            kind = self._kinds[category] = int(probe.kind[0])
        return kind

    def _kernel_args(
        self, columns: Columns, rated: RatedBatch, rows: I64, skip: I64, shared: _Shared | None
    ) -> _Args:  # fmt: skip
        """The kernels' leading arguments (see the comment above them)."""
        self._debitor.refresh()  # filters added since the debitor last debited
        d = self._debitor
        shared = shared or _shared(columns, rated, self._rater)
        rec = shared.rec.copy()  # this ledger's columns: account row, skip, category code
        rec[:, 0], rec[:, 1] = np.maximum(rows, 0), skip
        rec[:, 5] = d.category_codes(columns.category)
        a, b = self._ledger.state.acc.arrays, self._ledger.state.bal.arrays
        acc = (a["mode"], a["limit"], a["head"], a["main"])
        bal = (b["unit"], b["from"], b["until"], b["filter"], b["amount"], b["reserved"], b["next"])
        filt = (d.f_cat, d.f_kind, d.f_dest)
        return (rec, rated.span_start, shared.sp, shared.money, acc, bal, filt, self._measures,
                d.currency, d.currency_decimals)  # fmt: skip

    def _reserve(
        self, columns: Columns, rated: RatedBatch, rows: I64, skip: I64,
        shared: _Shared | None = None,
    ) -> tuple[I64, ...]:  # fmt: skip
        """Run the authorize kernel: granted, short, and the holds as a CSR (ptr, row, amount)."""
        n = len(columns)
        size = int(self._ledger.state.acc.arrays["count"][np.maximum(rows, 0)].sum()) + n
        granted, short, ptr = (
            np.empty(n, np.int64),
            np.empty(n, np.int64),
            np.empty(n + 1, np.int64),
        )
        held, amount = np.empty(size, np.int64), np.empty(size, np.int64)
        args = self._kernel_args(columns, rated, rows, skip, shared)
        authorize_kernel(*args, granted, short, ptr, held, amount)
        return granted, short, ptr, held[: ptr[n]], amount[: ptr[n]]

    def _search(self, columns: Columns, i: int, row: I64) -> tuple[int, int, list[int], list[int]]:
        """Slow path for request ``i``: binary search over usage, rating each candidate."""
        requested = int(columns.usage[i])
        price, budget, clear = np.empty(1, np.int64), np.empty(1, np.int64), np.zeros(1, np.int64)
        lo, hi = 0, requested + 1  # the price of lo is payable, of hi not (or hi is too much)
        while hi - lo > 1:
            mid = (lo + hi) // 2
            one = _one(columns, i, mid)
            rated = self._rater.rate(one)
            quote_kernel(*self._kernel_args(one, rated, row, clear, None), price, budget)
            lo, hi = (mid, hi) if rated.error[0] == 0 and price[0] <= budget[0] else (lo, mid)
        if lo == 0:
            return 0, 1, [], []
        one = _one(columns, i, lo)
        granted, _, _, held, amount = self._reserve(one, self._rater.rate(one), row, clear)
        return int(granted[0]), int(lo < requested), held.tolist(), amount.tolist()

    def _keep_open(self, reservation: Reservation) -> None:
        self._open[reservation.id] = reservation
        heapq.heappush(self._deadlines, (reservation.expires_at, reservation.id))
        self._ledger.put(_PREFIX + reservation.id.encode(), _ENC.encode(reservation))

    # -- commit ----------------------------------------------------------------------
    def commit(self, reservation_id: str, actual: int, *, op_id: str = "") -> Charge:
        """Charge ``actual`` usage and free the rest of the reservation (module docstring)."""
        result = self.commit_many([CommitRequest(reservation_id, actual, op_id)])[0]
        if isinstance(result, BalanceError):
            raise result
        return result

    def commit_many(self, requests: Sequence[CommitRequest]) -> list[Charge | BalanceError]:
        """Commit each request; one that cannot be committed gets its error instead.

        Commits of one account are debited in batch order, each right after its own
        reservation is freed: round ``k`` holds every account's ``k``-th commit, and each
        round is one rating and one debit.
        """
        now = self._clock()
        answers: list[Charge | BalanceError | None] = [None] * len(requests)
        rounds: list[list[tuple[int, Reservation, CommitRequest]]] = []
        depth: dict[str, int] = {}  # commits of each account so far
        first: dict[str, int] = {}  # reservation id -> its first request in the batch
        for i, q in enumerate(requests):
            if q.reservation_id in first:
                continue  # gets the first request's answer
            first[q.reservation_id] = i
            found = self._precheck(q, now)
            if not isinstance(found, Reservation):
                answers[i] = found
                continue
            level = depth[found.account] = depth.get(found.account, -1) + 1
            if level == len(rounds):
                rounds.append([])
            rounds[level].append((i, found, q))
        for batch in rounds:
            for i, charge in self._settle(batch, now):
                answers[i] = charge
        # every reservation's first request has its answer; a repeat gets the same
        return [cast(Charge | BalanceError, answers[first[q.reservation_id]]) for q in requests]

    def _precheck(self, q: CommitRequest, now: float) -> Reservation | Charge | BalanceError:
        """The open reservation to commit, or the answer without committing."""
        rid = q.reservation_id
        if q.actual < 0:
            msg = f"commit {rid!r}: actual usage {q.actual} is negative"
            return ReservationError(msg)
        before = self._replayed(q) if q.op_id else None
        if before is not None:
            return before
        found = self._open.get(rid)
        if found is not None and found.expires_at <= now:
            self._expire_one(found, now)
            found = None
        if found is not None:
            return found
        done = self._finished.get(rid)
        if done is None:
            return self._unknown(rid)
        return done.charge if done.charge is not None else self._gone(done)

    def _replayed(self, q: CommitRequest) -> Charge | OperationConflictError | None:
        """The first charge of a commit retried under its ``op_id``, as the ledger keeps it."""
        before = self._ledger.done(q.op_id)
        if before is None:
            return None
        key = [q.reservation_id]
        if isinstance(before, dict) and before.get("op") == "commit" and before["key"] == key:
            return msgspec.convert(before["charge"], Charge)
        msg = f"op_id {q.op_id!r} was used for another operation, not commit {key}; give every"
        msg += " operation its own op_id and reuse one only to retry the same operation"
        return OperationConflictError(msg)

    def _settle(
        self, batch: list[tuple[int, Reservation, CommitRequest]], now: float
    ) -> list[tuple[int, Charge]]:
        """Free the batch's reservations (one per account), then debit their actual usage."""
        held = [res for _, res, _ in batch]
        rows = [row for res in held for row in res.rows]
        if rows:
            amounts = np.array([v for res in held for v in res.amounts], dtype=np.int64)
            reserved = self._ledger.state.bal.arrays["reserved"]
            np.subtract.at(reserved, np.array(rows, dtype=np.int64), amounts)
        columns = _commit_columns(held, [q.actual for *_, q in batch])
        rated = self._rater.rate(columns)
        debit = self._ledger.debit(self._debitor, columns, rated)
        covered, due, paid, flags = (a.tolist() for a in (debit.covered, debit.due, debit.paid,
                                                          debit.flags))  # fmt: skip
        settled = []
        for j, (i, res, q) in enumerate(batch):
            charge = Charge(
                reservation_id=res.id, account=res.account, granted=res.granted, actual=q.actual,
                covered=covered[j], due=due[j], paid=paid[j],
                reason=_charge_reason(flags[j], rated, j),
            )  # fmt: skip
            self._finish(res, COMMITTED, now, charge)
            if q.op_id:
                first = {"op": "commit", "key": [res.id], "charge": msgspec.to_builtins(charge)}
                self._ledger.record_op(q.op_id, first)
            settled.append((i, charge))
        return settled

    # -- release and expiry ----------------------------------------------------------
    def release(self, reservation_id: str) -> Release:
        """Free everything a reservation holds; it can no longer be committed."""
        found = self._open.get(reservation_id)
        if found is None:
            done = self._finished.get(reservation_id)
            raise self._unknown(reservation_id) if done is None else self._gone(done)
        return self._release(found, RELEASED, self._clock())

    def expire(self, now: float | None = None) -> list[Release]:
        """Release every reservation whose ``expires_at`` is not after ``now`` (default: the
        clock), and forget finished ones older than ``keep_seconds``."""
        at = self._clock() if now is None else now
        released = []
        heap = self._deadlines
        while heap and heap[0][0] <= at:
            _, rid = heapq.heappop(heap)
            found = self._open.get(rid)
            if found is not None:
                released.append(self._expire_one(found, at))
                continue
            done = self._finished.get(rid)
            if done is None:
                continue
            if done.finished_at + self._keep <= at:
                del self._finished[rid]
                self._ledger.delete(_PREFIX + rid.encode())
            else:
                heapq.heappush(heap, (done.finished_at + self._keep, rid))
        return released

    def _expire_one(self, reservation: Reservation, now: float) -> Release:
        release = self._release(reservation, EXPIRED, now)
        heapq.heappush(self._deadlines, (now + self._keep, reservation.id))
        return release

    def _release(self, reservation: Reservation, status: str, now: float) -> Release:
        reserved = self._ledger.state.bal.arrays["reserved"]
        names = self._ledger.state.balance_ids
        for row, amount in zip(reservation.rows, reservation.amounts, strict=True):
            reserved[row] -= amount
        self._finish(reservation, status, now)
        freed = {names[b]: v for b, v in zip(reservation.rows, reservation.amounts, strict=True)}
        return Release(reservation_id=reservation.id, account=reservation.account, freed=freed,
                       status=status)  # fmt: skip

    def _finish(
        self, reservation: Reservation, status: str, now: float, charge: Charge | None = None
    ) -> None:
        done = msgspec.structs.replace(reservation, status=status, finished_at=now, charge=charge)
        del self._open[reservation.id]
        self._finished[reservation.id] = done
        self._ledger.put(_PREFIX + reservation.id.encode(), _ENC.encode(done))

    # -- errors and loading ----------------------------------------------------------
    def _unknown(self, rid: str) -> UnknownReservationError:
        msg = f"reservation {rid!r} is unknown: never granted by this ledger, or finished"
        msg += f" more than {self._keep:g} s ago"
        return UnknownReservationError(msg)

    @staticmethod
    def _gone(done: Reservation) -> ReservationFinishedError:
        msg = f"reservation {done.id!r} of account {done.account!r} was {done.status} at"
        msg += f" {done.finished_at:.3f} and holds nothing any more"
        if done.status == EXPIRED:
            msg += ": rate its usage as a CDR"
        return ReservationFinishedError(msg)

    def _load(self) -> None:
        """Restore reservations kept in the store, and the amounts open ones hold."""
        reserved = self._ledger.state.bal.arrays["reserved"]
        for _, raw in self._ledger.store.scan(_PREFIX):
            res = _DEC.decode(raw)
            if res.status == OPEN:
                np.add.at(reserved, np.array(res.rows, dtype=np.int64), res.amounts)
                self._open[res.id] = res
                heapq.heappush(self._deadlines, (res.expires_at, res.id))
            else:
                self._finished[res.id] = res
                heapq.heappush(self._deadlines, (res.finished_at + self._keep, res.id))


def _one(columns: Columns, i: int, usage: int) -> Columns:
    """Row ``i`` of a request batch, asking for ``usage``."""

    def pick(column: StrColumn) -> StrColumn:
        return StrColumn.from_strings([column[i]])

    return Columns(
        kind=columns.kind[i : i + 1], cdr_id=_NO_IDS, tenant=pick(columns.tenant),
        account=pick(columns.account), category=pick(columns.category),
        subject=pick(columns.subject), destination=pick(columns.destination),
        start_us=columns.start_us[i : i + 1], usage=np.array([usage], dtype=np.int64),
    )  # fmt: skip


def _commit_columns(held: list[Reservation], actual: list[int]) -> Columns:
    """Reservations as a batch of records of ``actual`` usage, the reservation id as cdr_id."""

    def col(values: list[str]) -> StrColumn:
        return StrColumn.from_strings(values)

    return Columns(
        kind=np.array([r.kind for r in held], dtype=np.uint8), cdr_id=col([r.id for r in held]),
        tenant=col([r.tenant for r in held]), account=col([r.account for r in held]),
        category=col([r.category for r in held]), subject=col([r.subject for r in held]),
        destination=col([r.destination for r in held]),
        start_us=np.array([r.start_us for r in held], dtype=np.int64),
        usage=np.array(actual, dtype=np.int64),
    )  # fmt: skip


def _table(*columns: np.ndarray[Any, Any]) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Columns side by side as one C-contiguous int64 table (rows: records or spans)."""
    table = np.empty((len(columns[0]), len(columns)), dtype=np.int64)
    for j, column in enumerate(columns):
        table[:, j] = column
    return table


def _charge_reason(flags: int, rated: RatedBatch, j: int) -> str:
    if flags == 0:
        return ""
    if flags & bk.FLAG_UNKNOWN_ACCOUNT:
        return UNKNOWN_ACCOUNT
    if flags & bk.FLAG_NOT_RATED:
        return rated.error_code(j) or NOT_RATED
    if flags & bk.FLAG_DUPLICATE:
        return DUPLICATE
    if flags & bk.FLAG_INSUFFICIENT_CREDIT:
        return INSUFFICIENT_CREDIT
    return ""


__all__ = [
    "INSUFFICIENT_CREDIT",
    "UNKNOWN_ACCOUNT",
    "AuthorizeRequest",
    "Charge",
    "CommitRequest",
    "Grant",
    "Release",
    "Reservation",
    "Reservations",
]
