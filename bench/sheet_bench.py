"""Contact sheet vs clicking Generate once per cell, on the built-in tiny model (CPU is fine).

A 4 x 4 default sheet (Guidance 3, 4.5, 6, 7.5 across, Steps 10, 20, 30, 40 down; 64x64) is timed against the same
16 cells made one by one through `sd35ui.core.generate.generate` with the prompt cache cleared before each (what a user
clicking Generate 16 times pays, prompt encoding included). The two run in interleaved rounds in one process
(`bench/rounds.py`: order rotated each round, one torch thread unless --threads), so load from other programs hits
them alike; every figure is a median with its spread, and a ratio is the median of the per-round ratios. `compare()`
is also bench.py's `sheet` mode.

    HF_HUB_OFFLINE=1 python bench/sheet_bench.py --rounds 3 --json bench-sheet.json
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

os.environ.setdefault("HF_HUB_OFFLINE", "1")

VARIANTS = ("singles", "sheet")


def max_pixel_difference(a: Any, b: Any) -> int:
    import numpy as np

    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def compare(pipe: Any, spec: Any, rounds: int, warmup_round: bool = True) -> dict[str, Any]:
    """Time the cells of `spec` two ways in `rounds` interleaved rounds: "singles" (each cell through `generate`,
    the prompt cache cleared before each) and "sheet" (`run_sheet`: each prompt encoded once). With `warmup_round`,
    one uncounted round first (first-call costs of each shape). Returns figures (`rounds.Figure.to_dict()`: median,
    spread, values) for wall and CPU seconds and for the per-round speedup, and whether the sheet's cells equal the
    single images."""
    import torch

    from sd35ui.core import generate, sheet

    cells = sheet.plan_sheet(spec)
    cuda = pipe.transformer.device.type == "cuda"

    def timed(make: Callable[[], list[Any]]) -> dict[str, Any]:
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        wall, cpu = time.perf_counter(), time.process_time()
        images = make()
        if cuda:
            torch.cuda.synchronize()
        return {
            "wall": time.perf_counter() - wall,
            "cpu": time.process_time() - cpu,
            "images": images,
            "peak_alloc_gib": torch.cuda.max_memory_allocated() / 2**30 if cuda else None,
        }

    def singles(_round: int) -> dict[str, Any]:
        def make() -> list[Any]:
            images = []
            for cell in cells:
                generate.prompt_cache.clear()
                images.append(generate.generate(pipe, cell.settings).image)
            return images

        return timed(make)

    def sheet_run(_round: int) -> dict[str, Any]:
        def make() -> list[Any]:
            result = sheet.run_sheet(pipe, spec, cache=generate.PromptCache())
            return [done.image for done in sorted(result.cells, key=lambda done: done.cell.index)]

        return timed(make)

    variants = {"singles": singles, "sheet": sheet_run}
    if warmup_round:
        for run in variants.values():
            run(-1)
    else:
        generate.generate(pipe, cells[0].settings)  # first-call allocations and lazy imports
    results = rounds_lib.interleave(variants, rounds)

    wall = {name: [r["wall"] for r in results[name]] for name in VARIANTS}
    cpu = {name: [r["cpu"] for r in results[name]] for name in VARIANTS}
    figures = {f"{name}_s": rounds_lib.figure(wall[name]) for name in VARIANTS}
    figures.update({f"{name}_cpu_s": rounds_lib.figure(cpu[name]) for name in VARIANTS})
    for times, prefix in ((wall, ""), (cpu, "cpu_")):
        figures[f"{prefix}speedup_sheet_vs_singles"] = rounds_lib.ratio(times["singles"], times["sheet"])
    figure_dicts = {name: fig.to_dict() for name, fig in figures.items()}

    identical = True
    for r in range(rounds):
        singles_images = results["singles"][r]["images"]
        identical &= all(
            max_pixel_difference(a, b) == 0 for a, b in zip(singles_images, results["sheet"][r]["images"], strict=True)
        )
    return {
        "cells": len(cells),
        "size": spec.base.width,
        "x": spec.x.text(),
        "y": spec.y.text() if spec.y is not None else None,
        "rounds": rounds,
        "order": "rotated each round (bench/rounds.py)",
        "figures": figure_dicts,
        "unstable": rounds_lib.unstable_names(figure_dicts),
        "peak_alloc_gib": {name: max(r["peak_alloc_gib"] or 0 for r in results[name]) or None for name in VARIANTS},
        "sheet_identical_to_singles": identical,
    }


def print_report(report: dict[str, Any]) -> None:
    figures = report["figures"]
    labels = {
        "singles": f"{report['cells']} x generate() (cache cleared)",
        "sheet": "run_sheet",
    }
    print(f"{'run':<34}{'wall s, median':>22}{'CPU s, median':>22}   wall s of every round")
    for name, label in labels.items():
        wall, cpu = figures[f"{name}_s"], figures[f"{name}_cpu_s"]
        values = ", ".join(f"{t:.2f}" for t in wall["values"])
        print(
            f"{label:<34}{rounds_lib.figure_text(wall, '.2f'):>22}{rounds_lib.figure_text(cpu, '.2f'):>22}   {values}"
        )
    key = "speedup_sheet_vs_singles"
    print(
        f"sheet vs singles: {rounds_lib.figure_text(figures[key], '.2f', 'x')} (wall), "
        f"{rounds_lib.figure_text(figures['cpu_' + key], '.2f', 'x')} (CPU time)"
    )
    print(f"sheet cells identical to generate(): {report['sheet_identical_to_singles']}")
    print(f"spread = (max - min) / median of the rounds; over 10% is marked unstable: {report['unstable'] or 'none'}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median and spread reported)")
    parser.add_argument("--size", type=int, default=64, help="cell width and height in pixels")
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default 1: see bench/rounds.py)")
    parser.add_argument("--warmup-round", action="store_true", help="one uncounted round of every variant first")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    import torch

    from sd35ui.core import sheet
    from sd35ui.core.pipeline import LoadOptions, get_pipeline, model_spec
    from sd35ui.core.settings import GenerationSettings

    threads = rounds_lib.set_threads(args.threads, cuda=torch.cuda.is_available())
    pipe = get_pipeline(LoadOptions(model=args.model))
    load_before = os.getloadavg()
    base = GenerationSettings(prompt="a red fox in a forest", width=args.size, height=args.size, seed=1234)
    spec = sheet.make_spec(base, model=model_spec(args.model))
    report = {
        "model": args.model,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": "python bench/sheet_bench.py " + " ".join(sys.argv[1:] if argv is None else argv),
        **compare(pipe, spec, args.rounds, warmup_round=args.warmup_round),
        "torch_threads": threads,
        "cpu_count": os.cpu_count(),
        "load_average_before": load_before,
        "load_average_after": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    print_report(report)
    print(f"load average before and after: {report['load_average_before']}, {report['load_average_after']}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
