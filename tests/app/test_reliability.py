"""Reliability, security and persistence through the real app on the tiny model: nothing lost, many users, faults
survived, access limited. Faults are injected at real steps of the real pipeline (forward hooks on its modules).
The parts that need no server: tests/unit/test_reliability_unit.py and tests/pipeline/test_reliability_pipeline.py."""

from __future__ import annotations

import http.client
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote, urlsplit

import pytest
import torch
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError
from PIL import Image

from sd35ui.core import history, metadata
from sd35ui.core.pipeline import LoadOptions, get_pipeline

ROOT = Path(__file__).resolve().parents[2]
ARGS = dict(
    prompt="a red circle", negative_prompt="", steps=2, guidance=4.5, width=64, height=64, seed=5, randomize_seed=False
)
LONG = {**ARGS, "steps": 50, "width": 256, "height": 256}  # tens of seconds on 2 cores: always stopped by the test
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


@contextmanager
def serve(tmp_path: Path, auth=None, **config_values):
    """A fresh app on the tiny model with its own outputs folder, on a free loopback port."""
    from sd35ui.app.ui import AppConfig, create_app, launch

    config = AppConfig(load=LoadOptions(model="tiny-random"), outputs=tmp_path / "outputs", **config_values)
    app = create_app(config)
    launch(app, config, host="127.0.0.1", auth=auth, prevent_thread_lock=True, quiet=True)
    try:
        yield app, config
    finally:
        app.close()


def wait_until_running(job, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while job.status().code.name != "PROGRESS":  # running, past its first step
        assert not job.done(), job.result()
        assert time.time() < deadline, job.status()
        time.sleep(0.05)


def wait_until_queued(job, timeout: float = 60):
    deadline = time.time() + timeout
    while (status := job.status()).code.name != "IN_QUEUE" or status.rank is None:
        assert time.time() < deadline, status
        time.sleep(0.02)
    return status


def result_files(root: Path) -> list[Path]:
    return [e.path for e in history.list_results(root, include_cells=True)]


# 1. Nothing lost ---------------------------------------------------------------------------------------------------


def test_history_survives_a_restart(tmp_path):
    with serve(tmp_path) as (app, config):
        path, _, _ = Client(app.local_url, verbose=False).predict(**ARGS, api_name="/generate")
    saved = result_files(config.outputs)
    assert len(saved) == 1 and saved[0].name == Path(path).name
    with serve(tmp_path) as (app, _):
        client = Client(app.local_url, verbose=False)
        items, position, _ = client.predict(0, False, api_name="/history")
        assert position.startswith("1–1 of 1") and items[0]["caption"].endswith("a red circle")
        from gradio_client import handle_file

        values = client.predict(handle_file(str(saved[0])), api_name="/load_settings")
        later = [3.0, "Euler", "Default", 0.0, "", 0.01, 0.2, "On"]  # the settings added since: defaults
        assert list(values) == ["a red circle", "", 2, 4.5, 64, 64, 5, False, *later]


# 2. A shared GPU, many users ---------------------------------------------------------------------------------------


def test_concurrent_clients_see_their_position_and_are_served_in_order(app_server):
    app, config = app_server
    blocker_client = Client(app.local_url, verbose=False)
    blocker = blocker_client.submit(**LONG, api_name="/generate")
    wait_until_running(blocker)
    clients = [Client(app.local_url, verbose=False) for _ in range(4)]
    jobs, ranks = [], []
    for i, client in enumerate(clients):
        jobs.append(client.submit(**{**ARGS, "seed": 1000 + i}, api_name="/generate"))
        ranks.append(wait_until_queued(jobs[-1]).rank)
    assert ranks == [0, 1, 2, 3]  # each user is told their own place in the queue
    blocker_client.predict(api_name="/stop")
    with pytest.raises(AppError, match="Stopped"):
        blocker.result(timeout=120)
    results = [job.result(timeout=120) for job in jobs]
    assert [seed for _, seed, _ in results] == [1000, 1001, 1002, 1003]
    files = [Path(path).name for path, _, _ in results]
    on_disk = {p.name: p for p in result_files(config.outputs)}
    assert all(name in on_disk for name in files), "every result is saved"
    by_time = sorted(files, key=lambda name: on_disk[name].stat().st_mtime_ns)
    assert by_time == files, "first come, first served"


def test_one_users_stop_ends_only_their_job_and_not_the_next_one(app_server):
    app, _ = app_server
    alice, bob, carol = (Client(app.local_url, verbose=False) for _ in range(3))
    running = alice.submit(**LONG, api_name="/generate")
    wait_until_running(running)
    waiting = bob.submit(**{**ARGS, "seed": 77}, api_name="/generate")
    wait_until_queued(waiting)
    carol.predict(api_name="/stop")  # Carol has nothing running
    time.sleep(0.5)
    assert not running.done()
    alice.predict(api_name="/stop")
    with pytest.raises(AppError, match="Stopped"):
        running.result(timeout=120)
    path, seed, _ = waiting.result(timeout=120)  # Alice's Stop did not leak into Bob's job
    assert seed == 77 and Path(path).is_file()


def test_stop_pressed_while_still_waiting_in_the_queue_stops_that_job(app_server):
    app, _ = app_server
    alice, bob = Client(app.local_url, verbose=False), Client(app.local_url, verbose=False)
    running = alice.submit(**LONG, api_name="/generate")
    wait_until_running(running)
    waiting = bob.submit(**{**ARGS, "seed": 88}, api_name="/generate")
    wait_until_queued(waiting)
    bob.predict(api_name="/stop")
    alice.predict(api_name="/stop")
    with pytest.raises(AppError, match="Stopped"):
        running.result(timeout=120)
    with pytest.raises(AppError, match="Stopped"):
        waiting.result(timeout=120)  # Bob's Stop reached his job although it had not started
    assert bob.predict(**{**ARGS, "seed": 89}, api_name="/generate")[1] == 89, "and his next job is not stopped"


def test_a_full_queue_says_so_and_the_server_recovers(tmp_path):
    with serve(tmp_path, queue_size=1) as (app, _):
        alice, bob, carol = (Client(app.local_url, verbose=False) for _ in range(3))
        running = alice.submit(**LONG, api_name="/generate")
        wait_until_running(running)
        waiting = bob.submit(**ARGS, api_name="/generate")
        wait_until_queued(waiting)
        with pytest.raises(QueueError, match="Queue is full! Please try again"):
            carol.submit(**ARGS, api_name="/generate").result(timeout=60)
        # gradio_client sends every call through the queue, so it cannot reach /stop now; the page calls it
        # outside the queue (queue=False), as this does:
        status, body = post(app.local_url, "/gradio_api/run/stop", {"data": [], "session_hash": alice.session_hash})
        assert status == 200, body
        with pytest.raises(AppError, match="Stopped"):
            running.result(timeout=120)
        assert waiting.result(timeout=120)[0].endswith(".png")
        assert carol.predict(**ARGS, api_name="/generate")[0].endswith(".png")


def test_a_job_whose_client_went_away_frees_the_gpu_within_a_step(tmp_path):
    """A closed browser tab (here: a killed client process) must not keep its job running to the end."""
    with serve(tmp_path) as (app, _):
        code = textwrap.dedent(
            f"""
            import time
            from gradio_client import Client
            job = Client({app.local_url!r}, verbose=False).submit(**{LONG!r}, api_name="/generate")
            while job.status().code.name != "PROGRESS":
                time.sleep(0.05)
            print("running", flush=True)
            time.sleep(600)
            """
        )
        gone = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=ENV)
        try:
            assert gone.stdout.readline().strip() == "running"
        finally:
            gone.send_signal(signal.SIGKILL)
            gone.wait()
        start = time.perf_counter()
        path, _, _ = Client(app.local_url, verbose=False).predict(**ARGS, api_name="/generate")
        waited = time.perf_counter() - start
    assert Path(path).is_file()
    assert waited < 30, f"the abandoned 50-step job kept the GPU for {waited:.0f} s"


def test_a_cancelled_running_job_frees_the_gpu_within_a_step(app_server):
    """gradio_client's job.cancel() and a Stop button with `cancels=` both call /cancel; Gradio then frees the
    queue slot but lets the running function go on, so the job itself must notice and stop."""
    app, _ = app_server
    alice, bob = Client(app.local_url, verbose=False), Client(app.local_url, verbose=False)
    running = alice.submit(**LONG, api_name="/generate")
    wait_until_running(running)
    assert running.cancel()
    start = time.perf_counter()
    path, _, _ = bob.predict(**ARGS, api_name="/generate")
    waited = time.perf_counter() - start
    assert Path(path).is_file()
    assert waited < 30, f"the cancelled 50-step job kept the GPU for {waited:.0f} s"


# 3. Faults survived ------------------------------------------------------------------------------------------------


@contextmanager
def fault_at(module: torch.nn.Module, error: BaseException, times: int = 1):
    """Raise `error` from `module`'s forward the next `times` times it runs."""
    calls = []

    def hook(_module, _inputs, _output):
        calls.append(1)
        if len(calls) <= times:
            raise error

    handle = module.register_forward_hook(hook)
    try:
        yield calls
    finally:
        handle.remove()


def injection_points(pipe):
    return {
        "text encoder": pipe.text_encoder,
        "transformer block": pipe.transformer.transformer_blocks[1],
        "VAE decoder": pipe.vae.decoder,
    }


@pytest.mark.parametrize("where", ["text encoder", "transformer block", "VAE decoder"])
def test_out_of_memory_is_reported_with_advice_and_the_next_request_works(client, tiny_options, where):
    pipe = get_pipeline(tiny_options)  # the app's own pipeline object
    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB (injected)")
    prompt = f"a green square for OOM in the {where}"  # new text, so the text encoder runs
    with fault_at(injection_points(pipe)[where], oom) as calls:
        with pytest.raises(AppError) as info:
            client.predict(**{**ARGS, "prompt": prompt}, api_name="/generate")
        assert calls, "the fault was injected at a real step"
        message = str(info.value)
        assert "ran out of memory" in message and "smaller size" in message and "--quant nf4" in message
        assert "Traceback" not in message
        path, _, _ = client.predict(**{**ARGS, "prompt": prompt}, api_name="/generate")
    with Image.open(path) as image:
        assert metadata.read_png_metadata(image)["settings"].prompt == prompt


@pytest.mark.parametrize("where", ["text encoder", "transformer block", "VAE decoder"])
def test_an_exception_inside_the_pipeline_never_kills_the_server(client, tiny_options, where):
    pipe = get_pipeline(tiny_options)
    prompt = f"a blue star for a fault in the {where}"
    with fault_at(injection_points(pipe)[where], RuntimeError("injected fault")):
        with pytest.raises(AppError, match="Generation failed: RuntimeError: injected fault") as info:
            client.predict(**{**ARGS, "prompt": prompt}, api_name="/generate")
        assert "still running" in str(info.value) and "Traceback" not in str(info.value)
        assert client.predict(**{**ARGS, "prompt": prompt}, api_name="/generate")[0].endswith(".png")


def run_demo(*args: str, timeout: float = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "demo.py"), *args, "--port", "7999"],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=ROOT,
    )


def test_a_model_that_cannot_be_found_at_startup_exits_with_a_clear_message():
    done = run_demo("--model", "/nonexistent", "--allow-cpu")
    assert done.returncode != 0
    assert "Error: No diffusers pipeline found at '/nonexistent'" in done.stderr
    assert "Traceback" not in done.stderr


def test_a_damaged_model_at_startup_exits_with_a_clear_message(model_copy):
    weights = model_copy / "transformer" / "diffusion_pytorch_model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # an interrupted download
    done = run_demo("--model", str(model_copy), "--allow-cpu")
    assert done.returncode != 0
    assert "Error:" in done.stderr and "diffusion_pytorch_model.safetensors" in done.stderr
    assert "Traceback" not in done.stderr


# 5. Access ---------------------------------------------------------------------------------------------------------


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


def get(url: str, path: str, headers: dict | None = None) -> tuple[int, bytes]:
    """A GET that sends `path` exactly as written (no normalisation of `..` or of %-escapes)."""
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("GET", path, headers=headers or {})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def post(url: str, path: str, body: dict) -> tuple[int, bytes]:
    parts = urlsplit(url)
    connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
    try:
        connection.request("POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


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


def test_a_malformed_auth_stops_the_app_before_it_starts():
    done = run_demo("--model", "tiny", "--auth", "no-colon-here", timeout=60)
    assert done.returncode == 2
    assert "Error: --auth must be of the form user:password" in done.stderr and "Traceback" not in done.stderr


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
