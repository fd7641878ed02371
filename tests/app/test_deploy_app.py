"""Deployment against a running app: the Dockerfile's healthcheck on the live app, the app on a Space without the
`spaces` package, and `--share` without internet. The checks that start nothing are in tests/unit/test_deploy.py."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest
from app_support import serve
from docs_support import ROOT, dockerfile, instructions


@pytest.fixture(scope="module")
def image():
    return dockerfile()


def test_healthcheck_passes_on_the_live_app_and_fails_without_it(image, app_server):
    (health,) = instructions(image, "HEALTHCHECK")
    command = health.exec_form()
    assert command[0] == "python"
    app, _ = app_server
    port = app.local_url.rstrip("/").rsplit(":", 1)[1]
    env = {**os.environ, "GRADIO_SERVER_PORT": port}
    ok = subprocess.run([sys.executable, *command[1:]], env=env, capture_output=True, timeout=30)
    assert ok.returncode == 0, ok.stderr
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        closed = str(free.getsockname()[1])
    down = subprocess.run(
        [sys.executable, *command[1:]], env={**env, "GRADIO_SERVER_PORT": closed}, capture_output=True, timeout=30
    )
    assert down.returncode != 0


def test_app_runs_on_a_space_without_the_spaces_package(monkeypatch, tmp_path, tiny_options):
    from gradio_client import Client

    monkeypatch.setenv("SPACE_ID", "someone/sd35ui")
    monkeypatch.setitem(sys.modules, "spaces", None)
    monkeypatch.setitem(sys.modules, "spaces.config", None)
    with serve(tmp_path, config=dict(load=tiny_options)) as (app, _):
        client = Client(app.local_url, verbose=False)
        _, seed, info = client.predict(
            prompt="a red circle",
            negative_prompt="",
            steps=4,
            guidance=4.5,
            width=64,
            height=64,
            seed=3,
            randomize_seed=False,
            api_name="/generate",
        )
        assert seed == 3 and "64x64" in info


# --- Share link ---------------------------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
def test_share_without_internet_still_serves_locally(tmp_path):
    """`--share` asks Gradio's share server for a tunnel; with no internet it prints "Could not create share link"
    and goes on serving locally (with internet it prints the public URL instead)."""
    port = _free_port()
    log = tmp_path / "demo.log"
    env = {**os.environ, "SD35UI_OUTPUTS": str(tmp_path / "outputs"), "HF_HUB_OFFLINE": "1"}
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [sys.executable, "demo.py", "--model", "tiny-random", "--share", "--port", str(port)],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            text = log.read_text()
            if "Could not create share link" in text or "Running on public URL" in text:
                break
            assert proc.poll() is None, f"demo.py exited early:\n{text[-3000:]}"
            assert time.monotonic() < deadline, f"no share-link outcome after 180 s:\n{text[-3000:]}"
            time.sleep(0.5)
        assert f"Running on local URL:  http://127.0.0.1:{port}" in text
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=30) as page:
            assert page.status == 200
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
