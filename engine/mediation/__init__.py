"""Mediation: third-party switch accounting files turned into ratewire usage records."""
