"""Uploads and Gradio's file cache through a live app on the tiny model (real uploads over HTTP): an upload is
bounded in size, and the app's files in the cache are bounded in total bytes, pushed out oldest first, expired by
age and deleted when the server stops (`server.CacheBound`, `server.CacheGuard`)."""

from __future__ import annotations

import http.client
import os
import time
from pathlib import Path
from urllib.parse import urlsplit

import httpx
from app_support import ARGS, serve

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


def test_uploads_past_the_cache_limit_push_out_the_oldest_files(tmp_path):
    from gradio_client import Client

    limit = 3 * MB
    with serve(tmp_path, cache_limit_bytes=limit) as (app, _):
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
    with serve(tmp_path, cache_max_age_s=2) as (app, _):
        http = httpx.Client(base_url=app.local_url, timeout=60)
        (path,) = upload(http, "old.png", os.urandom(1000)).json()
        assert os.path.exists(path)
        time.sleep(1)
        (young,) = upload(http, "young.png", os.urandom(1000)).json()
        assert wait_for(lambda: not os.path.exists(path), timeout=10), "expired on the schedule, no upload needed"
        assert wait_for(lambda: not os.path.exists(young), timeout=10)
        assert app.sd35ui_cache.files() == []


def test_uploads_are_bounded(app_server):
    app, _ = app_server
    parts = urlsplit(app.local_url)
    boundary = "sd35ui-boundary"
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()
    body = head + b"\0" * (65 * 2**20) + f"\r\n--{boundary}--\r\n".encode()
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=60)
    try:
        connection.request(
            "POST", "/gradio_api/upload", body, {"Content-Type": f"multipart/form-data; boundary={boundary}"}
        )
        response = connection.getresponse()
        assert response.status == 413, response.read()[:300]
    finally:
        connection.close()
