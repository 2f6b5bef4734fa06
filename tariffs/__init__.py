"""Tariff model, loaders and compiled rating kernels."""
