"""Workers: what makes the images, behind one interface, whether a pipeline in this process (`LocalWorker`, one per
device: `sd35ui.core.devices`) or a pipeline in a Ray actor, perhaps on another machine (`sd35ui.core.ray_workers`).

A `WorkerPool` hands workers out: a single image takes whichever worker is free (first come, first served), and
`run_sheet_on` spreads a sheet's cells over every worker, one cell at a time, so a single image waits at most one
cell for a worker that a sheet is using. Each job has its own stop signal, so one user's Stop stops only their job.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from sd35ui.core import generate, sheet
from sd35ui.core.settings import GenerationSettings
from sd35ui.core.sheet_run import Encoder, encode_up_front, run_cell
from sd35ui.core.tokens import TokenCount, count_tokens

# A cell is made exactly as `sheet.run_sheet` makes one, through the run module's own per-cell path (`Encoder`,
# `encode_up_front`, `run_cell`), so the two cannot drift apart.

StepCallback = Callable[[int, int], None]  # (step done, steps)
log = logging.getLogger(__name__)
STOP_POLL_SECONDS = 0.1  # how often a job waiting for a worker checks its stop


class WorkerLost(RuntimeError):
    """A worker is gone for good (a Ray actor whose process or node died): the pool drops it, and its job is made
    again on another worker where there is one."""


@runtime_checkable
class Worker(Protocol):
    """One pipeline that makes images, one job at a time.

    A sheet is one *job* (a name unique to it): `start_job` gives its cells, `make_cell` makes one of them with the
    job's prompt encodings and shared first steps, kept until `end_job`. `stop` (anything with `is_set()`) ends a
    job within one step: `generate.GenerationStopped` is raised."""

    name: str

    def identity(self) -> tuple[str, dict[str, Any]]:
        """The model's name and how it was loaded (`pipeline.recipe`): what makes two workers' pixels equal."""
        ...

    def generate(
        self, settings: GenerationSettings, on_step: StepCallback | None = None, stop: Any = None
    ) -> generate.GenerationResult: ...

    def start_job(self, job: str, cells: Sequence[sheet.Cell]) -> None:
        """Say which cells the job may ask for: under model offload a worker encodes their texts at its first cell
        and keeps its transformer on the GPU until `end_job`."""
        ...

    def make_cell(
        self,
        job: str,
        cell: sheet.Cell,
        n_cells: int,
        on_progress: sheet.ProgressCallback | None = None,
        stop: Any = None,
    ) -> sheet.CellResult: ...

    def end_job(self, job: str) -> int:
        """Forget the job's encodings; returns how many transformer calls its shared first steps saved."""
        ...

    def count_tokens(self, prompt: str) -> TokenCount: ...

    def free(self) -> None:
        """Give back GPU memory after running out of it."""
        ...


class _Job:
    """A sheet's state on one worker: its cells (whose texts are encoded first under offload), the encodings and
    shared first steps, and, under model offload, the models kept on the GPU until the job ends."""

    def __init__(self, cells: Sequence[sheet.Cell]) -> None:
        self.cells = cells
        self.encoder: Encoder | None = None
        self.resident = contextlib.ExitStack()


class LocalWorker:
    """A pipeline in this process: `pipe`, or the one `load()` returns each time it is needed (the app's default
    worker loads with `get_pipeline(options)`: on first use, and shared with the rest of the process)."""

    def __init__(
        self,
        pipe: Any = None,
        *,
        load: Callable[[], Any] | None = None,
        name: str | None = None,
        cache: generate.PromptCache | None = None,
    ) -> None:
        if (pipe is None) == (load is None):
            raise TypeError("LocalWorker takes a pipeline or a function that loads one, not both")
        self._pipe, self._load = pipe, load
        self.cache = cache if cache is not None else generate.prompt_cache
        self.name = name or "local"
        self._jobs: dict[str, _Job] = {}
        self._jobs_lock = threading.Lock()

    @property
    def pipe(self) -> Any:
        return self._pipe if self._load is None else self._load()

    @property
    def device(self) -> str:
        options = getattr(self.pipe, "sd35ui_options", None)
        return options.device if options is not None else str(self.pipe.transformer.device)

    def identity(self) -> tuple[str, dict[str, Any]]:
        from sd35ui.core.pipeline import recipe

        pipe = self.pipe
        return generate.model_name(pipe), recipe(pipe)

    def generate(
        self, settings: GenerationSettings, on_step: StepCallback | None = None, stop: Any = None
    ) -> generate.GenerationResult:
        return generate.generate(self.pipe, settings, on_step=on_step, stop=stop)

    def start_job(self, job: str, cells: Sequence[sheet.Cell]) -> None:
        with self._jobs_lock:
            self._jobs.setdefault(job, _Job(cells))

    def make_cell(
        self,
        job: str,
        cell: sheet.Cell,
        n_cells: int,
        on_progress: sheet.ProgressCallback | None = None,
        stop: Any = None,
    ) -> sheet.CellResult:
        pipe = self.pipe
        with self._jobs_lock:
            state = self._jobs.setdefault(job, _Job([cell]))
        if state.encoder is None:  # the job's first cell here
            state.encoder = Encoder(pipe, self.cache)
            state.encoder.first_steps = generate.FirstStepCache()  # as run_sheet's: one per sheet and pipeline
            # Under model offload, as `run_sheet`: the job's texts encoded first, then the transformer stays on the
            # GPU until `end_job` (entered outside the pipeline lock, which `resident_models` takes itself).
            state.resident.enter_context(generate.resident_models(pipe))
            encode_up_front(pipe, list(state.cells), state.encoder, stop)
        with generate.pipe_lock(pipe):
            return run_cell(pipe, cell, state.encoder, n_cells, on_progress, stop)

    def end_job(self, job: str) -> int:
        with self._jobs_lock:
            state = self._jobs.pop(job, None)
        if state is None or state.encoder is None:
            return 0
        state.resident.close()  # under model offload: every model offloaded again
        return state.encoder.first_steps.hits if state.encoder.first_steps is not None else 0

    def count_tokens(self, prompt: str) -> TokenCount:
        return count_tokens(self.pipe, prompt)

    def free(self) -> None:
        from sd35ui.core.pipeline import free_memory

        self.pipe.maybe_free_model_hooks()
        free_memory()


class _Wait:
    def __init__(self, wanted: Worker | None) -> None:
        self.wanted, self.worker, self.ready = wanted, None, threading.Event()


class WorkerPool:
    """Workers handed out one job at a time: `hold()` takes whichever is free, `hold(worker)` that one. Waiting
    jobs are served first come, first served: a worker given back goes to the longest-waiting job that can take it,
    so a sheet that gives its workers back after every cell cannot starve a single image. Written by hand: neither
    `queue` nor `concurrent.futures` hands out a particular item or an any-item fairly."""

    def __init__(self, workers: Sequence[Worker]) -> None:
        if not workers:
            raise ValueError("A worker pool needs at least one worker.")
        self.workers = list(workers)
        self._free = list(self.workers)
        self._waiting: collections.deque[_Wait] = collections.deque()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self.workers)

    @contextlib.contextmanager
    def hold(self, worker: Worker | None = None, stop: Any = None) -> Iterator[Worker]:
        """Hold `worker` (or whichever is free first) for one job. Once `stop` is set (anything with `is_set()`),
        a job still waiting for a worker gives up with `generate.GenerationStopped`."""
        got = self._take(worker, stop)
        try:
            yield got
        finally:
            self._give_back(got)

    def _take(self, wanted: Worker | None, stop: Any) -> Worker:
        with self._lock:
            # No waiting job wants a free worker (`_give_back` would have handed it over), so taking one here
            # jumps no queue.
            for worker in self._free:
                if wanted is None or worker is wanted:
                    self._free.remove(worker)
                    return worker
            wait = _Wait(wanted)
            self._waiting.append(wait)
        while not wait.ready.wait(STOP_POLL_SECONDS):
            if stop is not None and stop.is_set():
                with self._lock:
                    if wait.worker is None:  # not handed one meanwhile (`_give_back` hands over under the lock)
                        self._waiting.remove(wait)
                        raise generate.GenerationStopped()
        assert wait.worker is not None
        return wait.worker

    def _give_back(self, worker: Worker) -> None:
        with self._lock:
            if worker not in self.workers:  # dropped while held
                return
            for wait in self._waiting:
                if wait.wanted is None or wait.wanted is worker:
                    self._waiting.remove(wait)
                    wait.worker = worker
                    wait.ready.set()
                    return
            self._free.append(worker)

    def drop(self, worker: Worker, why: BaseException) -> bool:
        """Take a lost worker out of the pool for good, unless it is the last one (then every job keeps saying why
        it failed). Returns whether it was dropped."""
        with self._lock:
            if worker not in self.workers or len(self.workers) == 1:
                return False
            self.workers.remove(worker)
            if worker in self._free:
                self._free.remove(worker)
        log.warning("Worker %s is gone and no longer gets jobs (%s); %d left", worker.name, why, len(self.workers))
        return True

    def generate(
        self, settings: GenerationSettings, on_step: StepCallback | None = None, stop: Any = None
    ) -> generate.GenerationResult:
        """One image on whichever worker is free first; made again on another if that worker is lost."""
        while True:
            with self.hold(stop=stop) as worker:
                try:
                    return worker.generate(settings, on_step=on_step, stop=stop)
                except WorkerLost as exc:
                    if not self.drop(worker, exc):
                        raise

    def count_tokens(self, prompt: str) -> TokenCount:
        """Counting needs only the tokenizers, which every worker has: no worker is held for it."""
        return self.workers[0].count_tokens(prompt)


def as_pool(workers: WorkerPool | Sequence[Any], cache: generate.PromptCache | None = None) -> WorkerPool:
    """`workers` as a pool; pipelines among them become `LocalWorker`s (using `cache` for prompts)."""
    if isinstance(workers, WorkerPool):
        return workers
    if not workers:
        from sd35ui.core.devices import DEVICES_HELP

        raise ValueError(f"Devices: no pipelines to run the sheet on. Use {DEVICES_HELP}.")
    names = collections.Counter()
    made = []
    for worker in workers:
        if not isinstance(worker, Worker):
            local = LocalWorker(worker, cache=cache)
            names[local.device] += 1
            local.name = f"{local.device}#{names[local.device]}"
            worker = local
        made.append(worker)
    return WorkerPool(made)


@contextlib.contextmanager
def cpu_threads(workers: Sequence[Worker]) -> Iterator[bool]:
    """With more than one CPU worker in this process, one torch thread each for the run (yields True): two workers
    with torch's default threads each spin-wait on the other's cores. `torch.set_num_threads` is process-wide
    (threads started later inherit it), so for the run every other torch user in this process gets one thread too;
    the number before is restored after. Otherwise nothing is changed (yields False)."""
    import torch

    if sum(isinstance(w, LocalWorker) and w.device == "cpu" for w in workers) < 2:
        yield False
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield True
    finally:
        torch.set_num_threads(before)


class _Either:
    """Set when the user's `stop` is set or a worker failed: what every worker's denoising loop checks (it only
    calls `is_set()`), so all of them end within one step."""

    def __init__(self, stop: threading.Event | None) -> None:
        self.stop, self.failed = stop, threading.Event()

    def is_set(self) -> bool:
        return self.failed.is_set() or (self.stop is not None and self.stop.is_set())


def run_sheet_on(
    workers: WorkerPool | Sequence[Any],
    spec: sheet.SheetSpec,
    on_progress: sheet.ProgressCallback | None = None,
    stop: threading.Event | None = None,
    on_cell: sheet.CellCallback | None = None,
    *,
    cache: generate.PromptCache | None = None,
    max_cells: int = sheet.MAX_CELLS,
    max_pixels: int = sheet.MAX_SHEET_PIXELS,
    reuse: Mapping[str, Path] | None = None,
) -> sheet.SheetResult:
    """`sheet.run_sheet` with the cells spread over `workers` (a pool, workers, or pipelines): one thread per worker
    takes the next cell from a shared queue, holds its worker for that cell (`WorkerPool.hold`), and has it made as
    `run_sheet` makes a cell, so each cell equals the one-pipeline sheet's on the same device and dtype.
    `result.cells` are in finishing order; `on_progress` and `on_cell` are called one at a time. `stop` ends every
    worker within one step. A failure in any worker stops the others, then is raised; out of GPU memory raises
    `sheet.SheetOutOfMemory` holding the finished cells. `reuse` reads saved cells back as `run_sheet` does."""
    pool = as_pool(workers, cache)
    spec = spec.resolved()
    sheet.check_sheet(spec, max_cells, max_pixels)
    cells = sheet.plan_sheet(spec)
    model, recipe = pool.workers[0].identity()
    result = sheet.SheetResult(spec=spec, model=model)
    start = time.perf_counter()
    todo: queue.SimpleQueue[sheet.Cell] = queue.SimpleQueue()
    left = sheet.take_reused(cells, model, recipe, reuse or {}, result, on_cell)
    for cell in left:
        todo.put(cell)
    run = _SheetJob(pool, left, len(cells), result, on_progress, on_cell, _Either(stop))
    with cpu_threads(pool.workers) as one_thread:
        run.run(todo, one_thread)
    result.seconds = time.perf_counter() - start
    if run.errors:
        _raise_first(run.errors, pool, result, len(cells))
    result.stopped = len(result.cells) < len(cells)
    return result


class _SheetJob:
    """One sheet being made on a pool: a thread per worker, each making cells until the queue is empty."""

    def __init__(
        self,
        pool: WorkerPool,
        cells: Sequence[sheet.Cell],
        n_cells: int,
        result: sheet.SheetResult,
        on_progress: sheet.ProgressCallback | None,
        on_cell: sheet.CellCallback | None,
        halt: _Either,
    ) -> None:
        self.pool, self.cells, self.n_cells, self.result = pool, cells, n_cells, result  # `cells`: those to make
        self.on_progress, self.on_cell, self.halt = on_progress, on_cell, halt
        self.job = f"sheet-{uuid.uuid4().hex}"
        self.report = threading.Lock()
        self.errors: list[BaseException] = []

    def progress(self, index: int, n: int, step: int, steps: int) -> None:
        if self.on_progress is not None:
            with self.report:
                self.on_progress(index, n, step, steps)

    def work(self, worker: Worker, todo: queue.SimpleQueue[sheet.Cell], one_thread: bool) -> None:
        if one_thread:
            import torch

            torch.set_num_threads(1)  # this thread's OpenMP pool too, whatever it inherited
        cell = None
        try:
            worker.start_job(self.job, self.cells)
            while not self.halt.is_set():
                try:
                    cell = todo.get_nowait()
                except queue.Empty:
                    return
                with self.pool.hold(worker, self.halt):
                    done = worker.make_cell(self.job, cell, self.n_cells, self.progress, self.halt)
                cell = None
                with self.report:
                    self.result.cells.append(done)
                    if self.on_cell is not None:
                        self.on_cell(done)
        except generate.GenerationStopped:
            return
        except WorkerLost as exc:
            if cell is not None:
                todo.put(cell)  # made again by another worker (`run` goes on while cells are left)
            if not self.pool.drop(worker, exc):
                self._failed(exc)
        except BaseException as exc:  # noqa: BLE001  (re-raised by the caller's thread: `run_sheet_on`)
            self._failed(exc)
        finally:
            self._end(worker)

    def _failed(self, error: BaseException) -> None:
        with self.report:
            self.errors.append(error)
        self.halt.failed.set()

    def _end(self, worker: Worker) -> None:
        try:
            shared = worker.end_job(self.job)
        except WorkerLost:
            shared = 0
        with self.report:
            self.result.first_steps_shared += shared

    def run(self, todo: queue.SimpleQueue[sheet.Cell], one_thread: bool) -> None:
        """A thread per worker until the cells are made; again on the workers left while a lost worker's cell is
        back in the queue after the others finished. Ctrl-C in the caller's thread stops them within a step, then
        goes on."""
        while not todo.empty() and not self.halt.is_set():
            threads = [
                threading.Thread(target=self.work, args=(w, todo, one_thread), name=f"sheet-{w.name}", daemon=True)
                for w in list(self.pool.workers)
            ]
            for thread in threads:
                thread.start()
            try:
                for thread in threads:
                    thread.join()
            except BaseException:
                self.halt.failed.set()
                for thread in threads:
                    thread.join()
                raise


def _raise_first(errors: list[BaseException], pool: WorkerPool, result: sheet.SheetResult, n_cells: int) -> None:
    """Raise the first worker's error; out of GPU memory as `sheet.SheetOutOfMemory` with the finished cells, once
    every worker's memory is freed."""
    import torch

    error = errors[0]
    if isinstance(error, torch.OutOfMemoryError | generate.GenerationOutOfMemory):
        for worker in pool.workers:
            worker.free()
        what = f"a cell of the sheet ({len(result.cells)} of {n_cells} cells were made)"
        raise sheet.SheetOutOfMemory(generate.out_of_memory_advice(what), result) from error
    raise error
