"""Accounts that match generated traffic: the ids, modes and balances a scenario rates against.

The demo, the worker's tests and the load tester create these so that a run
rates cleanly against the sample plan. Accounts are ``acc0000000`` … (the
generator's account numbers; the lowest are the busiest), created the day
before the scenario's day. Each takes a mode plan of the scenario
(:class:`~loadtest.scenario.ModePlan`: mode, credit limit, opening balances)
in a fixed interleaving that holds each plan's share exactly over every run
of accounts as long as the shares' common denominator (1/3 postpaid and 2/3
prepaid: every third account from the first is postpaid). ``Scenario()``
gives the historical set: every third account postpaid, all with a 50 EUR
credit limit, 30 free national minutes, 1 GB of data and 5 EUR of credit.
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from fractions import Fraction

from balances.model import Account, Balance
from loadtest.scenario import EUR, NATIONAL, ModePlan, Scenario

__all__ = ["EUR", "NATIONAL", "account_id", "mode_plans", "scenario_accounts"]


def account_id(number: int) -> str:
    return f"acc{number:07d}"


def mode_plans(modes: tuple[ModePlan, ...], n: int) -> list[int]:
    """The index in ``modes`` of each of ``n`` accounts' plan.

    Account ``i`` takes the first plan (in the scenario's order) whose quota
    ``ceil((i + 1) * share)`` it has not reached, with exact fractions, so
    the pattern repeats every common denominator of the shares.
    """
    shares = [Fraction(m.share).limit_denominator(10_000) for m in modes]
    total = sum(shares, Fraction(0))
    period = math.lcm(*((f / total).denominator for f in shares))
    quota = [int(f / total * period) for f in shares]
    have = [0] * len(modes)
    pattern: list[int] = []
    for i in range(min(n, period)):
        m = next(m for m, q in enumerate(quota) if -(-(i + 1) * q // period) > have[m])
        have[m] += 1
        pattern.append(m)
    return (pattern * -(-n // len(pattern)))[:n] if pattern else []


def scenario_accounts(scenario: Scenario) -> tuple[list[Account], list[list[Balance]]]:
    """The scenario's accounts and each one's opening balances."""
    created: datetime = scenario.day - timedelta(days=1)
    plans = [scenario.modes[m] for m in mode_plans(scenario.modes, scenario.accounts)]
    accounts = [
        Account(id=account_id(i), tenant=scenario.tenant, currency=scenario.currency,
                created=created, mode=plan.mode, credit_limit=plan.credit_limit)
        for i, plan in enumerate(plans)
    ]  # fmt: skip
    return accounts, [list(plan.balances) for plan in plans]
