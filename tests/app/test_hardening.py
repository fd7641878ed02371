"""Holes found by an adversarial run against the live app (issue 14), each checked on the real code: Gradio's cache
bounded in size and age (real uploads over HTTP), every route behind the login with `--auth` and failed logins
limited per address (real HTTP to a live app), and start-up mistakes (port, outputs folder, model folder) reported
in one line by demo.py run as a user would. What needs no live app is in tests/unit/test_hardening_unit.py and
tests/pipeline/test_hardening_pipeline.py; the login page in a browser in tests/browser/test_hardening_browser.py."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from app_support import serve

from sd35ui.app.access import LoginLimiter

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}
ARGS = dict(
    prompt="a red circle", negative_prompt="", steps=2, guidance=4.5, width=64, height=64, seed=5, randomize_seed=False
)
MB = 2**20


def upload(http: httpx.Client, name: str, data: bytes) -> httpx.Response:
    return http.post("/gradio_api/upload", files={"files": (name, data, "image/png")})


def existing(paths: list[str]) -> list[str]:
    return [p for p in paths if os.path.exists(p)]


def wait_for(condition, timeout: float = 15.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


# 2. Gradio's cache: bounded in bytes, expired by age ---------------------------------------------------------------


def test_uploads_past_the_cache_limit_push_out_the_oldest_files(tmp_path):
    from gradio_client import Client

    limit = 3 * MB
    with serve(tmp_path, cache_limit_bytes=limit) as app:
        cache = app.sd35ui_cache
        Client(app.local_url, verbose=False).predict(**ARGS, api_name="/generate")
        copies = [path for _, _, path in cache.files()]  # results are copied into the cache too
        assert copies and all(Path(p).is_relative_to(cache.folder) for p in copies)
        http = httpx.Client(base_url=app.local_url, timeout=60)
        paths: list[str] = []
        for i in range(8):
            response = upload(http, f"upload-{i}.png", os.urandom(MB))
            assert response.status_code == 200, response.text
            paths += response.json()
            kept = existing(paths)
            assert sum(os.path.getsize(p) for p in kept) <= limit, i
            assert kept == paths[-len(kept) :], "the oldest go first"
            assert cache.total_bytes() <= limit
        assert len(existing(paths)) >= 2  # the newest stay
        assert not os.path.exists(paths[0]) and not os.path.exists(Path(paths[0]).parent), "hash folder removed too"
        assert not existing(copies), "the result's cached copy counts and goes first"

        response = upload(http, "huge.png", os.urandom(limit + 1))
        assert response.status_code == 413
        assert "larger than the server's file cache" in response.text and "--cache-limit-mb" in response.text
        last = existing(paths)
    assert last and not existing(last), "the app's cached files are deleted when the server stops"


def test_cached_uploads_expire_after_the_maximum_age(tmp_path):
    with serve(tmp_path, cache_max_age_s=2) as app:
        http = httpx.Client(base_url=app.local_url, timeout=60)
        (path,) = upload(http, "old.png", os.urandom(1000)).json()
        assert os.path.exists(path)
        time.sleep(1)
        (young,) = upload(http, "young.png", os.urandom(1000)).json()
        assert wait_for(lambda: not os.path.exists(path), timeout=10), "expired on the schedule, no upload needed"
        assert wait_for(lambda: not os.path.exists(young), timeout=10)
        assert app.sd35ui_cache.files() == []


# 9. --auth: every route behind the login; failed logins limited ------------------------------------------------------

AUTH = ("alice", "s3cret:x")
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
CANCEL = {"session_hash": "nobody", "fn_index": 0, "event_id": "none"}


def login(http: httpx.Client, user: str = AUTH[0], password: str = AUTH[1]) -> httpx.Response:
    return http.post("/login", data={"username": user, "password": password})


def test_with_auth_every_route_but_the_login_page_needs_the_login(tmp_path):
    pytest.importorskip("mcp", reason='launch(mcp=True) needs the mcp package: pip install "gradio[mcp]"')
    with serve(tmp_path, auth=AUTH, mcp=True) as app:
        anonymous = httpx.Client(base_url=app.local_url, timeout=60)
        requests = [
            ("GET", "/openapi.json", {}),
            ("GET", "/gradio_api/openapi.json", {}),
            ("GET", "/gradio_api/mcp/schema", {}),
            ("POST", "/gradio_api/mcp/", {"json": TOOLS_LIST, "headers": MCP_HEADERS}),
            ("POST", "/gradio_api/cancel", {"json": CANCEL}),
            ("GET", "/config", {}),
            ("GET", "/gradio_api/info", {}),
            ("POST", "/gradio_api/queue/join", {"json": {"data": [], "fn_index": 0, "session_hash": "x"}}),
            ("POST", "/gradio_api/upload", {"files": {"files": ("a.png", b"x" * 100, "image/png")}}),
            ("GET", "/gradio_api/heartbeat/nobody", {}),
            ("GET", "/monitoring/anything", {}),
        ]
        for method, path, kwargs in requests:
            response = anonymous.request(method, path, **kwargs)
            assert response.status_code == 401, (method, path, response.status_code, response.text[:200])
            assert response.json()["detail"]["error"] == "Not authenticated"
        assert app.sd35ui_cache.files() == [], "a refused upload never reaches the cache"
        page = anonymous.get("/")
        assert page.status_code == 200 and '"auth_required":true' in page.text.replace(" ", "")  # the login page
        assert anonymous.get("/theme.css").status_code == 200

        user = httpx.Client(base_url=app.local_url, timeout=60)
        assert login(user).status_code == 200
        assert "/gradio_api/upload" in user.get("/openapi.json").json()["paths"]
        schema = user.get("/gradio_api/mcp/schema")
        assert schema.status_code == 200 and "generate" in {t["meta"]["endpoint_name"] for t in schema.json()}
        tools = user.post("/gradio_api/mcp/", json=TOOLS_LIST, headers=MCP_HEADERS)
        assert tools.status_code == 200 and '"tools"' in tools.text and "generate" in tools.text
        assert user.post("/gradio_api/cancel", json=CANCEL).status_code == 200
        assert user.get("/config").status_code == 200


def test_failed_logins_are_limited_per_address(tmp_path):
    window = 3.0
    with serve(tmp_path, auth=AUTH, login_limiter=LoginLimiter(max_failures=5, window_s=window)) as app:
        attacker = httpx.Client(base_url=app.local_url, timeout=60)
        for _ in range(5):
            response = login(attacker, password="guess")
            assert response.status_code == 400, response.text
        blocked_at = time.monotonic()
        response = login(attacker, password="guess")
        assert response.status_code == 429
        assert response.json()["detail"].startswith("Too many failed logins; wait ")
        assert 1 <= int(response.headers["Retry-After"]) <= window + 1
        response = login(attacker)  # the right password too: the address is blocked, not the guess
        assert response.status_code == 429 and "access-token" not in response.headers.get("set-cookie", "")
        assert attacker.get("/config").status_code == 401

        # another address is not blocked (Linux routes all of 127/8 to the loopback device)
        other = httpx.Client(
            base_url=app.local_url, timeout=60, transport=httpx.HTTPTransport(local_address="127.0.0.2")
        )
        assert login(other).status_code == 200 and other.get("/config").status_code == 200

        time.sleep(max(0.0, blocked_at + window + 0.2 - time.monotonic()))
        assert login(attacker).status_code == 200, "the block ends with the window"
        assert attacker.get("/config").status_code == 200


# 10. Start-up mistakes: one line, the fix, no traceback ------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_demo(*args: str, timeout: float = 240) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "demo.py"), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=ROOT,
    )


def error_line(done: subprocess.CompletedProcess) -> str:
    """The one "Error: ..." line, after checking there is no traceback and no second error line."""
    assert "Traceback" not in done.stderr, done.stderr
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, done.stderr
    return errors[0]


def test_port_out_of_range_is_an_argparse_error():
    done = run_demo("--model", "tiny-random", "--port", "99999", timeout=60)
    assert done.returncode == 2
    assert "error: argument --port: must be a whole number from 1 to 65535, got '99999'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_port_in_use_is_reported_before_loading_the_model():
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = run_demo("--model", "tiny-random", "--port", str(port), timeout=60)
    assert done.returncode == 1
    assert error_line(done) == f"Error: Port {port} is in use: pass --port N or stop the other server"
    assert "Loading" not in done.stderr, "found before the model loads"


@pytest.mark.parametrize("kind", ["under a file", "a file"])
def test_an_outputs_folder_that_cannot_be_written_is_reported(tmp_path, kind):
    # Tests run as root, which ignores permission bits: a path through a regular file fails for root too.
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    outputs = blocker / "sub" if kind == "under a file" else blocker
    done = run_demo("--model", "tiny-random", "--port", str(free_port()), "--outputs", str(outputs), timeout=60)
    assert done.returncode == 1
    reason = "Not a directory" if kind == "under a file" else "it is a file, not a folder"
    assert error_line(done) == f"Error: Cannot write to outputs folder {outputs}: {reason}; pass --outputs DIR"
    assert "Loading" not in done.stderr


def test_a_model_folder_that_does_not_exist_says_so_even_without_a_gpu():
    done = run_demo("--model", "/no/such/folder", "--port", str(free_port()))
    assert done.returncode == 1
    line = error_line(done)
    assert line.startswith("Error: No diffusers pipeline found at '/no/such/folder': the folder does not exist")
    assert "--model tiny" in line and "CUDA" not in done.stderr


def test_a_model_folder_without_its_vae_names_the_missing_folder(model_copy):
    shutil.rmtree(model_copy / "vae")
    done = run_demo("--model", str(model_copy), "--port", str(free_port()))  # no --allow-cpu: checked first
    assert done.returncode == 1
    line = error_line(done)
    assert line.startswith(f"Error: {model_copy} has no vae/ folder; a diffusers SD3 model folder needs ")
    assert "model_index.json, " in line and "transformer/" in line and "text_encoder/" in line
    assert "CUDA" not in done.stderr
