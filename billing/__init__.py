"""Billing: catalog, subscriptions, cycles, invoices (see billing/README.md)."""
