"""Stop through the real app on the tiny model: the Generate and Compare tabs' Stop buttons and /stop are one
behaviour (`AppContext.stop`): they stop the caller's running job within one step, or the job still waiting in the
queue as soon as it starts, and they are answered however full the queue is (`server.JobsBoundQueue`). One user's
Stop never ends another's job; a job whose client went away or cancelled it frees the GPU within a step."""

from __future__ import annotations

import inspect
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import gradio as gr
import httpx
import pytest
from app_support import ARGS, LONG, SHEET, serve, wait_until_queued, wait_until_running
from gradio import queueing
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError

ROOT = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def press(app, handler: str, session_hash: str) -> None:
    """Press the Stop button whose handler is `handler`, as the page does: outside the queue (queue=False), by the
    event's index, in the user's session."""
    fn_index = next(index for index, fn in app.fns.items() if fn.name == handler)
    body = {"data": [], "fn_index": fn_index, "session_hash": session_hash}
    response = httpx.post(f"{app.local_url}gradio_api/run/predict", json=body, timeout=30)
    assert response.status_code == 200, response.text


@pytest.mark.parametrize("button", ["stop_sheet", "stop_generation"])  # the Compare tab's Stop, the Generate tab's
def test_stop_pressed_while_a_sheet_waits_in_the_queue_stops_it_when_it_starts(app_server, button):
    app, _ = app_server
    alice, bob = Client(app.local_url, verbose=False), Client(app.local_url, verbose=False)
    running = alice.submit(**LONG, api_name="/generate")
    wait_until_running(running)
    waiting = bob.submit(**SHEET, resume=False, api_name="/contact_sheet")  # resume=False: no cell read back
    wait_until_queued(waiting)
    press(app, button, bob.session_hash)
    alice.predict(api_name="/stop")
    with pytest.raises(AppError, match="Stopped"):
        running.result(timeout=120)
    _, cells, status, *_ = waiting.result(timeout=120)
    assert cells == [] and "stopped: 0 of 4 cells kept" in status, status  # it made no cell
    _, cells, status, *_ = bob.predict(**SHEET, resume=False, api_name="/contact_sheet")
    assert len(cells) == 4 and "stopped" not in status, "and Bob's next sheet is not stopped"


def test_a_stop_with_nothing_to_stop_leaves_the_next_job_alone(app_server):
    app, _ = app_server
    carol = Client(app.local_url, verbose=False)
    press(app, "stop_sheet", carol.session_hash)
    carol.predict(api_name="/stop")
    _, cells, status, *_ = carol.predict(**SHEET, resume=False, api_name="/contact_sheet")
    assert len(cells) == 4 and "stopped" not in status


def stop_through_call(app, session_hash: str) -> None:
    """/stop as curl sends it, POST /gradio_api/call/stop, in the session of the job to stop. (Its result comes on
    that session's event stream, which the session's own client reads here.)"""
    body = {"data": [], "session_hash": session_hash}
    response = httpx.post(f"{app.local_url}gradio_api/call/stop", json=body, timeout=30)
    assert response.status_code == 200 and response.json()["event_id"], response.text  # refused: 503 Queue is full


@pytest.mark.parametrize("how", ["gradio_client", "/gradio_api/call/stop"])
def test_stop_is_answered_when_the_queue_is_full(app_server, how):
    app, config = app_server
    alice, bob, carol = (Client(app.local_url, verbose=False) for _ in range(3))
    running = alice.submit(**LONG, api_name="/generate")
    try:
        wait_until_running(running)
        waiting = [bob.submit(**{**ARGS, "seed": 700 + i}, api_name="/generate") for i in range(config.queue_size)]
        for job in waiting:
            wait_until_queued(job)
        with pytest.raises(QueueError, match="Queue is full"):  # the queue is full: a job is refused ...
            carol.submit(**ARGS, api_name="/generate").result(timeout=60)
        if how == "gradio_client":  # ... but Stop is answered (a refusal would raise QueueError)
            alice.predict(api_name="/stop")
        else:
            stop_through_call(app, alice.session_hash)
        with pytest.raises(AppError, match="Stopped"):
            running.result(timeout=120)
    finally:  # if not: stop the long job as the page does, so that it does not hold the shared app's GPU
        press(app, "stop_generation", alice.session_hash)
    assert [job.result(timeout=120)[1] for job in waiting] == [700 + i for i in range(config.queue_size)]
    assert carol.predict(**ARGS, api_name="/generate")[0].endswith(".png"), "and the queue takes jobs again"


def test_the_gradio_queue_internals_that_admitting_stop_relies_on(app_server):
    """`JobsBoundQueue` takes over Gradio 6.31's `max_size` check in `Queue.push`: check what it assumes, so that a
    Gradio upgrade that changes them fails here by name (the tests above fail too, less plainly)."""
    app, config = app_server
    queue = app._queue
    assert isinstance(queue, queueing.Queue) and type(queue).push is not queueing.Queue.push
    assert list(inspect.signature(queueing.Queue.push).parameters) == ["self", "body", "request", "username"]
    source = inspect.getsource(queueing.Queue.push)
    assert "self.max_size is not None and len(self) >= self.max_size" in source, "Gradio's check moved"
    assert queue.max_size is None and queue.job_limit == config.queue_size  # Gradio's check off, ours on
    with gr.Blocks() as blocks:
        gr.Button().click(lambda: None)
    made_by_gradio = blocks.queue(max_size=config.queue_size, default_concurrency_limit=config.concurrency)._queue
    for name in ("live_updates", "update_intervals", "default_concurrency_limit"):
        assert getattr(queue, name) == getattr(made_by_gradio, name), f"Blocks.queue() now sets {name} otherwise"
    assert made_by_gradio.max_size == queue.job_limit
    stops = {fn.name: fn.queue for fn in app.fns.values() if fn.name in ("stop_generation", "stop_sheet")}
    assert stops == {"stop_generation": False, "stop_sheet": False}, "both are wired outside the queue: admitted"


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
