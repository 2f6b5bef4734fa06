"""Streams, topics, wiring and the command line."""
