"""Accounts that match generated traffic: the ids, plans and balances a scenario rates against.

The demo, the worker's tests and the load tester create these so that a run
rates cleanly against the sample plan: ``acc0000000`` … with every third
account postpaid (credit limit 50 EUR), each with 30 free national minutes,
1 GB of data and 5 EUR of credit.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from balances.model import Account, Balance, Filter, Mode
from loadtest.generator import TENANT, Scenario

EUR = 1_000_000_000  # amount units of EUR (nanos)
NATIONAL = Filter(destinations=("GERMANY", "DE_MOBILE"))


def account_id(number: int) -> str:
    return f"acc{number:07d}"


def scenario_accounts(scenario: Scenario) -> tuple[list[Account], list[list[Balance]]]:
    """The scenario's accounts and each one's opening balances."""
    created: datetime = scenario.day - timedelta(days=1)
    accounts = [
        Account(id=account_id(i), tenant=TENANT, currency="EUR", created=created,
                mode=Mode.POSTPAID if i % 3 == 0 else Mode.PREPAID, credit_limit=50 * EUR)
        for i in range(scenario.accounts)
    ]  # fmt: skip
    balances = [
        [Balance(id="free-minutes", unit="voice_seconds", amount=1800, weight=10, filter=NATIONAL),
         Balance(id="data", unit="data_bytes", amount=1_000_000_000, weight=10),
         Balance(id="credit", unit="EUR", amount=5 * EUR, weight=5)]
        for _ in accounts
    ]  # fmt: skip
    return accounts, balances
