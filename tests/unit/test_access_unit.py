"""Access settings without a server: the login limiter on a fake clock (failures per address, in a window, for a
bounded number of addresses), the --auth value parsed from user:password or the environment, the host's default,
and the warnings about exposing the app without a login. Through a live app: tests/app/test_access.py."""

from __future__ import annotations

import pytest

from sd35ui.app.access import FAILED_LOGIN_WINDOW_S, MAX_FAILED_LOGINS, LoginLimiter, too_many_logins_message

# Failed logins limited ---------------------------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_login_limiter_blocks_an_address_after_five_failures_in_a_minute():
    assert (MAX_FAILED_LOGINS, FAILED_LOGIN_WINDOW_S) == (5, 60.0)
    clock = Clock()
    limiter = LoginLimiter(clock=clock)
    for _ in range(4):
        limiter.failed("10.0.0.1")
        clock.now += 10
    assert limiter.retry_after("10.0.0.1") == 0
    limiter.failed("10.0.0.1")  # the 5th within 60 s (at 1000, 1010, 1020, 1030, 1040)
    assert limiter.retry_after("10.0.0.1") == pytest.approx(20.0)  # until the first is 60 s old
    assert limiter.retry_after("10.0.0.2") == 0, "per address"
    clock.now += 19.5
    assert limiter.retry_after("10.0.0.1") == pytest.approx(0.5)
    clock.now += 0.5
    assert limiter.retry_after("10.0.0.1") == 0
    limiter.failed("10.0.0.1")  # 5 within the last 60 s again (1010 ... 1060)
    assert limiter.retry_after("10.0.0.1") == pytest.approx(10.0)
    assert too_many_logins_message(9.2) == "Too many failed logins; wait 10 s"


def test_a_right_login_forgets_earlier_failures_and_old_failures_age_out():
    clock = Clock()
    limiter = LoginLimiter(max_failures=3, window_s=60, clock=clock)
    limiter.failed("a")
    limiter.failed("a")
    limiter.succeeded("a")
    limiter.failed("a")
    limiter.failed("a")
    assert limiter.retry_after("a") == 0
    clock.now += 61
    limiter.failed("a")
    assert limiter.retry_after("a") == 0, "failures older than the window do not count"


def test_the_login_limiter_tracks_a_bounded_number_of_addresses():
    clock = Clock()
    limiter = LoginLimiter(max_failures=1, window_s=60, clock=clock, max_addresses=100)
    for i in range(1000):
        limiter.failed(f"10.0.{i // 256}.{i % 256}")
        clock.now += 0.01
    assert len(limiter._failures) <= 100
    assert limiter.retry_after("10.0.3.231") > 0, "the most recent address is still blocked"
    with pytest.raises(ValueError):
        LoginLimiter(max_failures=0)


# --auth, the host, and the warnings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, None),
        ("", None),
        ("alice:s3cret", ("alice", "s3cret")),
        ("alice:pa:ss:word", ("alice", "pa:ss:word")),
        (" alice :x", ("alice", "x")),
    ],
)
def test_auth_is_parsed_from_user_colon_password(value, expected):
    from sd35ui.app.access import parse_auth

    assert parse_auth(value) == expected


@pytest.mark.parametrize("value", ["alice", ":s3cret", "alice:", "a:b\nc", "a:" + "x" * 300])
def test_bad_auth_values_are_refused_with_the_expected_form(value):
    from sd35ui.app.access import parse_auth

    with pytest.raises(ValueError, match="--auth"):
        parse_auth(value)


def test_auth_comes_from_the_flag_or_the_environment_and_the_host_defaults_to_this_machine():
    from sd35ui.app.access import AUTH_ENV, auth_from, default_host

    assert auth_from(None, {AUTH_ENV: "bob:pw"}) == ("bob", "pw")
    assert auth_from("alice:x", {AUTH_ENV: "bob:pw"}) == ("alice", "x")
    assert auth_from(None, {}) is None
    assert default_host({}) == "127.0.0.1"
    assert default_host({"GRADIO_SERVER_NAME": "0.0.0.0"}) == "0.0.0.0"
    assert default_host({"SD35UI_HOST": "::1", "GRADIO_SERVER_NAME": "0.0.0.0"}) == "::1"


def test_exposing_the_app_without_a_login_is_warned_about():
    from sd35ui.app.access import exposure_warnings

    assert exposure_warnings("127.0.0.1", share=False, auth=None) == []
    assert exposure_warnings("0.0.0.0", share=True, auth=("a", "b")) == []
    share, network = exposure_warnings("0.0.0.0", share=True, auth=None)
    assert "--share without --auth" in share and "anyone who gets the public link" in share
    assert "0.0.0.0 without --auth" in network
    assert exposure_warnings("localhost", share=True, auth=None) == [share]
