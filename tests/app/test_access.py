"""Access to a live app on the tiny model, over real HTTP: with `--auth` every route but the login page needs the
login (the page, the API, MCP, uploads and the files) and failed logins are limited per address; only the outputs
folder is served, and no path traversal reaches a file outside it. The login limiter and the --auth value without a
server are in tests/unit/test_access_unit.py; the login page in a browser in tests/browser/test_login_page.py."""

from __future__ import annotations

import time
from urllib.parse import quote, urlsplit

import httpx
import pytest
from app_support import ARGS, get, post, result_files, serve
from gradio_client import Client

from sd35ui.app.access import LoginLimiter

AUTH = ("alice", "s3cret:x")
MCP_HEADERS = {"Accept": "application/json, text/event-stream"}
TOOLS_LIST = {"jsonrpc": "2.0", "id": 1, "method": "tools/list", "params": {}}
CANCEL = {"session_hash": "nobody", "fn_index": 0, "event_id": "none"}


def login(http: httpx.Client, user: str = AUTH[0], password: str = AUTH[1]) -> httpx.Response:
    return http.post("/login", data={"username": user, "password": password})


# --auth: every route behind the login; failed logins limited --------------------------------------------------------


def test_with_auth_every_route_but_the_login_page_needs_the_login(tmp_path):
    pytest.importorskip("mcp", reason='launch(mcp=True) needs the mcp package: pip install "gradio[mcp]"')
    with serve(tmp_path, auth=AUTH, mcp=True) as (app, _):
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
    with serve(tmp_path, auth=AUTH, login_limiter=LoginLimiter(max_failures=5, window_s=window)) as (app, _):
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


def test_auth_protects_the_page_the_api_and_the_files(tmp_path):
    with serve(tmp_path, auth=("alice", "s3cret:x")) as (app, config):
        url = app.local_url
        client = Client(url, auth=("alice", "s3cret:x"), verbose=False)
        path, _, _ = client.predict(**ARGS, api_name="/generate")
        saved = result_files(config.outputs)[0]
        for route in (
            "/config",
            "/gradio_api/info",
            f"/gradio_api/file={saved}",
            f"/gradio_api/file={path}",
        ):
            assert get(url, route)[0] in (401, 403), route
        status, body = post(url, "/gradio_api/queue/join", {"data": list(ARGS.values()), "fn_index": 0})
        assert status == 401, body
        status, body = post(url, "/gradio_api/run/stop", {"data": []})
        assert status == 401, body
        for auth in (None, ("alice", "wrong"), ("bob", "s3cret:x")):
            with pytest.raises(Exception):
                Client(url, auth=auth, verbose=False).predict(**ARGS, api_name="/generate")


# Served files: the outputs folder only ------------------------------------------------------------------------------


def test_only_the_outputs_folder_is_served_and_traversal_is_refused(app_server, client, tmp_path):
    app, config = app_server
    url = app.local_url
    path, _, _ = client.predict(**ARGS, api_name="/generate")
    saved = result_files(config.outputs)[0]
    secret = config.outputs.parent / "secret.txt"
    secret.write_text("TOP-SECRET")
    link = config.outputs / "link.png"
    link.symlink_to(secret)
    try:
        status, body = get(url, f"/gradio_api/file={saved}")
        assert status == 200 and body.startswith(b"\x89PNG"), "results are served"
        out = str(config.outputs)
        attempts = [
            "/gradio_api/file=/etc/passwd",
            "/file=/etc/passwd",
            "/gradio_api/file/etc/passwd",
            "/gradio_api/file=/proc/self/environ",
            f"/gradio_api/file={secret}",
            f"/gradio_api/file={out}/../secret.txt",
            f"/gradio_api/file={out}/%2e%2e/secret.txt",
            f"/gradio_api/file={out}%2f..%2fsecret.txt",
            f"/gradio_api/file={out}/%252e%252e/secret.txt",
            f"/gradio_api/file={out}/..%5csecret.txt",
            f"/gradio_api/file={quote(out + '/../secret.txt', safe='')}",
            f"/gradio_api/file={out}/link.png",
            "/gradio_api/file=../../../../../../etc/passwd",
            "/gradio_api/file=..%2f..%2f..%2f..%2f..%2f..%2fetc%2fpasswd",
            "/gradio_api/file=~/.bashrc",
            "/gradio_api/file=file:///etc/passwd",
            f"/gradio_api/file=http://127.0.0.1:{urlsplit(url).port}/config",  # no fetching from this machine
            "/static/../../../../etc/passwd",
            "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
            "/assets/..%2f..%2f..%2f..%2fetc%2fpasswd",
            "/gradio_api/file=" + "/".join([".."] * 12) + "/etc/passwd",
        ]
        for attempt in attempts:
            status, body = get(url, attempt)
            assert b"TOP-SECRET" not in body and b"root:" not in body, attempt
            assert status in (400, 403, 404), (attempt, status)
        assert client.predict(**ARGS, api_name="/generate")[0].endswith(".png"), "and the server keeps serving"
    finally:
        link.unlink()
        secret.unlink()
