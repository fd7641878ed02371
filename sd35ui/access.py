"""Who may reach the app: the address it binds, `--auth user:password` (or SD35UI_AUTH), and the warnings printed
when it is exposed beyond this machine without a password. Pure Python: no gradio.

Gradio checks the password on every page, API and file route (`login_check`) and compares it in constant time.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

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
