"""The in-memory limit on wrong operator keys: the window, the wait and the bounded table."""

from __future__ import annotations

import pytest

from budstikke.api.login_throttle import LoginThrottle, client_key


class FakeClock:
    def __init__(self) -> None:
        self.now_s = 1000.0

    def __call__(self) -> float:
        return self.now_s


def test_throttle_waits_for_oldest_failure() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=3, window_s=60.0, clock=clock)

    throttle.record_failure("203.0.113.5")
    clock.now_s += 20.0
    throttle.record_failure("203.0.113.5")
    assert throttle.retry_after_s("203.0.113.5") is None
    throttle.record_failure("203.0.113.5")

    assert throttle.retry_after_s("203.0.113.5") == 40
    clock.now_s += 40.0
    assert throttle.retry_after_s("203.0.113.5") is None


def test_throttle_forgets_failures_after_window() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=2, window_s=60.0, clock=clock)
    throttle.record_failure("203.0.113.5")
    clock.now_s += 61.0
    throttle.record_failure("203.0.113.5")

    assert throttle.retry_after_s("203.0.113.5") is None


def test_throttle_success_clears_client() -> None:
    throttle = LoginThrottle(max_failures=2, window_s=60.0, clock=FakeClock())
    throttle.record_failure("203.0.113.5")
    throttle.record_success("203.0.113.5")
    throttle.record_failure("203.0.113.5")

    assert throttle.retry_after_s("203.0.113.5") is None
    assert throttle.tracked_clients() == 1


def test_throttle_table_stays_bounded() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(max_failures=1, window_s=60.0, max_clients=100, clock=clock)
    throttle.record_failure("198.51.100.1")

    for host in range(5000):
        throttle.record_failure(f"10.0.{host // 256}.{host % 256}")

    assert throttle.tracked_clients() == 100
    assert throttle.retry_after_s("10.0.19.135") == 60
    # The least recent client was forgotten first.
    assert throttle.retry_after_s("198.51.100.1") is None


def test_client_key_groups_ipv6_by_64() -> None:
    assert client_key("2001:db8:1:2:aaaa::1") == client_key("2001:db8:1:2:bbbb::9")
    assert client_key("2001:db8:1:2::1") == "2001:db8:1:2::/64"
    assert client_key("2001:db8:1:3::1") != client_key("2001:db8:1:2::1")
    assert client_key("203.0.113.5") == "203.0.113.5"
    assert client_key("testclient") == "testclient"
    assert client_key(None) == "unknown"


def test_client_key_unwraps_ipv4_mapped() -> None:
    assert client_key("::ffff:203.0.113.5") == "203.0.113.5"
    assert client_key("::ffff:203.0.113.5") != client_key("::ffff:198.51.100.9")


def test_throttle_rejects_invalid_settings() -> None:
    with pytest.raises(ValueError, match="max_failures=0"):
        LoginThrottle(max_failures=0)
