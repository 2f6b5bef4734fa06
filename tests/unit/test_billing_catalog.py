"""The product catalog: the sample loads as documented, and bad files name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from billing.catalog import SAMPLE_CATALOG, Period, Timing, load_catalog, loads_catalog
from billing.exceptions import CatalogError
from tariffs.native import load_native

TARIFF = Path(__file__).parents[2] / "tariffs" / "samples" / "mobile.toml"
EUR = 10**9

GOOD = """
[catalog]
name = "minimal"

[currencies]
EUR = 2

[one_time.ACT]
description = "Activation"
amount = "9.99"
currency = "EUR"

[products.P]
name = "Plan"
currency = "EUR"
on_subscribe = ["ACT"]

[products.P.recurring.P_M]
amount = "30.00"
period = "monthly"
timing = "advance"

[products.P.allowances.P_MIN]
unit = "voice_seconds"
amount = "500m"
categories = ["call"]

[promotions.HALF]
description = "half"
percent = "50"
products = ["P"]

[taxes]
DE = { VAT = "19" }
"""


def test_the_sample_catalog() -> None:
    catalog = load_catalog()
    assert catalog.source == str(SAMPLE_CATALOG)
    assert catalog.decimals == {"EUR": 2, "USD": 2, "XOF": 0}
    assert (catalog.minor_decimals("EUR"), catalog.minor_decimals("XOF")) == (2, 0)
    assert (catalog.step("EUR"), catalog.step("XOF")) == (10**7, 10**9)
    assert set(catalog.products) == {
        "GO_PREPAID",
        "MOBILE_M",
        "MOBILE_L",
        "BUSINESS_PRO",
        "ROAMING_YEAR",
        "VIDEO_DAY_PASS",
        "SN_JAMONO",
    }
    (monthly,) = catalog.products["MOBILE_M"].recurring
    assert (monthly.id, monthly.amount, monthly.period, monthly.timing, monthly.text) == (
        "M_MONTHLY",
        20 * EUR,
        Period.MONTHLY,
        Timing.ADVANCE,
        "20.00 EUR",
    )
    assert catalog.fees["ROAM_YEARLY"].period is Period.YEARLY
    assert catalog.fees["VIDEO_DAILY"].amount == 990_000_000
    assert catalog.fees["JAMONO_WEEKLY"].text == "1500 XOF"
    assert [(a.unit, a.amount) for a in catalog.products["MOBILE_M"].allowances] == [
        ("voice_seconds", 30_000),  # 500 minutes
        ("data_bytes", 10_000_000_000),  # 10 GB
        ("sms", 100),
    ]
    assert catalog.products["BUSINESS_PRO"].commitment == 50 * EUR
    assert catalog.products["MOBILE_M"].on_subscribe == ("ACTIVATION",)
    assert not catalog.one_time["DEPOSIT"].taxable
    welcome = catalog.promotions[0]
    assert (welcome.id, welcome.percent, welcome.cycles) == ("WELCOME50", 50 * EUR, 3)
    loyalty = catalog.promotions[1]
    assert (loyalty.amount, loyalty.currency, loyalty.segments) == (
        5 * EUR,
        "EUR",
        frozenset({"business"}),
    )
    assert [(r.name, r.percent) for r in catalog.taxes["US-TX"]] == [
        ("State sales tax", 6_250_000_000),
        ("Local sales tax", 2 * EUR),
    ]
    assert catalog.taxes["CH"][0].percent == 8_100_000_000


def test_sample_allowances_pay_for_the_tariffs_categories() -> None:
    categories = {profile.category for profile in load_native(TARIFF).profiles}
    assert categories == {"call", "sms", "data", "video"}
    used = {
        category
        for product in load_catalog().products.values()
        for allowance in product.allowances
        for category in allowance.categories
    }
    assert used == categories


def test_unknown_currency_is_named() -> None:
    with pytest.raises(CatalogError, match="currency 'GBP' is not in"):
        load_catalog().minor_decimals("GBP")


def test_a_minimal_catalog_loads_from_text() -> None:
    catalog = loads_catalog(GOOD)
    assert catalog.fees["P_M"].amount == 30 * EUR
    assert catalog.promoted == frozenset({"P"})


def _replace(old: str, new: str) -> str:
    assert old in GOOD
    return GOOD.replace(old, new)


BAD = {
    "unknown key": (
        _replace('amount = "30.00"', 'amout = "30.00"'),
        "products.P.recurring.P_M: Object contains unknown field `amout`",
    ),
    "negative fee": (
        _replace('amount = "30.00"', 'amount = "-30.00"'),
        "products.P.recurring.P_M.amount: '-30.00' is negative",
    ),
    "float fee": (
        _replace('amount = "30.00"', "amount = 30.00"),
        "products.P.recurring.P_M.amount: 30.0 is a TOML float",
    ),
    "too many decimals": (
        _replace('amount = "30.00"', 'amount = "0.0000000001"'),
        "products.P.recurring.P_M.amount: '0.0000000001' has more than 9 decimals",
    ),
    "not a number": (
        _replace('amount = "30.00"', 'amount = "thirty"'),
        "products.P.recurring.P_M.amount: 'thirty' is not a decimal amount",
    ),
    "bad period": (
        _replace('period = "monthly"', 'period = "fortnightly"'),
        "products.P.recurring.P_M.period: Invalid enum value 'fortnightly'",
    ),
    "bad timing": (
        _replace('timing = "advance"', 'timing = "later"'),
        "products.P.recurring.P_M.timing: Invalid enum value 'later'",
    ),
    "unknown unit": (
        _replace('unit = "voice_seconds"', 'unit = "minutes"'),
        "products.P.allowances.P_MIN.unit: unknown unit 'minutes'",
    ),
    "bad allowance amount": (
        _replace('amount = "500m"', 'amount = "lots"'),
        "products.P.allowances.P_MIN.amount: 'lots' is not a usage quantity",
    ),
    "zero allowance": (
        _replace('amount = "500m"', "amount = 0"),
        "products.P.allowances.P_MIN.amount: must be more than 0",
    ),
    "unknown currency": (
        _replace('currency = "EUR"\non_subscribe', 'currency = "GBP"\non_subscribe'),
        "products.P.currency: currency 'GBP' is not in [currencies]",
    ),
    "currency that is no money unit": (
        _replace("EUR = 2", "EUR = 2\nsms = 0"),
        "currencies.sms: unit 'sms' is not money",
    ),
    "bad minor decimals": (
        _replace("EUR = 2", "EUR = 12"),
        "currencies.EUR: minor decimals must be an integer 0..9",
    ),
    "unknown one-time fee": (
        _replace('on_subscribe = ["ACT"]', 'on_subscribe = ["SIM"]'),
        "products.P.on_subscribe: 'SIM' is not in [one_time]",
    ),
    "fee id twice": (
        _replace("[products.P.recurring.P_M]", "[products.P.recurring.ACT]"),
        "products.P.recurring.ACT: fee id 'ACT' is used twice",
    ),
    "percent and amount": (
        _replace('percent = "50"', 'percent = "50"\namount = "5.00"'),
        "promotions.HALF: give exactly one of percent",
    ),
    "percent over 100": (
        _replace('percent = "50"', 'percent = "150"'),
        "promotions.HALF.percent: '150' is more than 100 percent",
    ),
    "promotion of an unknown product": (
        _replace('products = ["P"]', 'products = ["Q"]'),
        "promotions.HALF.products: 'Q' is not in [products]",
    ),
    "promotion dates": (
        _replace('products = ["P"]', 'products = ["P"]\nvalid_from = "2026-13-01"'),
        "promotions.HALF.valid_from: '2026-13-01' is not an ISO date",
    ),
    "tax rate as float": (
        _replace('VAT = "19"', "VAT = 19.0"),
        "taxes.DE.VAT: 19.0 is a TOML float",
    ),
    "unknown table": (GOOD + "\n[discounts]\n", "Object contains unknown field `discounts`"),
    "no header": (
        GOOD.replace('[catalog]\nname = "minimal"\n', ""),
        "Object missing required field `catalog`",
    ),
    "not TOML": ("[catalog\n", "not a TOML catalog"),
}


@pytest.mark.parametrize(("text", "message"), BAD.values(), ids=BAD.keys())
def test_bad_catalog_files_name_the_file_and_key(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "catalog.toml"
    path.write_text(text)
    with pytest.raises(CatalogError) as caught:
        load_catalog(path)
    assert str(caught.value).startswith(f"{path}: ")
    assert message in str(caught.value)


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(CatalogError, match="cannot read the catalog"):
        load_catalog(tmp_path / "nope.toml")
