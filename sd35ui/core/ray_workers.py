"""Pipelines as Ray actors: past one machine (`--ray ADDRESS`, or `--ray local` for a Ray started here).

Each actor (`PipelineActor`) loads one pipeline, on one GPU of the cluster or one CPU slot, and runs jobs with a
`LocalWorker` inside it. `RayWorker` is the app's and the sheet engine's side of an actor: the same `Worker`
interface as a local pipeline, so `WorkerPool` and `run_sheet_on` need not know where the pipeline is. While a job
runs, `RayWorker` polls the actor for its steps (the progress bar) and, once the user's stop is set, tells the actor
to stop that job, which then ends within one step as a local job does.

Ray is an optional extra: `pip install -r requirements-ray.txt`. Every node needs sd35ui's requirements installed;
this package itself is sent to the cluster with the job (Ray's `py_modules`), so the nodes need no copy of it.
"""

from __future__ import annotations

import dataclasses
import threading
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from sd35ui.core import generate, sheet
from sd35ui.core.devices import DEVICES_HELP, parse_devices
from sd35ui.core.pipeline import LoadOptions, PipelineError
from sd35ui.core.settings import GenerationSettings
from sd35ui.core.tokens import TokenCount
from sd35ui.core.workers import LocalWorker, StepCallback, WorkerLost

RAY_HELP = "local (start Ray on this machine) or a Ray cluster's address, e.g. ray://head:10001 or auto"
POLL_SECONDS = 0.1  # how often a waiting job asks its actor for steps done (and passes on a Stop)
LOCAL_OBJECT_STORE_BYTES = 256 * 2**20
STARTUP_TIMEOUT_S = 1800.0  # loading SD3.5 Medium on a fresh node downloads about 20 GB


class RayWorkerError(WorkerLost):
    """A Ray actor died (its node was lost, or the process was killed): the pool drops it; the message names it."""


def require_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise PipelineError(
            "--ray needs Ray, an optional extra: pip install -r requirements-ray.txt (or leave out --ray)."
        ) from None
    return ray


class PipelineActor:
    """One pipeline in a Ray actor (made remote by `_actor_class`). Jobs run one at a time in the "work"
    concurrency group; `stop`, `steps` and `count_tokens` run beside them in "control"."""

    def __init__(self, options: LoadOptions) -> None:
        import ray
        import torch

        from sd35ui.core.pipeline import load_pipeline

        if options.device == "cpu":  # as many torch threads as CPU slots Ray gave this actor (one), not the node's
            cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
            torch.set_num_threads(max(1, int(cpus)))
        self.worker = LocalWorker(load_pipeline(options), name=options.device)
        self._stops: dict[str, threading.Event] = {}
        self._steps: dict[str, list[tuple[int, ...]]] = {}
        self._lock = threading.Lock()

    def _stop_of(self, job: str) -> threading.Event:
        with self._lock:
            self._steps.setdefault(job, [])
            return self._stops.setdefault(job, threading.Event())

    def _record(self, job: str, *step: int) -> None:
        with self._lock:
            self._steps.setdefault(job, []).append(step)

    def _forget(self, job: str) -> None:
        with self._lock:
            self._stops.pop(job, None)

    def describe(self) -> dict[str, Any]:
        """What this actor runs: the model, its device's name and torch's threads."""
        import torch

        where = torch.cuda.get_device_name(0) if self.worker.device.startswith("cuda") else "CPU"
        return {"model": generate.model_name(self.worker.pipe), "device": where, "threads": torch.get_num_threads()}

    def identity(self) -> tuple[str, dict[str, Any]]:
        return self.worker.identity()

    def generate(self, job: str, settings: GenerationSettings) -> tuple[str, Any]:
        stop = self._stop_of(job)
        try:
            return "done", self.worker.generate(settings, lambda i, n: self._record(job, i, n), stop)
        except generate.GenerationStopped:
            return "stopped", None
        finally:
            self._forget(job)

    def start_job(self, job: str, cells: list[sheet.Cell]) -> None:
        self.worker.start_job(job, cells)

    def make_cell(self, job: str, cell: sheet.Cell, n_cells: int) -> tuple[str, Any]:
        stop = self._stop_of(job)
        try:
            return "done", self.worker.make_cell(job, cell, n_cells, lambda *step: self._record(job, *step), stop)
        except generate.GenerationStopped:
            return "stopped", None

    def end_job(self, job: str) -> int:
        self._forget(job)
        with self._lock:
            self._steps.pop(job, None)
        return self.worker.end_job(job)

    def stop(self, job: str) -> None:
        self._stop_of(job).set()

    def steps(self, job: str) -> list[tuple[int, ...]]:
        """The steps done since the last call, forgotten here; once the job is over, the job too."""
        with self._lock:
            done = self._steps.pop(job, [])
            if job in self._stops:  # still running (or a sheet between cells)
                self._steps[job] = []
            return done

    def count_tokens(self, prompt: str) -> TokenCount:
        return self.worker.count_tokens(prompt)

    def free(self) -> None:
        self.worker.free()


_ACTOR_METHODS = {
    "describe": "control",
    "identity": "control",
    "generate": "work",
    "start_job": "control",
    "make_cell": "work",
    "end_job": "control",
    "stop": "control",
    "steps": "control",
    "count_tokens": "control",
    "free": "control",
}


def _actor_class(ray: Any) -> Any:
    """`PipelineActor` as a Ray actor class: one job at a time, with stop, progress and token counts beside it."""

    class Actor(PipelineActor):
        pass

    for name, group in _ACTOR_METHODS.items():
        setattr(Actor, name, ray.method(concurrency_group=group)(getattr(PipelineActor, name)))
    Actor.__name__ = Actor.__qualname__ = "PipelineActor"
    return ray.remote(concurrency_groups={"work": 1, "control": 4})(Actor)


class RayWorker:
    """The `Worker` interface to one `PipelineActor`."""

    def __init__(self, actor: Any, name: str) -> None:
        self.actor, self.name = actor, name
        self.info: dict[str, Any] = {}  # the actor's `describe()`, once it is ready
        self._identity: tuple[str, dict[str, Any]] | None = None

    def _get(self, ref: Any) -> Any:
        ray = require_ray()
        try:
            return ray.get(ref)
        except ray.exceptions.RayTaskError as exc:  # the actor's own exception, as the app knows it
            raise (exc.cause if isinstance(exc.cause, BaseException) else exc) from None
        except ray.exceptions.RayActorError as exc:
            raise RayWorkerError(
                f"Ray worker {self.name} is gone ({type(exc).__name__}); restart the app to start it again."
            ) from exc

    def _wait(self, job: str, ref: Any, on_step: Any, stop: Any) -> Any:
        """The job's result, passing its steps to `on_step` as they are done and a Stop on to the actor."""
        ray = require_ray()
        told = False
        while True:
            ready, _ = ray.wait([ref], timeout=POLL_SECONDS)
            if on_step is not None or ready:  # once it is over, always: the actor forgets the job's steps then
                for step in self._get(self.actor.steps.remote(job)):
                    if on_step is not None:
                        on_step(*step)
            if ready:
                break
            if stop is not None and stop.is_set() and not told:
                self.actor.stop.remote(job)
                told = True
        status, value = self._get(ref)
        if status == "stopped":
            raise generate.GenerationStopped()
        return value

    def identity(self) -> tuple[str, dict[str, Any]]:
        if self._identity is None:
            self._identity = self._get(self.actor.identity.remote())
        return self._identity

    def generate(
        self, settings: GenerationSettings, on_step: StepCallback | None = None, stop: Any = None
    ) -> generate.GenerationResult:
        job = f"image-{uuid.uuid4().hex}"
        return self._wait(job, self.actor.generate.remote(job, settings), on_step, stop)

    def make_cell(
        self,
        job: str,
        cell: sheet.Cell,
        n_cells: int,
        on_progress: sheet.ProgressCallback | None = None,
        stop: Any = None,
    ) -> sheet.CellResult:
        return self._wait(job, self.actor.make_cell.remote(job, cell, n_cells), on_progress, stop)

    def start_job(self, job: str, cells: Sequence[sheet.Cell]) -> None:
        self._get(self.actor.start_job.remote(job, list(cells)))

    def end_job(self, job: str) -> int:
        return self._get(self.actor.end_job.remote(job))

    def count_tokens(self, prompt: str) -> TokenCount:
        return self._get(self.actor.count_tokens.remote(prompt))

    def free(self) -> None:
        self._get(self.actor.free.remote())


def parse_ray_devices(text: str, gpus: int, cpus: int) -> list[str]:
    """The actors `--devices` asks for on a Ray cluster with `gpus` GPUs and `cpus` CPU slots: "all" is one per GPU,
    or one per CPU slot where the cluster has no GPU; "0,1" two GPU actors (Ray picks the GPUs), "cpu,cpu" two CPU
    actors. Each entry is "cuda" or "cpu"."""
    if str(text or "").strip().lower() == "all":
        return ["cuda"] * gpus if gpus else ["cpu"] * max(1, cpus)
    try:
        wanted = parse_devices(text, gpus)
    except ValueError as exc:
        raise ValueError(f"{exc} (On Ray, PyTorch's GPUs are the cluster's: it has {gpus}.)") from None
    return ["cpu" if device == "cpu" else "cuda" for device in wanted]


def start_ray(address: str) -> Any:
    """Connect to the Ray cluster at `address` ("local": start one on this machine, sized to it); returns `ray`."""
    ray = require_ray()
    if ray.is_initialized():
        return ray
    import sd35ui

    local = address.strip().lower() == "local"
    package = str(Path(sd35ui.__file__).parent)
    try:
        if local:
            # A small object store: results are a few images, taken as soon as they are made.
            ray.init(include_dashboard=False, log_to_driver=False, object_store_memory=LOCAL_OBJECT_STORE_BYTES)
        else:
            ray.init(address=address, runtime_env={"py_modules": [package]}, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise PipelineError(
            f"Could not connect to Ray at {address!r}: {exc}. Use {RAY_HELP}; a cluster is started with "
            "`ray start --head` on its head node."
        ) from None
    return ray


def ray_workers(options: LoadOptions, address: str, devices: str = "all") -> list[RayWorker]:
    """One `PipelineActor` per device that `devices` names on the Ray cluster at `address` (started and loaded
    before this returns, so that a model that cannot load is an error now, not per job)."""
    ray = start_ray(address)
    resources = ray.cluster_resources()
    plan = parse_ray_devices(devices, int(resources.get("GPU", 0)), int(resources.get("CPU", 0)))
    _check_free(ray.available_resources(), plan)
    actor_class = _actor_class(ray)
    actors, workers = [], []
    for k, device in enumerate(plan):
        worker_options = dataclasses.replace(options, device=device)
        if worker_options.dtype == "auto":
            worker_options = dataclasses.replace(worker_options, dtype="bfloat16" if device == "cuda" else "float32")
        gpu = 1 if device == "cuda" else 0
        actors.append(actor_class.options(num_gpus=gpu, num_cpus=1).remote(worker_options))
        workers.append(RayWorker(actors[-1], f"ray-{device}#{k + 1}"))
    try:
        infos = ray.get([actor.describe.remote() for actor in actors], timeout=STARTUP_TIMEOUT_S)
    except ray.exceptions.RayActorError as exc:
        cause = getattr(exc, "cause", None) or exc
        raise PipelineError(f"A Ray worker could not load {options.model}: {_last_line(cause)}") from None
    except ray.exceptions.GetTimeoutError:
        raise PipelineError(
            f"Ray workers were not ready after {STARTUP_TIMEOUT_S:.0f} s: the cluster may lack the "
            f"{plan.count('cuda')} GPUs or {len(plan)} CPU slots asked for (`ray status` shows them). "
            f"Use --devices {DEVICES_HELP}."
        ) from None
    for worker, info in zip(workers, infos, strict=True):
        worker.info = info
    return workers


def _check_free(free: dict[str, float], plan: list[str]) -> None:
    """PipelineError now, where an actor would wait forever for a GPU or CPU slot that other actors hold."""
    gpus, cpus = int(free.get("GPU", 0)), int(free.get("CPU", 0))
    if plan.count("cuda") > gpus or len(plan) > cpus:
        raise PipelineError(
            f"The Ray cluster has {gpus} GPUs and {cpus} CPU slots free, and {len(plan)} workers "
            f"({plan.count('cuda')} on GPUs) need {plan.count('cuda')} GPUs and {len(plan)} CPU slots: ask for fewer "
            f"with --devices ({DEVICES_HELP}), or stop what holds them (`ray status` lists it)."
        )


def _last_line(error: BaseException) -> str:
    lines = [line for line in str(error).strip().splitlines() if line.strip()]
    return lines[-1] if lines else type(error).__name__
