"""The queue of a live app on the tiny model, shared by many users of one GPU: each client is told its own place and
jobs are served first come, first served; a full queue says so, and the server takes jobs again once it has room.
Stop in a busy queue is in tests/app/test_stop.py."""

from __future__ import annotations

from pathlib import Path

import pytest
from app_support import ARGS, LONG, post, result_files, serve, wait_until_queued, wait_until_running
from gradio_client import Client
from gradio_client.exceptions import AppError
from gradio_client.utils import QueueError


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


def test_a_full_queue_says_so_and_the_server_recovers(tmp_path):
    with serve(tmp_path, config=dict(queue_size=1)) as (app, _):
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
