"""demo.py's server flags (--queue-size, --concurrency, --cache-limit-mb, --cache-max-age, --port): values out of
range are refused by argparse with the range, values in range are taken, and demo.py's defaults match launch()'s.
The same mistakes through demo.py run as a user would are in tests/app/test_startup.py."""

from __future__ import annotations

import pytest

import demo


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
