"""Invoice documents: exact text, languages, brands, escaping; and the outbox that sends them."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import msgspec
import pytest
from msgspec.structs import replace

from balances.store import MemoryStore
from billing.exceptions import BillingError, InvoiceStateError
from billing.invoices import InvoiceStore
from billing.model import BalanceConsumed, Invoice, InvoiceLine, InvoiceStatus, LineKind
from billing.outbox import NOTIFICATIONS, send
from billing.render import Formats, Renderer, pdf_available
from engine.exceptions import BrokerError
from tests.unit.test_billing_invoices import Clock, draft

E = 10**9


def known(**changes: object) -> Invoice:
    """An issued invoice with one line of each common kind; its totals add up."""
    lines = [
        InvoiceLine(kind=LineKind.USAGE, description="call usage, national", amount=12_350_000_000,
                    currency="EUR", quantity=42, unit="records", usage=3723, category="call",
                    zone="national", rule="sum of 42 rated records (12.3456 EUR), rounded half-even"
                    " to 0.01"),
        InvoiceLine(kind=LineKind.LATE_USAGE, description="sms usage, national (late)",
                    amount=190_000_000, currency="EUR", quantity=2, unit="records", usage=2,
                    category="sms", zone="national", late_from="2026-10"),
        InvoiceLine(kind=LineKind.RECURRING, description="Mobile M", amount=20 * E, currency="EUR",
                    quantity=1, unit="months", period_start="2026-12-01", period_end="2027-01-01",
                    rule="monthly fee, in advance"),
        InvoiceLine(kind=LineKind.PRORATION, description="Mobile S, unused days", amount=-5 * E,
                    currency="EUR", quantity=15, unit="days", period_start="2026-11-16",
                    period_end="2026-12-01", rule="credit 15/30 days of 10.00, rounded half-even"
                    " to 0.01"),
        InvoiceLine(kind=LineKind.TAX, description="VAT 19%", amount=5_230_000_000, currency="EUR",
                    rule="19% of 27.54, rounded half-even to 0.01"),
    ]  # fmt: skip
    inv = Invoice(
        invoice_id="2026-11/acc-1", account="acc-1", cycle="2026-11", issuer="", currency="EUR",
        period_start="2026-11-01", period_end="2026-12-01", status=InvoiceStatus.ISSUED,
        number="RW-2026-000001", issued_day="2026-12-01", due_day="2026-12-15", lines=lines,
        subtotal=27_540_000_000, tax=5_230_000_000, total=32_770_000_000,
        previous_balance=1_234_500_000_000, payments=1_234_500_000_000,
        amount_due=32_770_000_000,
        balances_consumed=[BalanceConsumed("minutes-500", "seconds", 1800)],
    )  # fmt: skip
    return replace(inv, **changes)


KNOWN_TEXT = """\
Ratewire Telecom
Ratewire Telecom GmbH · Netzstraße 1 · 10115 Berlin · VAT DE 123 456 789
========================================================================
Invoice RW-2026-000001

Account: acc-1                                        Issued: 2026-12-01
Period: 2026-11-01 – 2026-11-30                          Due: 2026-12-15
Bill cycle: 2026-11                                        Currency: EUR

Usage                                                         12.35 EUR
------------------------------------------------------------------------
  Calls · national                                            12.35 EUR
    42 records, 1:02:03
    sum of 42 rated records (12.3456 EUR), rounded half-even to 0.01

Late usage from earlier cycles                                 0.19 EUR
------------------------------------------------------------------------
  Messages · national [late usage from cycle 2026-10]          0.19 EUR
    2 records, 2 messages

Recurring fees                                                20.00 EUR
------------------------------------------------------------------------
  Mobile M                                                    20.00 EUR
    1 months, 2026-12-01 – 2026-12-31
    monthly fee, in advance

Adjustments for part periods                                  -5.00 EUR
------------------------------------------------------------------------
  Mobile S, unused days                                       -5.00 EUR
    15 days, 2026-11-16 – 2026-11-30
    credit 15/30 days of 10.00, rounded half-even to 0.01

Taxes                                                          5.23 EUR
------------------------------------------------------------------------
  VAT 19%                                                      5.23 EUR
    19% of 27.54, rounded half-even to 0.01
========================================================================
Subtotal                                                      27.54 EUR
Tax                                                            5.23 EUR
Total                                                         32.77 EUR
Previous balance                                           1,234.50 EUR
Payments received                                         -1,234.50 EUR
Amount due                                                    32.77 EUR
========================================================================

Balances used this period
  minutes-500                                              1,800 seconds

Please pay the amount due by 2026-12-15: 32.77 EUR.
Questions about this invoice? Quote its number.
"""


@pytest.fixture(scope="module")
def renderer() -> Renderer:
    return Renderer()


def test_plain_text_of_a_known_invoice(renderer: Renderer) -> None:
    assert renderer.render(known(), "txt") == KNOWN_TEXT


def row(left: str, right: str, end: int = 71) -> str:
    """A plain-text line with ``right`` ending at column ``end`` (amounts: 71, then a mark
    column for "*" paid from balance; the heading lines: 72)."""
    return f"{left}{right:>{end - len(left)}}"


def test_german_invoice_words_numbers_and_dates(renderer: Renderer) -> None:
    text = renderer.render(known(language="de"), "txt").splitlines()
    assert text[3] == "Rechnung RW-2026-000001"
    assert text[5] == row("Kundenkonto: acc-1", "Rechnungsdatum: 01.12.2026", 72)
    assert text[6] == row("Leistungszeitraum: 01.11.2026 – 30.11.2026", "Fällig am: 15.12.2026", 72)
    assert row("  Anrufe · national", "12,35 EUR") in text
    assert "    42 Verbindungen, 1:02:03" in text
    assert row("Offener Betrag aus Vorrechnung", "1.234,50 EUR") in text
    assert row("Zu zahlender Betrag", "32,77 EUR") in text
    assert text[-2] == "Bitte zahlen Sie den Betrag bis zum 15.12.2026: 32,77 EUR."
    html = renderer.render(known(language="de"), "html")
    assert '<html lang="de">' in html
    assert "<h1>Rechnung RW-2026-000001</h1>" in html


def test_brand_is_chosen_from_brand_then_reseller_with_default_fallback(
    renderer: Renderer,
) -> None:
    first = [
        renderer.render(known(**c), "txt").splitlines()[0]
        for c in (
            {},
            {"brand": "mvno-blue"},
            {"reseller": "mvno-blue", "issuer": "mvno-blue"},
            {"issuer": "acme"},
            {"brand": "../../etc"},
        )
    ]
    assert first == ["Ratewire Telecom", "*** BLUE MOBILE ***", "*** BLUE MOBILE ***", "acme",
                     "Ratewire Telecom"]  # fmt: skip
    html = renderer.render(known(brand="mvno-blue"), "html")
    assert (
        '<div class="name" style="font-size:20pt;font-weight:bold;letter-spacing:1px">Blue' in html
    )
    # a brand without German templates still speaks German through default/de
    assert "Rechnung RW-2026-000001" in renderer.render(known(brand="mvno-blue", language="de"))


def test_html_escapes_hostile_names_but_text_keeps_them(renderer: Renderer) -> None:
    hostile = "<script>alert('x')</script>&co"
    inv = known(account=hostile, lines=[replace(known().lines[2], description=hostile)])
    html = renderer.render(inv, "html")
    assert "<script>" not in html
    assert "<td>&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&amp;co</td>" in html
    assert f"Account: {hostile}" in renderer.render(inv, "txt")


def test_credit_note_text(renderer: Renderer) -> None:
    store = InvoiceStore(MemoryStore(), clock=Clock())
    store.put_drafts([draft("acc-1")], "run")
    (original,) = store.issue(["2026-11/acc-1"], "clerk", "2026-12-01")
    credit = store.cancel("2026-11/acc-1", "clerk", "wrong tariff", day="2026-12-05")
    text = renderer.render(credit, "txt", original=original).splitlines()
    assert text[3:6] == [
        "Credit note RW-2026-000002",
        "This credit note cancels invoice RW-2026-000001 (2026-12-01).",
        "Reason: wrong tariff",
    ]
    assert text[8] == "Period: 2026-11-01 – 2026-11-30"  # a credit note has no due day
    assert row("Total", "-11.90 EUR") in text
    assert row("Credited to your account", "11.90 EUR") in text
    assert not any(line.startswith("Amount due") for line in text)


def test_money_uses_each_currencys_minor_decimals() -> None:
    labels = Renderer().environment("default", "en")[1]
    formats = Formats(labels, Renderer(decimals={"XTS": 4}).decimals, "EUR")
    assert [
        formats.money(1_234_567 * E, "JPY"),
        formats.money(-1_234_567_891, "KWD"),
        formats.money(5 * E // 1000, "EUR"),
        formats.money(15 * E // 1000, "EUR"),
        formats.money(123_456_789, "XTS"),
        formats.money(1 * E, "ZZZ"),
    ] == ["1,234,567 JPY", "-1.235 KWD", "0.00 EUR", "0.02 EUR", "0.1235 XTS", "1.00 ZZZ"]


def test_every_language_defines_the_same_labels() -> None:
    def names(language: str) -> set[str]:
        module = Renderer().environment("default", language)[1]
        return {k for k in vars(module) if not k.startswith("_")}

    assert names("de") == names("en")
    assert len(names("en")) > 30


def test_billing_team_templates_override_without_code(tmp_path: Path) -> None:
    (tmp_path / "default" / "en").mkdir(parents=True)
    (tmp_path / "default" / "en" / "header.txt.j2").write_text("ACME Telecom\n")
    renderer = Renderer(tmp_path)
    assert renderer.render(known(), "txt").splitlines()[0] == "ACME Telecom"
    # a brand's own header is more specific than the team's default one
    assert renderer.render(known(brand="mvno-blue"), "txt").startswith("*** BLUE MOBILE ***")
    (tmp_path / "default" / "en" / "invoice.txt.j2").write_text("{{ nope }}")
    with pytest.raises(
        BillingError, match=r"invoice 2026-11/acc-1: template .*'nope' is undefined"
    ):
        Renderer(tmp_path).render(known(), "txt")
    with pytest.raises(BillingError, match="does not exist"):
        Renderer(tmp_path / "missing")


def test_no_pdf_renderer_here(renderer: Renderer) -> None:
    assert pdf_available() is False
    assert renderer.render_pdf(known()) is None


# -- outbox ----------------------------------------------------------------------------------


@pytest.fixture
def issued() -> InvoiceStore:
    store = InvoiceStore(MemoryStore(), clock=Clock())
    store.put_drafts([draft("a"), draft("b", issuer="mvno-blue"), draft("c")], "run")
    store.issue(["2026-11/a", "2026-11/b"], "clerk", "2026-12-01")
    return store


def files(outbox: Path) -> list[str]:
    return sorted(str(p.relative_to(outbox)) for p in outbox.rglob("*") if p.is_file())


def test_send_writes_documents_and_marks_sent(
    issued: InvoiceStore, renderer: Renderer, tmp_path: Path
) -> None:
    before = issued.get("2026-11/a")
    assert before is not None
    summary = send(issued, ["2026-11/a", "2026-11/b"], outbox=tmp_path, renderer=renderer,
                   actor="mailer")  # fmt: skip
    assert (summary.sent, summary.resent, summary.skipped) == (2, 0, 0)
    assert files(tmp_path) == [
        "mvno-blue/MVNOBLUE-2026-000001.html", "mvno-blue/MVNOBLUE-2026-000001.json",
        "mvno-blue/MVNOBLUE-2026-000001.txt", "operator/RW-2026-000001.html",
        "operator/RW-2026-000001.json", "operator/RW-2026-000001.txt",
    ]  # fmt: skip
    assert (tmp_path / "operator/RW-2026-000001.txt").read_text() == renderer.render(before, "txt")
    document = (tmp_path / "operator/RW-2026-000001.json").read_bytes()
    assert msgspec.json.decode(document, type=Invoice) == before
    after = issued.get("2026-11/a")
    assert after is not None
    assert (after.history[-1].action, after.history[-1].actor) == ("sent", "mailer")
    assert after.history[-1].detail == f"{tmp_path}/operator/RW-2026-000001 (.html .txt .json)"


def test_send_again_skips_and_resend_rewrites_same_files(
    issued: InvoiceStore, renderer: Renderer, tmp_path: Path
) -> None:
    send(issued, ["2026-11/a"], outbox=tmp_path, renderer=renderer, actor="mailer")
    again = send(issued, ["2026-11/a"], outbox=tmp_path, renderer=renderer, actor="mailer")
    assert (again.sent, again.skipped, len(files(tmp_path))) == (0, 1, 3)
    re = send(issued, ["2026-11/a"], outbox=tmp_path, renderer=renderer, actor="m", resend=True)
    assert (re.sent, re.resent, len(files(tmp_path))) == (0, 1, 3)
    inv = issued.get("2026-11/a")
    assert inv is not None
    assert [e.action for e in inv.history] == ["generated", "issued", "sent", "resent"]


def test_send_refuses_drafts_before_writing_anything(
    issued: InvoiceStore, renderer: Renderer, tmp_path: Path
) -> None:
    with pytest.raises(InvoiceStateError, match="2026-11/c is draft: only issued invoices"):
        send(issued, ["2026-11/a", "2026-11/c"], outbox=tmp_path, renderer=renderer, actor="m")
    assert files(tmp_path) == []


def test_send_credit_note_and_notify(
    issued: InvoiceStore, renderer: Renderer, tmp_path: Path
) -> None:
    issued.cancel("2026-11/a", "clerk", "duplicate", day="2026-12-02")
    got: list[tuple[bytes, bytes]] = []
    summary = send(issued, ["2026-11/a/credit"], outbox=tmp_path, renderer=renderer,
                   actor="mailer", notify=got.extend)  # fmt: skip
    assert (summary.sent, summary.notified) == (1, 1)
    text = (tmp_path / "operator/RW-2026-000002.txt").read_text()
    assert (
        "This credit note cancels invoice RW-2026-000001 (2026-12-01).\nReason: duplicate" in text
    )
    ((key, value),) = got
    message = msgspec.json.decode(value)
    assert key == b"a"
    assert {k: message[k] for k in ("kind", "invoice_id", "number", "total", "resent")} == {
        "kind": "credit_note", "invoice_id": "2026-11/a/credit", "number": "RW-2026-000002",
        "total": -119 * E // 10, "resent": False,
    }  # fmt: skip
    assert message["files"][0] == f"{tmp_path}/operator/RW-2026-000002.html"
    credit = issued.get("2026-11/a/credit")
    assert credit is not None
    assert credit.history[-1].detail.endswith(f"(.html .txt .json) + topic {NOTIFICATIONS}")


def test_failed_notification_leaves_invoice_unsent_for_the_next_run(
    issued: InvoiceStore, renderer: Renderer, tmp_path: Path
) -> None:
    def broken(messages: Sequence[tuple[bytes, bytes]]) -> None:
        msg = "broker down (simulated)"
        raise BrokerError(msg)

    with pytest.raises(BrokerError):
        send(issued, ["2026-11/a"], outbox=tmp_path, renderer=renderer, actor="m", notify=broken)
    inv = issued.get("2026-11/a")
    assert inv is not None
    assert inv.history[-1].action == "issued"
    got: list[tuple[bytes, bytes]] = []
    summary = send(issued, ["2026-11/a"], outbox=tmp_path, renderer=renderer, actor="m",
                   notify=got.extend)  # fmt: skip
    assert (summary.sent, len(got), len(files(tmp_path))) == (1, 1, 3)


def test_balances_consumed_are_shown_in_their_units(renderer: Renderer) -> None:
    invoice = msgspec.structs.replace(known(), balances_consumed=[
        BalanceConsumed("credit", "EUR", 5_000_000_000),
        BalanceConsumed("free-minutes", "voice_seconds", 1800),
        BalanceConsumed("data", "data_bytes", 1_000_000_000),
        BalanceConsumed("points", "points", 12_345),
    ])  # fmt: skip
    text = renderer.render(invoice, "txt")
    for shown in ("5.00 EUR", "0:30:00", "1,000.0 MB", "12,345 points"):
        assert shown in text
