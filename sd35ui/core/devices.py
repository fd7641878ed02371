"""Several devices, one pipeline each: a contact sheet's cells spread over every GPU in the box (or CPU workers).

`parse_devices` reads `--devices all|0,1|cpu,cpu`, `load_workers` loads one pipeline per device, and
`run_sheet_on` makes the cells of a sheet on them: one thread per pipeline takes the next cell from a shared queue
and makes it exactly as `sheet.run_sheet` makes a single cell, so every cell is the image one pipeline makes.
"""

from __future__ import annotations

import contextlib
import dataclasses
import queue
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from sd35ui.core import generate, sheet
from sd35ui.core.pipeline import LoadOptions, free_memory, load_pipeline

# The per-cell path of a sheet is sheet.py's own private helpers (`_Encoder`, `_run_group`): importing them keeps
# a cell made here the very code path `run_sheet` runs for one cell, so the two cannot drift apart.
_Encoder = sheet._Encoder
_run_group = sheet._run_group

DEVICES_HELP = "all (every CUDA GPU, or the CPU without one), GPU numbers like 0,1, or CPU workers like cpu,cpu"


def cuda_count() -> int:
    """CUDA GPUs PyTorch sees (0 without CUDA)."""
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def parse_devices(text: str, cuda_count: int) -> list[str]:
    """The devices `text` names, one pipeline each: "all" (every CUDA GPU, or ["cpu"] without CUDA), GPU numbers
    ("0,1" or "cuda:0,cuda:1", each once and below `cuda_count`) or CPU workers ("cpu,cpu"). GPUs and CPU workers do
    not mix: a CPU cell takes a hundred GPU cells' time and is computed in another precision. Raises ValueError
    saying how to write it."""
    wanted = str(text or "").strip().lower()
    if wanted == "all":
        return [f"cuda:{i}" for i in range(cuda_count)] or ["cpu"]
    items = [item.strip() for item in wanted.split(",")]
    if not wanted or not all(items):
        raise ValueError(
            f"Devices: {text!r} names no device (or has an empty one between commas). Use {DEVICES_HELP}."
        )
    present = f"GPUs {', '.join(map(str, range(cuda_count)))}" if cuda_count else "no CUDA GPU"
    devices = []
    for item in items:
        if item == "cpu":
            devices.append("cpu")
            continue
        number = item.removeprefix("cuda:") if item != "cuda" else "0"
        if not number.isdigit():
            raise ValueError(f"Devices: cannot read {item!r} in {text!r}. Use {DEVICES_HELP}.")
        if int(number) >= cuda_count:
            fix = "; use cpu (or cpu,cpu for two CPU workers)" if not cuda_count else ", or all for every one"
            raise ValueError(
                f"Devices: there is no GPU {int(number)}: PyTorch sees {present}. Name one of those{fix}."
            )
        devices.append(f"cuda:{int(number)}")
    gpus = [d for d in devices if d != "cpu"]
    if gpus and len(gpus) < len(devices):
        raise ValueError(
            f"Devices: {text!r} mixes GPUs and CPU workers; use GPUs only (e.g. 0,1) or CPU workers only."
        )
    repeated = sorted({d for d in gpus if gpus.count(d) > 1})
    if repeated:
        raise ValueError(
            f"Devices: {', '.join(repeated)} named twice; a GPU runs one pipeline here, so list each GPU once."
        )
    return devices


def load_workers(options: LoadOptions, devices: Sequence[str]) -> list[Any]:
    """One pipeline per device, each loaded with `load_pipeline` (not `get_pipeline`, whose cache holds one
    pipeline per `LoadOptions`: two CPU workers have equal options and need two pipelines). An "auto" dtype is
    chosen per device (bfloat16 on CUDA, float32 on a CPU)."""
    if not devices:
        raise ValueError(f"Devices: none given. Use {DEVICES_HELP}.")
    pipes = []
    for device in devices:
        worker = dataclasses.replace(options, device=device)
        if worker.dtype == "auto":  # LoadOptions.resolve() picks bfloat16 only for the plain device "cuda"
            worker = dataclasses.replace(worker, dtype="bfloat16" if device.startswith("cuda") else "float32")
        pipes.append(load_pipeline(worker))
    return pipes


def _device(pipe: Any) -> str:
    options = getattr(pipe, "sd35ui_options", None)
    return options.device if options is not None else str(pipe.transformer.device)


@contextlib.contextmanager
def cpu_threads(pipes: Sequence[Any]) -> Iterator[None]:
    """With more than one CPU worker, one torch thread each for the run: two workers with torch's default threads
    each spin-wait on the other's cores. `torch.set_num_threads` is process-wide (threads started later inherit
    it), so for the run every other torch user in this process gets one thread too; the number before is restored
    after. With one CPU worker, or GPUs, nothing is changed."""
    import torch

    if sum(_device(pipe) == "cpu" for pipe in pipes) < 2:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
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
    pipes: Sequence[Any],
    spec: sheet.SheetSpec,
    on_progress: sheet.ProgressCallback | None = None,
    stop: threading.Event | None = None,
    on_cell: sheet.CellCallback | None = None,
    *,
    cache: generate.PromptCache | None = None,
    max_cells: int = sheet.MAX_CELLS,
    max_pixels: int = sheet.MAX_SHEET_PIXELS,
) -> sheet.SheetResult:
    """`sheet.run_sheet(pipes[0], spec, ...)` with the cells spread over `pipes`: one thread per pipeline takes the
    next cell from a shared queue and makes it as `run_sheet` makes a cell (own lock, own encoder per pipeline), so
    each cell equals the one-pipeline sheet's on the same device and dtype. `result.cells` are in finishing order;
    `on_progress` and `on_cell` are called from the workers' threads, one call at a time. `stop` ends every worker
    within one step. A failure in any worker stops the others, then is raised; out of GPU memory raises
    `sheet.SheetOutOfMemory` holding the finished cells. Not offered here: `batch` and `reuse`."""
    import torch

    if not pipes:
        raise ValueError(f"Devices: no pipelines to run the sheet on. Use {DEVICES_HELP}.")
    spec = spec.resolved()
    sheet.check_sheet(spec, max_cells, max_pixels)
    cells = sheet.plan_sheet(spec)
    todo: queue.SimpleQueue[sheet.Cell] = queue.SimpleQueue()
    for cell in cells:
        todo.put(cell)
    result = sheet.SheetResult(spec=spec, model=generate.model_name(pipes[0]))
    halt, report = _Either(stop), threading.Lock()
    errors: list[BaseException] = []
    cpu_workers = sum(_device(pipe) == "cpu" for pipe in pipes) > 1

    def progress(index: int, n: int, step: int, steps: int) -> None:
        if on_progress is not None:
            with report:
                on_progress(index, n, step, steps)

    def work(pipe: Any) -> None:
        if cpu_workers:
            torch.set_num_threads(1)  # this thread's OpenMP pool too, whatever it inherited
        encoder = _Encoder(pipe, cache if cache is not None else generate.prompt_cache)
        encoder.first_steps = generate.FirstStepCache()  # as run_sheet's, one per pipeline: its outputs live there
        try:
            while not halt.is_set():
                try:
                    cell = todo.get_nowait()
                except queue.Empty:
                    return
                with generate.pipe_lock(pipe):
                    made = _run_group(pipe, [cell], encoder, len(cells), progress, halt)  # type: ignore[arg-type]
                with report:
                    for done in made:
                        result.cells.append(done)
                        if on_cell is not None:
                            on_cell(done)
        except generate.GenerationStopped:
            return
        except BaseException as exc:  # noqa: BLE001  (re-raised by the caller's thread below)
            with report:
                errors.append(exc)
            halt.failed.set()
        finally:
            with report:
                result.first_steps_shared += encoder.first_steps.hits

    start = time.perf_counter()
    with cpu_threads(pipes):
        _run_threads([threading.Thread(target=work, args=(p,), name=f"sheet-{_device(p)}") for p in pipes], halt)
    result.seconds = time.perf_counter() - start
    if errors:
        _raise_first(errors, pipes, result, len(cells))
    result.stopped = len(result.cells) < len(cells)
    return result


def _run_threads(threads: list[threading.Thread], halt: _Either) -> None:
    """Start the workers and wait for them; Ctrl-C in the caller's thread stops them within a step, then goes on."""
    for thread in threads:
        thread.start()
    try:
        for thread in threads:
            thread.join()
    except BaseException:
        halt.failed.set()
        for thread in threads:
            thread.join()
        raise


def _raise_first(errors: list[BaseException], pipes: Sequence[Any], result: sheet.SheetResult, n_cells: int) -> None:
    """Raise the first worker's error; out of GPU memory as `sheet.SheetOutOfMemory` with the finished cells, once
    every pipeline's memory is freed."""
    import torch

    error = errors[0]
    if isinstance(error, torch.OutOfMemoryError):
        for pipe in pipes:
            pipe.maybe_free_model_hooks()
        free_memory()
        what = f"a cell of the sheet ({len(result.cells)} of {n_cells} cells were made)"
        raise sheet.SheetOutOfMemory(generate.out_of_memory_advice(what), result) from error
    raise error
