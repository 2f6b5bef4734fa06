"""Billing: cycles, invoices, payments and dunning (see issue 7)."""
