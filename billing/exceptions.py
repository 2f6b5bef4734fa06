"""Errors raised by the billing package."""

from engine.exceptions import RatewireError


class BillingError(RatewireError):
    """Root of every error the billing package raises on purpose."""

    code = "BILLING_ERROR"


class CatalogError(BillingError):
    """A product catalog file cannot be used; the message names the file and the key.

    Operator action: fix the named entry and load the catalog again; nothing of
    a catalog that fails to load is used.
    """

    code = "CATALOG_INVALID"


class ProfileError(BillingError):
    """A billing profile or subscription event is unusable (bad bill day, time zone, dates)."""

    code = "PROFILE_INVALID"


class InvoiceStateError(BillingError):
    """An invoice operation that its current status does not allow (e.g. cancel a draft)."""

    code = "INVOICE_STATE"


class UnknownInvoiceError(BillingError):
    """An invoice id, number or cycle that the billing store does not hold."""

    code = "INVOICE_UNKNOWN"
