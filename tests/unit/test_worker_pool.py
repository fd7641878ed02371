"""`WorkerPool` hands workers out one job at a time: any free one, or a named one, first come first served."""

from __future__ import annotations

import threading
import time

import pytest

from sd35ui.core.workers import WorkerPool


class Slot:
    """A stand-in worker: the pool only hands workers out, it never calls them."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


def taken_in_thread(pool, wanted=None):
    """Start a thread that takes a worker and keeps it until `release` is set; `got` says which it took."""
    got, release, holding = [], threading.Event(), threading.Event()

    def run():
        with pool.hold(wanted) as worker:
            got.append(worker)
            holding.set()
            release.wait(5)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, got, release, holding


def test_single_jobs_take_whichever_worker_is_free():
    a, b = Slot("a"), Slot("b")
    pool = WorkerPool([a, b])
    with pool.hold() as first, pool.hold() as second:
        assert {first, second} == {a, b}
    with pool.hold(b) as named:
        assert named is b
        with pool.hold() as other:
            assert other is a


def test_a_job_waits_until_a_worker_is_given_back():
    a = Slot("a")
    pool = WorkerPool([a])
    thread, got, release, holding = taken_in_thread(pool)
    holding.wait(5)
    waiter, got2, release2, holding2 = taken_in_thread(pool)
    assert not holding2.wait(0.2), "the second job must wait while the only worker is held"
    release.set()
    assert holding2.wait(5) and got2 == [a]
    release2.set()
    thread.join(5)
    waiter.join(5)


def test_a_given_back_worker_goes_to_the_longest_waiting_job_not_back_to_a_sheet():
    """A sheet gives its worker back after every cell and asks for it again at once; a single image that was
    already waiting gets it first."""
    a = Slot("a")
    pool = WorkerPool([a])
    order = []
    sheet_has_it = threading.Event()

    def sheet_cells():
        for cell in range(3):
            with pool.hold(a):
                order.append(f"cell {cell}")
                sheet_has_it.set()
                time.sleep(0.05)

    sheet = threading.Thread(target=sheet_cells)
    sheet.start()
    sheet_has_it.wait(5)
    with pool.hold():  # waits for the first cell, then must come before the sheet's next cell
        order.append("image")
    sheet.join(5)
    assert order == ["cell 0", "image", "cell 1", "cell 2"]


def test_a_job_waiting_for_one_worker_does_not_take_another():
    a, b = Slot("a"), Slot("b")
    pool = WorkerPool([a, b])
    thread, got, release, holding = taken_in_thread(pool, a)
    holding.wait(5)
    waiter, got2, release2, holding2 = taken_in_thread(pool, a)
    assert not holding2.wait(0.2)
    with pool.hold() as free:  # b is free, and nobody waits for b: no queue is jumped
        assert free is b
    release.set()
    assert holding2.wait(5) and got2 == [a]
    release2.set()
    thread.join(5)
    waiter.join(5)


def test_an_empty_pool_is_refused():
    with pytest.raises(ValueError, match="at least one worker"):
        WorkerPool([])


def test_a_job_stopped_while_waiting_for_a_worker_gives_up_and_leaves_the_queue():
    from sd35ui.core.generate import GenerationStopped

    a = Slot("a")
    pool = WorkerPool([a])
    thread, _got, release, holding = taken_in_thread(pool)
    holding.wait(5)
    stop = threading.Event()
    threading.Timer(0.2, stop.set).start()
    started = time.monotonic()
    with pytest.raises(GenerationStopped):
        with pool.hold(stop=stop):
            pass
    assert time.monotonic() - started < 2, "gives up within a poll of the stop, not when the worker is free"
    release.set()
    thread.join(5)
    with pool.hold() as worker:  # the stopped job left the queue: the worker came back free
        assert worker is a
