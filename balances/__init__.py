"""Balances: multi-unit accounts, reservations and their stores (see issue 3)."""
