"""Pipelines as Ray actors (`sd35ui.core.ray_workers`), on a local Ray with two CPU actors of the tiny random SD3
pipeline: they make the one-worker sheet's cells, take single images through the same `WorkerPool`, and Stop
cancels the actor's job. Skipped where Ray (the optional extra, requirements-ray.txt) is not installed; CI installs
it."""

from __future__ import annotations

import collections
import os
import threading

import numpy as np
import pytest
from PIL import Image

os.environ.setdefault("HF_HUB_OFFLINE", "1")
ray = pytest.importorskip("ray")

from sd35ui.core import generate, ray_workers, sheet, workers  # noqa: E402
from sd35ui.core.pipeline import LoadOptions, load_pipeline, model_spec  # noqa: E402
from sd35ui.core.settings import GenerationSettings  # noqa: E402

TINY = model_spec("tiny-random")
BASE = GenerationSettings(prompt="a red fox", width=32, height=32, steps=3, guidance=4.5, seed=11)


@pytest.fixture(scope="module")
def actors():
    """Two CPU actors on a Ray started here for this module (`--ray local --devices all` on a 2-core machine gives
    one per CPU slot; named explicitly so that the test does not depend on the cores)."""
    made = ray_workers.ray_workers(LoadOptions(model="tiny-random"), "local", "cpu,cpu")
    yield made
    ray.shutdown()


@pytest.fixture(scope="module")
def local():
    """One pipeline in this process, one torch thread (as each actor has), for the expected pixels."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield load_pipeline(LoadOptions(model="tiny-random"))
    torch.set_num_threads(threads)


def counted(pool_workers):
    """Cells made per worker, counted around each worker's own `make_cell`."""
    made = collections.Counter()
    for worker in pool_workers:
        make = worker.make_cell

        def make_cell(*args, worker=worker, make=make, **kwargs):
            made[worker.name] += 1
            return make(*args, **kwargs)

        worker.make_cell = make_cell
    return made


def test_actors_start_one_per_device_with_one_thread_each(actors):
    assert [w.name for w in actors] == ["ray-cpu#1", "ray-cpu#2"]
    assert [w.info for w in actors] == [{"model": "tiny-random", "device": "CPU", "threads": 1}] * 2
    model, recipe = actors[0].identity()
    assert model == "tiny-random" and recipe["dtype"] == "float32" and recipe["device"] == "cpu"


def test_two_actors_make_the_one_worker_sheet(actors, local):
    spec = sheet.make_spec(BASE, "Guidance", "3, 6", "Steps", "2, 3, 4", model=TINY)
    one = sheet.run_sheet(local, spec)
    steps, cells = [], []
    made = counted(actors)
    two = workers.run_sheet_on(actors, spec, on_progress=lambda *s: steps.append(s), on_cell=cells.append)
    assert sorted(done.cell.index for done in two.cells) == list(range(6)) and two.complete and not two.stopped
    assert cells == two.cells
    assert all(made[w.name] > 0 for w in actors), f"both actors should make cells: {dict(made)}"
    assert len(steps) == sum(generate.loop_length(c.settings) for c in sheet.plan_sheet(spec))
    assert two.first_steps_shared > 0  # each actor shares its first steps across its cells, as a local worker
    expected = {done.cell.index: np.asarray(done.image) for done in one.cells}
    assert all(np.array_equal(expected[done.cell.index], np.asarray(done.image)) for done in two.cells)
    assert np.array_equal(np.asarray(one.image()), np.asarray(two.image()))


def test_a_single_image_through_the_pool_is_the_local_image(actors, local):
    pool = workers.WorkerPool(actors)
    steps = []
    made = pool.generate(BASE, on_step=lambda i, n: steps.append((i, n)))
    assert steps == [(1, 3), (2, 3), (3, 3)]
    expected = generate.generate(local, BASE)
    assert made.seed == 11 and np.array_equal(np.asarray(made.image), np.asarray(expected.image))


def test_actors_forget_finished_jobs(actors):
    """Images and sheets with and without progress callbacks leave no stop signal or steps behind in the actors."""
    pool = workers.WorkerPool(actors)
    pool.generate(BASE)
    pool.generate(BASE, on_step=lambda *_: None)
    workers.run_sheet_on(actors, sheet.make_spec(BASE, "Guidance", "3, 6", model=TINY))
    for worker in actors:
        kept = ray.get(worker.actor.__ray_call__.remote(lambda actor: (actor._stops, actor._steps)))
        assert kept == ({}, {}), worker.name


def test_stop_cancels_the_actors_job_and_the_actor_serves_the_next(actors):
    pool = workers.WorkerPool(actors)
    stop, steps = threading.Event(), []

    def on_step(i, n):
        steps.append(i)
        stop.set()

    with pytest.raises(generate.GenerationStopped):
        pool.generate(BASE.replace(steps=50), on_step=on_step, stop=stop)
    assert 1 <= len(steps) < 50
    again = pool.generate(BASE)  # the stopped job is over; the actors take new ones
    assert again.image.size == (32, 32)


def test_stop_ends_a_sheet_on_every_actor(actors):
    spec = sheet.make_spec(BASE.replace(steps=40), "Guidance", "3, 6", "Seed", "1, 2", model=TINY)
    stop = threading.Event()
    result = workers.run_sheet_on(actors, spec, on_progress=lambda *_: stop.set(), stop=stop)
    assert result.stopped and not result.cells


def test_one_users_stop_leaves_anothers_job_running(actors):
    pool = workers.WorkerPool(actors)
    mine, theirs = threading.Event(), threading.Event()
    finished = {}

    def other_user():
        finished["theirs"] = pool.generate(BASE.replace(steps=12), stop=theirs)

    thread = threading.Thread(target=other_user)
    thread.start()
    with pytest.raises(generate.GenerationStopped):
        pool.generate(BASE.replace(steps=50), on_step=lambda *_: mine.set(), stop=mine)
    thread.join()
    assert finished["theirs"].image.size == (32, 32) and not theirs.is_set()


def test_an_actors_error_arrives_as_its_own_exception(actors):
    with pytest.raises(ValueError, match="specify either `text`"):  # the tokenizer's own message, from the actor
        actors[0].count_tokens(None)
    assert actors[0].count_tokens("a red fox").clip == actors[1].count_tokens("a red fox").clip > 0


@pytest.mark.parametrize(
    ("text", "gpus", "cpus", "expected"),
    [
        ("all", 2, 16, ["cuda", "cuda"]),
        ("all", 0, 2, ["cpu", "cpu"]),
        ("0,1", 4, 16, ["cuda", "cuda"]),
        ("cpu,cpu", 0, 2, ["cpu", "cpu"]),
    ],
)
def test_ray_devices(text, gpus, cpus, expected):
    assert ray_workers.parse_ray_devices(text, gpus, cpus) == expected


def test_workers_that_cannot_get_a_slot_are_refused_at_once(actors):
    """Both CPU slots of the test's Ray are held by the module's actors: a third is refused, not left waiting."""
    from sd35ui.core.pipeline import PipelineError

    with pytest.raises(PipelineError, match="has 0 GPUs and 0 CPU slots free, and 1 workers"):
        ray_workers.ray_workers(LoadOptions(model="tiny-random"), "local", "cpu")


def test_ray_devices_name_the_clusters_gpus():
    with pytest.raises(ValueError, match="there is no GPU 1.*On Ray, PyTorch's GPUs are the cluster's: it has 1"):
        ray_workers.parse_ray_devices("0,1", 1, 8)


def test_the_app_sends_its_jobs_to_the_actors(actors, local, tmp_path):
    """`python demo.py --ray local`: the app's /generate, /contact_sheet and /stop go to the actors."""
    from app_support import serve
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    try:
        with serve(tmp_path, config=dict(concurrency=2, workers=actors)) as (app, _):
            alice, bob = Client(app.local_url, verbose=False), Client(app.local_url, verbose=False)
            args = dict(prompt="a red fox", negative_prompt="", steps=3, guidance=4.5, width=32, height=32)
            path, seed, _ = alice.predict(**args, seed=11, randomize_seed=False, api_name="/generate")
            with Image.open(path) as image:
                assert np.array_equal(np.asarray(image), np.asarray(generate.generate(local, BASE).image))
            made = counted(actors)
            axes = dict(x_axis="Guidance", x_values="3, 6", y_axis="Steps", y_values="2, 3")
            _sheet, cells, status, *_ = bob.predict(**args, **axes, seed=11, api_name="/contact_sheet")
            assert len(cells) == 4 and all(made[w.name] > 0 for w in actors), dict(made)
            running = alice.submit(**{**args, "steps": 50}, seed=1, randomize_seed=False, api_name="/generate")
            while running.status().code.name != "PROGRESS":
                assert not running.done()
            alice.predict(api_name="/stop")
            with pytest.raises(AppError, match="Stopped"):
                running.result(timeout=60)
    finally:
        for worker in actors:  # `counted` wrapped them for this test only
            worker.__dict__.pop("make_cell", None)


def test_a_lost_actor_is_dropped_and_its_jobs_are_made_on_the_other(actors, local):
    """Last in this module: it kills one of the module's two actors. A Ray actor whose process dies (a node lost, an
    out-of-memory kill) is dropped from the pool; the single image and the sheet cell it was given are made on the
    other actor instead, and the app keeps serving."""
    pool = workers.WorkerPool(actors)  # the first single image goes to the first free actor: the dead one
    dead, alive = actors
    ray.kill(dead.actor)
    made = [pool.generate(BASE.replace(seed=seed)) for seed in (11, 12)]
    assert pool.workers == [alive]
    assert np.array_equal(np.asarray(made[0].image), np.asarray(generate.generate(local, BASE).image))
    spec = sheet.make_spec(BASE, "Guidance", "3, 6", "Steps", "2, 3", model=TINY)
    result = workers.run_sheet_on(workers.WorkerPool(actors), spec)
    assert result.complete and sorted(done.cell.index for done in result.cells) == [0, 1, 2, 3]
    with pytest.raises(ray_workers.RayWorkerError, match="ray-cpu#1 is gone"):  # alone, it is not dropped
        workers.WorkerPool([dead]).generate(BASE)
