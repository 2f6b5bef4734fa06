"""Invoices as documents: Jinja2 templates per brand and language, compiled once.

A billing team changes wording and layout in template files, not in code. For
an invoice of brand ``B`` (the invoice's brand, else its reseller, else
``default``) in language ``L``, a template name is looked up in

    B/L/, B/en/, default/L/, default/en/

under the team's folder (``templates_dir``) first, then under the packaged
``billing/templates/``, at each level. Templates include, import and extend
each other through the same chain, so a brand can replace only its
``header.html.j2`` and a language only its ``labels.j2`` (words, decimal point,
date format). HTML templates are autoescaped; an undefined name is an error.

Money is printed from nanos with the currency's minor decimals (``decimals``,
e.g. the catalog's; :data:`DEFAULT_DECIMALS` otherwise). A PDF is made only
where a renderer (WeasyPrint) is importable; none is installed here.
"""

from __future__ import annotations

import importlib
import importlib.util
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import date, timedelta
from pathlib import Path
from typing import Any, Literal

import jinja2

from billing.exceptions import BillingError
from billing.model import Invoice, InvoiceLine, LineKind
from tariffs.model import Rounding
from tariffs.money import round_nanos

PACKAGED_TEMPLATES = Path(__file__).parent / "templates"
DEFAULT_DECIMALS: Mapping[str, int] = {
    "EUR": 2, "USD": 2, "GBP": 2, "CHF": 2, "SEK": 2, "NOK": 2, "DKK": 2, "PLN": 2,
    "CZK": 2, "HUF": 2, "CAD": 2, "AUD": 2, "INR": 2, "ZAR": 2, "NGN": 2, "KES": 2,
    "JPY": 0, "KRW": 0, "XOF": 0, "XAF": 0, "CLP": 0, "KWD": 3, "BHD": 3, "OMR": 3,
    "TND": 3, "JOD": 3,
}  # fmt: skip
Format = Literal["html", "txt"]
GROUP_ORDER = (
    LineKind.USAGE, LineKind.LATE_USAGE, LineKind.RECURRING, LineKind.PRORATION,
    LineKind.ONE_TIME, LineKind.DISCOUNT, LineKind.COMMITMENT, LineKind.TAX,
)  # fmt: skip
DURATION_CATEGORIES = frozenset({"call", "voice", "video"})
VOLUME_CATEGORIES = frozenset({"data"})
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
_PAD = 72  # plain-text line width


class Decimals(Mapping[str, int]):
    """Minor decimals per currency: ``given`` (e.g. a catalog's) first, then the table."""

    def __init__(self, given: Mapping[str, int]) -> None:
        self.given = given

    def __getitem__(self, currency: str) -> int:
        try:
            return self.given[currency]
        except KeyError:
            return DEFAULT_DECIMALS[currency]

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys([*self.given, *DEFAULT_DECIMALS]))

    def __len__(self) -> int:
        return sum(1 for _ in self)


def pdf_available() -> bool:
    """Whether a PDF renderer (WeasyPrint) can be imported here."""
    return importlib.util.find_spec("weasyprint") is not None


@dataclass(frozen=True, slots=True)
class Group:
    kind: str  # LineKind value; the label is labels.j2's groups[kind]
    lines: list[InvoiceLine]
    amount: int | None  # sum of the lines, None when they mix currencies
    currency: str


def groups_of(inv: Invoice) -> list[Group]:
    """The invoice's lines by kind in reading order; usage sorted by category and zone."""
    out = []
    for kind in GROUP_ORDER:
        lines = [line for line in inv.lines if line.kind is kind]
        if kind in (LineKind.USAGE, LineKind.LATE_USAGE):
            lines.sort(key=lambda x: (x.late_from, x.category, x.zone, x.description))
        if lines:
            currencies = {line.currency for line in lines}
            amount = sum(line.amount for line in lines) if len(currencies) == 1 else None
            out.append(Group(kind.value, lines, amount, min(currencies)))
    return out


def credit_reason(inv: Invoice) -> str:
    """Why a credit note was issued: its first history event reads ``cancels <n>: <why>``."""
    if not inv.credit_note_for or not inv.history:
        return ""
    return inv.history[0].detail.partition(": ")[2]


def totals_by_currency(inv: Invoice) -> dict[str, int]:
    totals: dict[str, int] = {}
    for line in inv.lines:
        totals[line.currency] = totals.get(line.currency, 0) + line.amount
    return dict(sorted(totals.items()))


class Formats:
    """Numbers, days and usage as one language writes them (from its ``labels.j2``)."""

    def __init__(self, labels: Any, decimals: Mapping[str, int], currency: str) -> None:
        self.point: str = labels.decimal_point
        self.group: str = labels.group_separator
        self.date_format: str = labels.date_format
        self.units: Mapping[str, str] = labels.units
        self.decimals = decimals
        self.currency = currency

    def money(self, nanos: int, currency: str | None = None, *, code: bool = True) -> str:
        """``-1234560000000`` → ``-1,234.56 EUR`` (decimals of the currency, half-even)."""
        cur = currency or self.currency
        places = self.decimals.get(cur, 2)
        minor = round_nanos(nanos, places, Rounding.HALF_EVEN) // 10 ** (9 - places)
        whole, frac = divmod(abs(minor), 10**places)
        text = f"{whole:,}".replace(",", self.group)
        if places:
            text += f"{self.point}{frac:0{places}d}"
        return f"{'-' if minor < 0 else ''}{text}{' ' + cur if code else ''}"

    def day(self, iso: str) -> str:
        return date.fromisoformat(iso).strftime(self.date_format) if iso else ""

    def last_day(self, iso_end: str) -> str:
        """An exclusive end day printed as the last day it covers."""
        return self.day((date.fromisoformat(iso_end) - timedelta(days=1)).isoformat())

    def usage(self, line: InvoiceLine) -> str:
        if line.category in DURATION_CATEGORIES:
            minutes, seconds = divmod(line.usage, 60)
            return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"
        if line.category in VOLUME_CATEGORIES:
            tenths = (line.usage + 50_000) // 100_000  # bytes → MB (10**6), one decimal
            return f"{tenths // 10:,}".replace(",", self.group) + f"{self.point}{tenths % 10} MB"
        return f"{line.usage} {self.units.get('messages', 'messages')}" if line.usage else ""

    def consumed(self, unit: str, amount: int) -> str:
        """A balance consumed, in its unit: money by the currency's decimals (balances of
        a currency hold nanos), voice as h:mm:ss, data in MB, anything else counted."""
        if unit in self.decimals:
            return self.money(amount, unit)
        if unit == "voice_seconds":
            minutes, seconds = divmod(amount, 60)
            return f"{minutes // 60}:{minutes % 60:02d}:{seconds:02d}"
        if unit == "data_bytes":
            tenths = (amount + 50_000) // 100_000
            return f"{tenths // 10:,}".replace(",", self.group) + f"{self.point}{tenths % 10} MB"
        return f"{amount:,}".replace(",", self.group) + f" {self.units.get(unit, unit)}"

    def quantity(self, line: InvoiceLine) -> str:
        if not line.quantity:
            return ""
        unit = self.units.get(line.unit, line.unit)
        usage = self.usage(line) if line.kind in (LineKind.USAGE, LineKind.LATE_USAGE) else ""
        return f"{line.quantity} {unit}" + (f", {usage}" if usage else "")

    def period(self, line: InvoiceLine) -> str:
        if not line.period_start:
            return ""
        return f"{self.day(line.period_start)} – {self.last_day(line.period_end)}"

    @staticmethod
    def row(left: str, right: str, width: int = _PAD) -> str:
        """Plain text: ``left`` and ``right`` on one line of ``width``, or two if too long."""
        if not right:
            return left
        room = width - len(right) - 1
        if len(left) <= room:
            return f"{left:<{room}} {right}".rstrip()
        return f"{left}\n{right:>{width}}".rstrip()


def _safe(name: str, fallback: str) -> str:
    return name if _NAME.match(name) and ".." not in name else fallback


class Renderer:
    """Renders invoices; one compiled template set per (brand, language), kept."""

    def __init__(
        self, templates_dir: Path | None = None, *, decimals: Mapping[str, int] | None = None
    ) -> None:
        if templates_dir is not None and not templates_dir.is_dir():
            msg = f"templates folder {templates_dir} does not exist"
            raise BillingError(msg)
        self.roots = [r for r in (templates_dir, PACKAGED_TEMPLATES) if r is not None]
        self.decimals = Decimals(decimals or {})
        self._envs: dict[tuple[str, str], tuple[jinja2.Environment, Any]] = {}
        self._templates: dict[tuple[jinja2.Environment, str], jinja2.Template] = {}
        self.pdf = pdf_available()

    def brand_of(self, inv: Invoice) -> str:
        return _safe(inv.brand or inv.reseller or inv.issuer or "default", "default")

    def environment(self, brand: str, language: str) -> tuple[jinja2.Environment, Any]:
        """The template environment of a brand and language, with its labels module."""
        key = (brand, language)
        if key not in self._envs:
            levels = dict.fromkeys((f"{brand}/{language}", f"{brand}/en",
                                    f"default/{language}", "default/en"))  # fmt: skip
            paths = [str(root / level) for level in levels for root in self.roots]
            env = jinja2.Environment(
                loader=jinja2.FileSystemLoader(paths),
                autoescape=jinja2.select_autoescape(("html", "htm", "html.j2")),
                undefined=jinja2.StrictUndefined,
                trim_blocks=True,
                lstrip_blocks=True,
                keep_trailing_newline=True,
                auto_reload=False,
            )
            self._envs[key] = (env, env.get_template("labels.j2").module)
        return self._envs[key]

    def template_name(self, inv: Invoice, fmt: Format) -> str:
        return f"{'credit_note' if inv.credit_note_for else 'invoice'}.{fmt}.j2"

    def render(self, inv: Invoice, fmt: Format = "html", *, original: Invoice | None = None) -> str:
        """The invoice (or credit note, with the ``original`` it cancels) as HTML or text."""
        language = _safe(inv.language, "en")
        env, labels = self.environment(self.brand_of(inv), language)
        formats = Formats(labels, self.decimals, inv.currency)
        context = {
            "inv": inv, "L": labels, "f": formats, "money": formats.money, "day": formats.day,
            "row": formats.row, "groups": groups_of(inv), "totals": totals_by_currency(inv),
            "period_last": formats.last_day(inv.period_end), "original": original,
            "reason": credit_reason(inv),
        }  # fmt: skip
        try:
            name = self.template_name(inv, fmt)
            template = self._templates.get((env, name)) or env.get_template(name)
            self._templates[(env, name)] = template
            return template.render(context)
        except jinja2.TemplateError as exc:
            where = f"{getattr(exc, 'filename', None) or getattr(exc, 'name', '')}"
            msg = f"invoice {inv.invoice_id}: template {where} failed: {exc}"
            raise BillingError(msg) from exc

    def render_pdf(self, inv: Invoice) -> bytes | None:
        """The HTML rendered to PDF, or ``None`` where no PDF renderer is installed."""
        if not self.pdf:
            return None
        weasyprint = importlib.import_module("weasyprint")  # pragma: no cover
        write: Callable[[], bytes] = weasyprint.HTML(string=self.render(inv)).write_pdf
        return write()  # pragma: no cover


__all__ = ["DEFAULT_DECIMALS", "PACKAGED_TEMPLATES", "Renderer", "pdf_available"]
