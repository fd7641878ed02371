"""A sheet on one worker against the same sheet spread over several (`sd35ui.core.workers`), on the tiny model.

The default: 16 cells (Guidance 3, 4.5, 6, 7.5 across, Steps 4, 8, 12, 16 down; 64x64) made three ways in interleaved
rounds (`bench/rounds.py`: order rotated each round): "one_t1", one pipeline with one torch thread; "one_tN", one
pipeline with one torch thread per worker (the same cores as the workers, so the fair baseline on a CPU); and
"workers", `run_sheet_on` over every device of `--devices` (default cpu,cpu: one torch thread each). Each run has
its own prompt cache, so every variant pays its prompt encodings. Figures are medians with their spreads; a speed-up
is the median of the per-round ratios. On GPUs (`--devices all`) "one_tN" is left out: threads do not matter there.
On a shared CPU, workers only gain while other programs leave their cores free: before and after every run a short
matmul probe measures how many cores the process gets, and the speed-ups are also given over only the rounds in which
every probe found a core per worker ("cores_free"). `--ray local` adds "ray": the same sheet on Ray actors, one per
`--devices` entry, each a process of its own.

    HF_HUB_OFFLINE=1 python bench/devices_bench.py --rounds 5 --json bench-devices.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import rounds as rounds_lib  # noqa: E402  (after the path is set)
from bench.sheet_bench import max_pixel_difference  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")

# Before and after every timed run, how many cores the process gets (`parallelism`, for this long); a round counts as
# one with its cores free when every probe of both paired runs found at least FREE_SHARE of one core per worker.
PROBE_SECONDS = 0.3
FREE_SHARE = 0.9


def device_of(pipe: Any) -> str:
    return pipe.sd35ui_options.device


def compare(pipes: list[Any], spec: Any, rounds: int, ray: list[Any] | None = None) -> dict[str, Any]:
    """Time `spec` on `pipes[0]` alone and on all of `pipes` in `rounds` interleaved rounds, after one uncounted
    round of each (first-call costs). Returns figures (`rounds.Figure.to_dict()`) of wall and CPU seconds per
    variant and of the per-round speed-ups, and each variant's largest pixel difference from the one-worker
    sheet's cells."""
    import torch

    from sd35ui.core import generate, workers

    cpu = all(device_of(pipe) == "cpu" for pipe in pipes)
    n = len(pipes)
    calls = [0] * n  # transformer calls per pipeline: how the cells were shared out

    def counter(k: int) -> Callable[..., None]:
        def count(*_args: Any) -> None:
            calls[k] += 1

        return count

    for k, pipe in enumerate(pipes):
        pipe.transformer.register_forward_pre_hook(counter(k))

    def run(on: list[Any], threads: int | None) -> Callable[[int], dict[str, Any]]:
        def timed(_round: int) -> dict[str, Any]:
            if threads is not None:
                torch.set_num_threads(threads)
            if not cpu:
                torch.cuda.synchronize()
            free_before = parallelism(n, PROBE_SECONDS) if cpu else None
            before = list(calls)
            wall, cpu_time = time.perf_counter(), time.process_time()
            result = workers.run_sheet_on(on, spec, cache=generate.PromptCache())
            if not cpu:
                torch.cuda.synchronize()
            done = {
                "wall": time.perf_counter() - wall,
                "cpu": time.process_time() - cpu_time,
                "images": [d.image for d in sorted(result.cells, key=lambda d: d.cell.index)],
                "calls": [after - b for after, b in zip(calls, before)],
            }
            done["free"] = min(free_before, parallelism(n, PROBE_SECONDS)) if cpu else None
            return done

        return timed

    variants = {"one_t1": run(pipes[:1], 1 if cpu else None)}
    if cpu and n > 1:
        variants[f"one_t{n}"] = run(pipes[:1], n)
    variants["workers"] = run(pipes, 1 if cpu else None)  # run_sheet_on sets one thread per CPU worker itself
    if ray:  # Ray actors: a process each (one torch thread each on a CPU), so no GIL shared between them
        variants["ray"] = run(ray, 1 if cpu else None)
    for timed in variants.values():
        timed(-1)
    results = rounds_lib.interleave(variants, rounds)

    wall = {name: [r["wall"] for r in results[name]] for name in variants}
    cpu_s = {name: [r["cpu"] for r in results[name]] for name in variants}
    figures = {f"{name}_s": rounds_lib.figure(wall[name]) for name in variants}
    figures.update({f"{name}_cpu_s": rounds_lib.figure(cpu_s[name]) for name in variants})
    for target in [name for name in ("workers", "ray") if name in variants]:
        for name in [name for name in variants if name not in ("workers", "ray")]:
            figures[f"speedup_{target}_vs_{name}"] = rounds_lib.ratio(wall[name], wall[target])
            if cpu:  # the rounds in which both runs had every worker's core free, before and after
                free = [
                    r
                    for r in range(rounds)
                    if min(results[name][r]["free"], results[target][r]["free"]) >= FREE_SHARE * n
                ]
                if free:
                    figures[f"speedup_{target}_vs_{name}_cores_free"] = rounds_lib.ratio(
                        [wall[name][r] for r in free], [wall[target][r] for r in free]
                    )
    figure_dicts = {name: fig.to_dict() for name, fig in figures.items()}
    reference = results["one_t1"]
    difference = {
        name: max(
            max_pixel_difference(a, b)
            for r in range(rounds)
            for a, b in zip(reference[r]["images"], results[name][r]["images"], strict=True)
        )
        for name in variants
    }
    return {
        "cells": spec.n_cells,
        "size": spec.base.width,
        "x": spec.x.text(),
        "y": spec.y.text() if spec.y is not None else None,
        "devices": [device_of(pipe) for pipe in pipes],
        "rounds": rounds,
        "order": "rotated each round (bench/rounds.py), after one uncounted round",
        "figures": figure_dicts,
        "unstable": rounds_lib.unstable_names(figure_dicts),
        "max_pixel_difference_from_one_t1": difference,
        "transformer_calls_per_worker": [r["calls"] for r in results["workers"]],
        "cores_free_per_round": {name: [r["free"] for r in results[name]] for name in variants},
    }


def parallelism(threads: int, seconds: float = 1.0) -> float:
    """How many cores this process gets now: process CPU seconds / wall seconds while `threads` threads multiply
    512x512 matrices (one torch thread each; torch releases the GIL in matmul). About `threads` on an idle machine;
    about 1 when the other cores are busy with other programs, and then no worker can run alongside another."""
    import threading

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    a = torch.randn(512, 512)

    def work() -> None:
        end = time.perf_counter() + seconds
        while time.perf_counter() < end:
            a @ a

    workers = [threading.Thread(target=work) for _ in range(threads)]
    wall, cpu = time.perf_counter(), time.process_time()
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    share = (time.process_time() - cpu) / (time.perf_counter() - wall)
    torch.set_num_threads(before)
    return round(share, 2)


def print_report(report: dict[str, Any]) -> None:
    figures = report["figures"]
    names = [key.removesuffix("_cpu_s") for key in figures if key.endswith("_cpu_s")]
    print(f"{report['cells']} cells at {report['size']} px; workers on {', '.join(report['devices'])}")
    print(f"{'run':<12}{'wall s, median':>22}{'CPU s, median':>22}   wall s of every round")
    for name in names:
        wall, cpu = figures[f"{name}_s"], figures[f"{name}_cpu_s"]
        values = ", ".join(f"{t:.2f}" for t in wall["values"])
        print(
            f"{name:<12}{rounds_lib.figure_text(wall, '.2f'):>22}{rounds_lib.figure_text(cpu, '.2f'):>22}   {values}"
        )
    for key, fig in figures.items():
        if key.startswith("speedup_"):
            print(f"{key.removeprefix('speedup_').replace('_', ' ')}: {rounds_lib.figure_text(fig, '.2f', 'x')}")
    print(f"largest pixel difference from one_t1's cells (of 255): {report['max_pixel_difference_from_one_t1']}")
    print(
        f"CPU parallelism free for {report['threads_probe']} matmul threads (process CPU s / wall s), before and "
        f"after: {report['parallelism_before']}, {report['parallelism_after']}"
    )
    print(f"transformer calls per worker, each round: {report['transformer_calls_per_worker']}")
    print(f"cores the process got, the lower probe of each run: {report['cores_free_per_round']}")
    print(f"spread = (max - min) / median of the rounds; over 10% is marked unstable: {report['unstable'] or 'none'}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (median and spread reported)")
    parser.add_argument("--size", type=int, default=64, help="cell width and height in pixels")
    parser.add_argument("--steps", default="4, 8, 12, 16", help="the Y axis: Steps values")
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--devices", default="cpu,cpu", help="the workers, as python -m sd35ui sheet --devices")
    parser.add_argument(
        "--ray",
        metavar="ADDRESS",
        help="also time the sheet on Ray actors, one per --devices entry (local: a Ray started here)",
    )
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    import torch

    from sd35ui.core import devices, sheet
    from sd35ui.core.pipeline import LoadOptions, model_spec
    from sd35ui.core.settings import GenerationSettings

    threads_before = torch.get_num_threads()
    pipes = devices.load_workers(
        LoadOptions(model=args.model), devices.parse_devices(args.devices, devices.cuda_count())
    )
    ray = None
    if args.ray:
        from sd35ui.core.ray_workers import ray_workers

        ray = ray_workers(LoadOptions(model=args.model), args.ray, args.devices)
    load_before, parallel_before = os.getloadavg(), parallelism(len(pipes))
    base = GenerationSettings(prompt="a red fox in a forest", width=args.size, height=args.size, seed=1234)
    spec = sheet.make_spec(base, "Guidance", "3, 4.5, 6, 7.5", "Steps", args.steps, model=model_spec(args.model))
    report = {
        "model": args.model,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/devices_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        **compare(pipes, spec, args.rounds, ray),
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "threads_probe": len(pipes),
        "parallelism_before": parallel_before,
        "parallelism_after": parallelism(len(pipes)),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    torch.set_num_threads(threads_before)
    print_report(report)
    print(f"load average before and after: {report['load_average_before']}, {report['load_average_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
