"""Errors raised while loading tariff plans and rating usage."""

from engine.exceptions import RatewireError


class TariffError(RatewireError):
    """A tariff plan is malformed or inconsistent.

    Operator action: fix the named file, table, row or key and load again;
    nothing of a plan that fails to load is used.
    """

    code = "TARIFF_ERROR"


class RatingError(RatewireError):
    """A single query could not be rated; ``code`` is a stable machine name."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
