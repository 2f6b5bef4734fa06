"""Alerts on rejects: thresholds, sliding windows, no storms, rule parsing."""

from __future__ import annotations

import msgspec
import pytest

from engine.alerts import (
    DEFAULT_RULES,
    Alert,
    Alerter,
    AlertExample,
    AlertRule,
    parse_rule,
)
from engine.exceptions import UsageInputError

T0 = 1_740_830_400.0  # 2025-03-01T12:00:00Z


class FakeClock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now


def alerter(*rules: str) -> tuple[Alerter, FakeClock]:
    clock = FakeClock()
    return Alerter([parse_rule(rule) for rule in rules], worker="w-1", clock=clock), clock


def test_alert_fires_exactly_when_the_count_is_reached() -> None:
    alerts, clock = alerter("DECODE_ERROR:3/60")
    assert alerts.observe({"DECODE_ERROR": 2}, {"DECODE_ERROR": [("in[0]@1", "bad json")]}) == []
    clock.now = T0 + 1.5
    assert alerts.observe({"DECODE_ERROR": 1}, {"DECODE_ERROR": [("in[0]@7", "truncated")]}) == [
        Alert(
            kind="REJECTS",
            reason="DECODE_ERROR",
            count=3,
            window_seconds=60.0,
            examples=[
                AlertExample(source="in[0]@1", message="bad json"),
                AlertExample(source="in[0]@7", message="truncated"),
            ],
            worker="w-1",
            at="2025-03-01T12:00:01.500+00:00",
            detail="3 DECODE_ERROR rejects in the last 60s (threshold 3)",
        )
    ]


def test_other_reasons_and_zero_counts_do_not_count() -> None:
    alerts, _ = alerter("DECODE_ERROR:1/60")
    assert alerts.observe({"VALIDATION_ERROR": 50, "DECODE_ERROR": 0}, {}) == []


def test_counts_older_than_the_window_drop_out() -> None:
    alerts, clock = alerter("VALIDATION_ERROR:3/10")
    assert alerts.observe({"VALIDATION_ERROR": 2}, {}) == []
    clock.now = T0 + 10.0  # the 2 from T0 are now exactly one window old: gone
    assert alerts.observe({"VALIDATION_ERROR": 1}, {}) == []
    clock.now = T0 + 15.0
    assert alerts.observe({"VALIDATION_ERROR": 1}, {}) == []
    clock.now = T0 + 19.0
    [alert] = alerts.observe({"VALIDATION_ERROR": 1}, {})
    assert (alert.count, alert.at) == (3, "2025-03-01T12:00:19.000+00:00")


def test_counts_just_inside_the_window_still_count() -> None:
    alerts, clock = alerter("VALIDATION_ERROR:3/10")
    assert alerts.observe({"VALIDATION_ERROR": 2}, {}) == []
    clock.now = T0 + 9.75
    [alert] = alerts.observe({"VALIDATION_ERROR": 1}, {})
    assert alert.count == 3


def test_one_alert_per_window_then_it_repeats() -> None:
    alerts, clock = alerter("DECODE_ERROR:1/60")
    [first] = alerts.observe({"DECODE_ERROR": 1}, {})
    assert (first.count, first.at) == (1, "2025-03-01T12:00:00.000+00:00")
    for offset, count in ((1.0, 500), (30.0, 5), (59.0, 1)):
        clock.now = T0 + offset
        assert alerts.observe({"DECODE_ERROR": count}, {}) == []
    clock.now = T0 + 60.0
    [second] = alerts.observe({"DECODE_ERROR": 1}, {})
    # T0 (the alerted reject) has left the window; T0+1 .. T0+60 are in it.
    assert (second.count, second.at) == (507, "2025-03-01T12:01:00.000+00:00")
    clock.now = T0 + 61.0
    assert alerts.observe({"DECODE_ERROR": 1}, {}) == []


def test_quiet_rule_does_not_silence_other_rules() -> None:
    alerts, _ = alerter("DECODE_ERROR:1/60", "VALIDATION_ERROR:2/60")
    assert [a.reason for a in alerts.observe({"DECODE_ERROR": 1}, {})] == ["DECODE_ERROR"]
    assert [a.reason for a in alerts.observe({"DECODE_ERROR": 1, "VALIDATION_ERROR": 2}, {})] == [
        "VALIDATION_ERROR"
    ]


def test_star_rule_counts_every_reason() -> None:
    alerts, _ = alerter("*:5/60", "DECODE_ERROR:10/60")
    examples = {
        "DECODE_ERROR": [("in[0]@1", "d1"), ("in[0]@2", "d2")],
        "VALIDATION_ERROR": [("in[1]@5", "v1"), ("in[1]@6", "v2")],
    }
    assert alerts.observe({"DECODE_ERROR": 2, "VALIDATION_ERROR": 3}, examples) == [
        Alert(
            kind="REJECTS",
            reason="*",
            count=5,
            window_seconds=60.0,
            examples=[
                AlertExample(source="in[0]@2", message="d2"),
                AlertExample(source="in[1]@5", message="v1"),
                AlertExample(source="in[1]@6", message="v2"),
            ],
            worker="w-1",
            at="2025-03-01T12:00:00.000+00:00",
            detail="5 rejects in the last 60s (threshold 5)",
        )
    ]


def test_examples_are_the_three_most_recent_within_the_window() -> None:
    alerts, clock = alerter("DECODE_ERROR:6/60")
    clock.now = T0 - 100.0  # outside the window by the time the rule fires
    alerts.observe({"DECODE_ERROR": 1}, {"DECODE_ERROR": [("old", "stale")]})
    clock.now = T0
    alerts.observe({"DECODE_ERROR": 3}, {"DECODE_ERROR": [("a", "1"), ("b", "2"), ("c", "3")]})
    clock.now = T0 + 1.0
    [alert] = alerts.observe({"DECODE_ERROR": 3}, {"DECODE_ERROR": [("d", "4"), ("e", "5")]})
    assert [(e.source, e.message) for e in alert.examples] == [("c", "3"), ("d", "4"), ("e", "5")]
    assert alert.count == 6


def test_stale_examples_are_left_out() -> None:
    alerts, clock = alerter("DECODE_ERROR:2/60")
    clock.now = T0 - 100.0
    alerts.observe({"DECODE_ERROR": 1}, {"DECODE_ERROR": [("old", "stale")]})
    clock.now = T0
    [alert] = alerts.observe({"DECODE_ERROR": 2}, {})
    assert alert.examples == []


def test_batch_failed_alert() -> None:
    alerts, clock = alerter()
    clock.now = T0 + 0.25
    assert alerts.batch_failed("store unavailable", [3, 7]) == Alert(
        kind="BATCH_FAILED",
        reason="BATCH_FAILED",
        count=2,
        window_seconds=0.0,
        examples=[],
        worker="w-1",
        at="2025-03-01T12:00:00.250+00:00",
        detail="store unavailable",
    )
    assert alerts.batch_failed("boom", []).count == 1


def test_alert_encodes_as_json() -> None:
    alerts, _ = alerter("DECODE_ERROR:1/60")
    [alert] = alerts.observe({"DECODE_ERROR": 1}, {"DECODE_ERROR": [("in[0]@1", "bad")]})
    assert msgspec.json.encode(alert) == (
        b'{"kind":"REJECTS","reason":"DECODE_ERROR","count":1,"window_seconds":60.0,'
        b'"examples":[{"source":"in[0]@1","message":"bad"}],"worker":"w-1",'
        b'"at":"2025-03-01T12:00:00.000+00:00",'
        b'"detail":"1 DECODE_ERROR rejects in the last 60s (threshold 1)"}'
    )
    assert msgspec.json.decode(msgspec.json.encode(alert), type=Alert) == alert


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("*:100/60", AlertRule("*", 100, 60.0)),
        ("DECODE_ERROR:1/60", AlertRule("DECODE_ERROR", 1, 60.0)),
        ("VALIDATION_ERROR:50/10.5", AlertRule("VALIDATION_ERROR", 50, 10.5)),
        (" UNKNOWN_SUBSCRIBER:2/0.5 ", AlertRule("UNKNOWN_SUBSCRIBER", 2, 0.5)),
    ],
)
def test_parse_rule(text: str, rule: AlertRule) -> None:
    assert parse_rule(text) == rule


FORM = (
    "expected REASON:COUNT/SECONDS with an upper-case reason code or '*', "
    "e.g. '*:1000/60' or 'DECODE_ERROR:1/60'"
)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", f"alert rule '': {FORM}"),
        ("DECODE_ERROR", f"alert rule 'DECODE_ERROR': {FORM}"),
        ("decode_error:1/60", f"alert rule 'decode_error:1/60': {FORM}"),
        ("*:1.5/60", f"alert rule '*:1.5/60': {FORM}"),
        ("*:10/-1", f"alert rule '*:10/-1': {FORM}"),
        ("*:10/60s", f"alert rule '*:10/60s': {FORM}"),
        (
            "*:0/60",
            "alert rule '*:0/60': alert rule for *: count must be > 0, got 0 "
            "(expected REASON:COUNT/SECONDS)",
        ),
        (
            "DECODE_ERROR:1/0",
            "alert rule 'DECODE_ERROR:1/0': alert rule for DECODE_ERROR: window must be a "
            "positive number of seconds, got 0.0 (expected REASON:COUNT/SECONDS)",
        ),
    ],
)
def test_parse_rule_errors_name_the_text(text: str, message: str) -> None:
    with pytest.raises(UsageInputError) as caught:
        parse_rule(text)
    assert str(caught.value) == message


def test_default_rules() -> None:
    expected = (AlertRule("*", 1000, 60.0), AlertRule("DECODE_ERROR", 100, 60.0))
    assert expected == DEFAULT_RULES
