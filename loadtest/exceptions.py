"""Errors raised by the load tester: scenarios, traffic, drivers and reports."""

from engine.exceptions import RatewireError


class LoadTestError(RatewireError):
    """Root of every error the load tester raises on purpose."""

    code = "LOADTEST_ERROR"


class ScenarioError(LoadTestError):
    """A scenario (a TOML file or a :class:`~loadtest.scenario.Scenario`) is unusable.

    Operator action: fix the file, table and key the message names (it says
    what was expected and what was found) and start the run again; nothing is
    generated or sent from a scenario that fails to load.
    """

    code = "SCENARIO_ERROR"


class HttpClientError(LoadTestError):
    """The worker API answered something :mod:`loadtest.http_client` cannot read.

    A malformed status line, header or chunk, or a connection closed before the
    answer was whole. The message names what was wrong and the server. Operator
    action: check that ``--url`` points at a ratewire worker (not a proxy or
    another service) and that the worker is still running.
    """

    code = "HTTP_CLIENT_ERROR"
