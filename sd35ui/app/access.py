"""Who may reach the app: the address it binds, `--auth user:password` (or SD35UI_AUTH), and the warnings printed
when it is exposed beyond this machine without a password. Pure Python: no gradio.

Gradio checks the password on every page, API and file route (`login_check`) and compares it in constant time;
sd35ui.app.server adds a gate in front of every route (MCP, /openapi.json, cancel, ... included) and `LoginLimiter`
here, which refuses logins from an address after repeated failures.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping

DEFAULT_HOST = "127.0.0.1"  # this machine only; 0.0.0.0 (every interface) only when asked, e.g. in Docker
HOST_ENV = "SD35UI_HOST"
AUTH_ENV = "SD35UI_AUTH"  # "user:password"; the environment keeps it out of `ps` and shell history
LOOPBACK = ("127.0.0.1", "localhost", "::1")
MAX_CREDENTIAL_CHARS = 256

SHARE_WITHOUT_AUTH = (
    "WARNING: --share without --auth: anyone who gets the public link can use your GPU, read every image in the "
    "outputs folder through the History tab, and fill the queue. Add --auth user:password (or set "
    f"{AUTH_ENV}=user:password) to require a login."
)
NETWORK_WITHOUT_AUTH = (
    "WARNING: serving on {host} without --auth: every machine that can reach this one can use the app and see its "
    f"outputs. Add --auth user:password (or set {AUTH_ENV}), or bind {DEFAULT_HOST} to keep it local."
)


def default_host(env: Mapping[str, str] | None = None) -> str:
    """SD35UI_HOST, else GRADIO_SERVER_NAME (Hugging Face Spaces sets 0.0.0.0), else 127.0.0.1: the app is private
    to this machine unless asked otherwise."""
    env = os.environ if env is None else env
    return env.get(HOST_ENV, "").strip() or env.get("GRADIO_SERVER_NAME", "").strip() or DEFAULT_HOST


def parse_auth(value: str | None) -> tuple[str, str] | None:
    """`user:password` -> (user, password); None or "" -> None (no login). The password may contain ':'.
    Raises ValueError with a message for the user on anything else."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise ValueError(f"--auth must be text of the form user:password, got {type(value).__name__}.")
    if len(value) > MAX_CREDENTIAL_CHARS:
        raise ValueError(f"--auth is {len(value)} characters long; the limit is {MAX_CREDENTIAL_CHARS}.")
    user, sep, password = value.partition(":")
    user = user.strip()  # Gradio's login form strips the user name too
    if not sep or not user or not password:
        raise ValueError(
            "--auth must be of the form user:password with both parts non-empty, e.g. --auth alice:s3cret "
            f"(or {AUTH_ENV}=alice:s3cret)."
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("--auth must not contain control characters (newlines, tabs, ...).")
    return user, password


def auth_from(cli_value: str | None, env: Mapping[str, str] | None = None) -> tuple[str, str] | None:
    """The login to require: --auth when given, else SD35UI_AUTH, else None."""
    env = os.environ if env is None else env
    if cli_value:
        return parse_auth(cli_value)
    return parse_auth(env.get(AUTH_ENV))


def is_loopback(host: str) -> bool:
    return host.strip().lower() in LOOPBACK or host.startswith("127.")


def exposure_warnings(host: str, share: bool, auth: tuple[str, str] | None) -> list[str]:
    """Warnings to print at start when the app is reachable beyond this machine without a login."""
    if auth is not None:
        return []
    warnings = []
    if share:
        warnings.append(SHARE_WITHOUT_AUTH)
    if not is_loopback(host):
        warnings.append(NETWORK_WITHOUT_AUTH.format(host=host))
    return warnings


# Failed logins ------------------------------------------------------------------------------------------------------

MAX_FAILED_LOGINS = 5  # per client address ...
FAILED_LOGIN_WINDOW_S = 60.0  # ... within this many seconds; then that address may not log in until they age out
MAX_TRACKED_ADDRESSES = 10_000  # bounds the limiter's memory under a flood from many addresses


def too_many_logins_message(wait_s: float) -> str:
    return f"Too many failed logins; wait {max(1, math.ceil(wait_s))} s"


class LoginLimiter:
    """Brute-force protection for the login: after `max_failures` failed logins from one client address within
    `window_s` seconds, every login from that address (the right password too) is refused until the first of those
    failures is `window_s` seconds old; refused attempts do not count. Thread-safe; `clock` is injectable for tests."""

    def __init__(
        self,
        max_failures: int = MAX_FAILED_LOGINS,
        window_s: float = FAILED_LOGIN_WINDOW_S,
        clock: Callable[[], float] = time.monotonic,
        max_addresses: int = MAX_TRACKED_ADDRESSES,
    ) -> None:
        if max_failures < 1 or window_s <= 0:
            raise ValueError("max_failures must be at least 1 and window_s positive")
        self.max_failures = max_failures
        self.window_s = window_s
        self.clock = clock
        self.max_addresses = max_addresses
        self._failures: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def _recent(self, address: str, now: float) -> deque[float]:
        failures = self._failures.get(address)
        if failures is None:
            return deque()
        while failures and now - failures[0] >= self.window_s:
            failures.popleft()
        if not failures:
            del self._failures[address]
        return failures

    def retry_after(self, address: str) -> float:
        """Seconds until `address` may try to log in again; 0 when it may now."""
        with self._lock:
            now = self.clock()
            failures = self._recent(address, now)
            if len(failures) < self.max_failures:
                return 0.0
            return max(0.0, failures[0] + self.window_s - now)

    def failed(self, address: str) -> None:
        """Count a failed login from `address`."""
        with self._lock:
            now = self.clock()
            failures = self._recent(address, now)
            if address not in self._failures:
                if len(self._failures) >= self.max_addresses:
                    self._forget_oldest(now)
                self._failures[address] = failures
            failures.append(now)
            while len(failures) > self.max_failures:  # only the last max_failures matter
                failures.popleft()

    def succeeded(self, address: str) -> None:
        """A right login from an address that is not blocked forgets its earlier failures."""
        with self._lock:
            self._failures.pop(address, None)

    def _forget_oldest(self, now: float) -> None:
        for address in [a for a, f in self._failures.items() if not f or now - f[-1] >= self.window_s]:
            del self._failures[address]
        while len(self._failures) >= self.max_addresses:  # all recent: drop the addresses with the oldest failure
            del self._failures[min(self._failures, key=lambda a: self._failures[a][-1])]
