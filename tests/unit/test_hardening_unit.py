"""Holes found by an adversarial run against the live app (issue 14) that are checked without one: the login limiter
on a fake clock, queue and port flags checked by argparse, local model paths told from hub ids. The same holes
through a live app and demo.py are in tests/app/test_hardening.py."""

from __future__ import annotations

import pytest

import demo
from sd35ui.app.access import FAILED_LOGIN_WINDOW_S, MAX_FAILED_LOGINS, LoginLimiter, too_many_logins_message
from sd35ui.core.pipeline import _looks_local

# 9. --auth: failed logins limited -----------------------------------------------------------------------------------


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


# 5. Queue and port flags -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "flag, value, message",
    [
        ("--queue-size", "0", "must be a whole number of at least 1"),
        ("--queue-size", "-1", "must be a whole number of at least 1"),
        ("--queue-size", "many", "must be a whole number of at least 1"),
        ("--concurrency", "0", "must be a whole number of at least 1"),
        ("--concurrency", "1.5", "must be a whole number of at least 1"),
        ("--cache-limit-mb", "0", "must be a whole number of at least 1"),
        ("--cache-max-age", "-5", "must be a whole number of at least 1"),
        ("--port", "0", "must be a whole number from 1 to 65535"),
        ("--port", "99999", "must be a whole number from 1 to 65535"),
    ],
)
def test_flags_out_of_range_are_refused_by_argparse(flag, value, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        demo.main([flag, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert f"error: argument {flag}: {message}, got '{value}'" in err and "Traceback" not in err


def test_flags_in_range_are_accepted():
    args = demo.parse_args(["--queue-size", "1", "--concurrency", "2", "--port", "65535", "--cache-limit-mb", "5"])
    assert (args.queue_size, args.concurrency, args.port, args.cache_limit_mb) == (1, 2, 65535, 5)
    assert demo.parse_args([]).cache_max_age == 24 * 3600
    from sd35ui.app import server

    assert (demo.DEFAULT_CACHE_LIMIT_MB, demo.DEFAULT_CACHE_MAX_AGE_S) == (
        server.DEFAULT_CACHE_LIMIT_MB,
        server.DEFAULT_CACHE_MAX_AGE_S,
    ), "demo.py's defaults (kept there so --help need not import Gradio) match launch()'s"


# 10. Start-up mistakes: one line, the fix, no traceback ------------------------------------------------------------


@pytest.mark.parametrize(
    "model, local",
    [
        ("stabilityai/stable-diffusion-3.5-medium", False),
        ("/models/sd35", True),
        ("./sd35", True),
        ("../sd35", True),
        ("~/sd35", True),
        ("models/sd35/medium", True),
        ("sd35", True),
    ],
)
def test_local_paths_are_told_from_hub_ids(model, local):
    assert _looks_local(model) is local
