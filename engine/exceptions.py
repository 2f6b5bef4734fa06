"""The root of ratewire's exception tree.

Every package keeps its own errors in its own ``exceptions.py``; they all derive
from :class:`RatewireError`, so a caller (the CLI, a stream agent) can catch one
type and report a clear message instead of a traceback.
"""


class RatewireError(Exception):
    """Root of every error ratewire raises on purpose; ``code`` is its stable name."""

    code = "ERROR"


class DecodeError(RatewireError):
    """A usage record (or a batch of them) could not be decoded or validated."""

    code = "DECODE_ERROR"


class UsageInputError(RatewireError):
    """A command-line argument or input file is unusable (exit code 2)."""

    code = "INVALID_ARGUMENT"


class BrokerError(RatewireError):
    """A Kafka-protocol broker could not be started, reached or set up (topics).

    Operator action: read the message, which names the broker's address and,
    for an embedded broker, ends with the last lines of its log (a port
    already in use, a binary that would not run); check that nothing else
    listens on the port and that the address is reachable, then retry.
    """

    code = "BROKER_ERROR"
