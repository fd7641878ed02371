"""The app on two pipelines (`python demo.py --devices cpu,cpu`): single images run at once on whichever pipeline is
free, a sheet's cells are spread over both, and one user's Stop stops only their job. Through gradio_client, on two
CPU workers of the tiny random SD3 pipeline."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from app_support import SHEET, serve
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from sd35ui.core import devices, generate, metadata
from sd35ui.core.pipeline import LoadOptions
from sd35ui.core.workers import LocalWorker

ARGS = dict(
    prompt="a red circle", negative_prompt="", steps=2, guidance=4.5, width=64, height=64, seed=5, randomize_seed=False
)


@pytest.fixture(scope="module")
def two(tmp_path_factory):
    """The app on two CPU pipelines, as demo.py serves `--devices cpu,cpu` (concurrency: one job per pipeline),
    with every transformer call recorded as (pipeline, time)."""
    pipes = devices.load_workers(LoadOptions(model="tiny-random"), ["cpu", "cpu"])
    calls: list[tuple[int, float]] = []
    for k, pipe in enumerate(pipes):
        pipe.transformer.register_forward_pre_hook(lambda *_, k=k: calls.append((k, time.perf_counter())))
    workers = [LocalWorker(pipe, name=f"cpu#{k + 1}") for k, pipe in enumerate(pipes)]
    with serve(tmp_path_factory.mktemp("two"), config=dict(concurrency=2, workers=workers)) as (app, _):
        yield app, pipes, calls


def client(app):
    return Client(app.local_url, verbose=False)


def pixels(path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert("RGB")).astype(int)


def test_the_page_says_where_images_are_made(two):
    app, _pipes, _calls = two
    config = app.get_config_file()
    texts = [c["props"].get("value") for c in config["components"] if c["props"].get("elem_id") == "workers-banner"]
    assert texts == ["Running on 2 pipelines (cpu#1, cpu#2)."]


def test_two_single_images_run_at_once_one_on_each_pipeline(two):
    app, pipes, calls = two
    calls.clear()
    alice, bob = client(app), client(app)
    jobs = [alice.submit(**{**ARGS, "steps": 12, "seed": 1}, api_name="/generate")]
    jobs.append(bob.submit(**{**ARGS, "steps": 12, "seed": 2}, api_name="/generate"))
    results = [job.result(timeout=120) for job in jobs]
    assert [seed for _, seed, _ in results] == [1, 2]
    by_pipe = {k: [t for j, t in calls if j == k] for k in (0, 1)}  # 12 steps, one guided call each
    assert all(len(times) == 12 for times in by_pipe.values()), {k: len(t) for k, t in by_pipe.items()}
    # at once: each pipeline started before the other had finished
    assert by_pipe[0][0] < by_pipe[1][-1] and by_pipe[1][0] < by_pipe[0][-1]
    for path, _seed, _ in results:  # each image is the one a single pipeline makes (both load the same weights)
        settings = metadata.read_png_metadata(str(path))["settings"]
        expected = generate.generate(pipes[0], settings)
        assert np.array_equal(pixels(path), np.asarray(expected.image).astype(int))


def test_a_sheets_cells_are_spread_over_both_pipelines(two):
    app, pipes, calls = two
    calls.clear()
    _sheet, cells, status, _zip, *_ = client(app).predict(**SHEET, api_name="/contact_sheet")
    assert len(cells) == 4 and "4 cells" in status
    used = {k for k, _ in calls}
    assert used == {0, 1}, "both pipelines should make cells"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each worker ran the sheet
    try:
        for cell in cells:
            path = cell["image"]["path"] if isinstance(cell["image"], dict) else cell["image"]
            made = generate.generate(pipes[0], metadata.read_png_metadata(str(path))["settings"])
            assert np.abs(pixels(path) - np.asarray(made.image).astype(int)).max() <= 1
    finally:
        torch.set_num_threads(threads)


def test_one_users_stop_stops_only_their_job_while_the_other_pipeline_works(two):
    app, _pipes, calls = two
    alice, bob = client(app), client(app)
    running = alice.submit(**{**ARGS, "steps": 50, "width": 256, "height": 256}, api_name="/generate")
    deadline = time.time() + 120
    while running.status().code.name != "PROGRESS":
        assert not running.done() and time.time() < deadline
        time.sleep(0.05)
    other = bob.submit(**{**ARGS, "steps": 8, "seed": 77}, api_name="/generate")
    stopped = threading.Event()

    def stop_alice():
        time.sleep(0.3)
        alice.predict(api_name="/stop")
        stopped.set()

    stopper = threading.Thread(target=stop_alice)
    stopper.start()
    path, seed, _ = other.result(timeout=120)  # Bob's job runs on the other pipeline, and is not stopped
    assert seed == 77 and Path(path).is_file()
    with pytest.raises(AppError, match="Stopped"):
        running.result(timeout=120)
    stopper.join(30)
    assert stopped.is_set()


def test_demo_devices_flag_serves_on_two_pipelines(tmp_path):
    """`python demo.py --devices cpu,cpu` as a user starts it: two pipelines loaded before serving, named in the log,
    and images made through the API; a device that does not exist stops it at start in one line."""
    import os
    import socket
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "SD35UI_OUTPUTS": str(tmp_path / "outputs"), "HF_HUB_OFFLINE": "1"}
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bad = subprocess.run(
        [sys.executable, "demo.py", "--model", "tiny-random", "--devices", "cpu,3", "--port", str(port)],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 1 and "Error: Devices: there is no GPU 3" in bad.stderr and "Traceback" not in bad.stderr
    log = tmp_path / "demo.log"
    with open(log, "w") as out:
        argv = [sys.executable, "demo.py", "--model", "tiny-random", "--devices", "cpu,cpu", "--port", str(port)]
        proc = subprocess.Popen(argv, cwd=root, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 180
        while "Running on local URL" not in (text := log.read_text()):
            assert proc.poll() is None, f"demo.py exited early:\n{text[-3000:]}"
            assert time.monotonic() < deadline, text[-3000:]
            time.sleep(0.5)
        assert "2 pipelines: cpu#1, cpu#2" in text
        _path, seed, _ = Client(f"http://127.0.0.1:{port}/", verbose=False).predict(**ARGS, api_name="/generate")
        assert seed == 5
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
