"""The server's end, as a user runs it (`python demo.py`): stopped by Ctrl-C or by SIGTERM (what `kill`, `docker
stop` and systemd send), while a client is still connected, it exits cleanly and leaves none of the app's files in
Gradio's cache (`server.serve_until_interrupted`, demo.py's `stop_on_sigterm`)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from gradio_client import Client

ROOT = Path(__file__).resolve().parents[2]
ARGS = dict(
    prompt="a red circle", negative_prompt="", steps=2, guidance=4.5, width=64, height=64, seed=5, randomize_seed=False
)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def files_in(folder: Path) -> list[Path]:
    return [path for path in folder.rglob("*") if path.is_file()]


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "Ctrl-C"])
def test_a_stopped_server_deletes_its_cached_files(tmp_path, signum):
    port, cache, log = free_port(), tmp_path / "gradio-cache", tmp_path / "demo.log"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "GRADIO_TEMP_DIR": str(cache), "GRADIO_ANALYTICS_ENABLED": "False"}
    argv = [sys.executable, "demo.py", "--model", "tiny", "--port", str(port), "--outputs", str(tmp_path / "out")]
    with open(log, "w") as out:
        proc = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "Running on local URL" not in log.read_text():
            assert proc.poll() is None, f"demo.py exited early:\n{log.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"not serving after 180 s:\n{log.read_text()[-3000:]}"
            time.sleep(0.2)
        client = Client(f"http://127.0.0.1:{port}/", verbose=False)  # stays connected, as an open page does
        client.predict(**ARGS, api_name="/generate")
        cached = files_in(cache)
        assert cached, "the result's copy is in Gradio's cache"
        proc.send_signal(signum)
        assert proc.wait(timeout=60) == 0, log.read_text()[-3000:]
        client.close()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert files_in(cache) == [], f"left in the cache (was {cached}):\n{log.read_text()[-3000:]}"
    assert "Traceback" not in log.read_text()
