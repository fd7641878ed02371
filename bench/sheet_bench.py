"""Contact sheet vs clicking Generate once per cell, on the built-in tiny model (CPU is fine).

A 4 x 4 default sheet (Guidance 3, 4.5, 6, 7.5 across, Steps 10, 20, 30, 40 down; 64x64) is timed against the same
16 cells made one by one through `sd35ui.core.generate.generate` with the prompt cache cleared before each (what a user
clicking Generate 16 times pays, prompt encoding included), and against the sheet with `batch=True`. The three are
interleaved over several rounds in one process, so load from other programs hits them alike; medians are reported.

    HF_HUB_OFFLINE=1 python bench/sheet_bench.py --rounds 3 --json bench-sheet.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def max_pixel_difference(a, b) -> int:
    import numpy as np

    return int(np.abs(np.asarray(a, dtype=np.int16) - np.asarray(b, dtype=np.int16)).max())


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="interleaved repetitions (median reported)")
    parser.add_argument("--size", type=int, default=64, help="cell width and height in pixels")
    parser.add_argument("--model", default="tiny-random")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, help="write the results here as JSON")
    args = parser.parse_args(argv)

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from sd35ui.core import generate, sheet
    from sd35ui.core.pipeline import LoadOptions, get_pipeline, model_spec
    from sd35ui.core.settings import GenerationSettings

    pipe = get_pipeline(LoadOptions(model=args.model))
    base = GenerationSettings(prompt="a red fox in a forest", width=args.size, height=args.size, seed=1234)
    spec = sheet.make_spec(base, model=model_spec(args.model))
    cells = sheet.plan_sheet(spec)
    generate.generate(pipe, cells[0].settings)  # warm-up: first-call allocations and lazy imports

    def singles() -> tuple[float, float, list]:
        images = []
        wall, cpu = time.perf_counter(), time.process_time()
        for cell in cells:
            generate.prompt_cache.clear()
            images.append(generate.generate(pipe, cell.settings).image)
        return time.perf_counter() - wall, time.process_time() - cpu, images

    def sheet_run(batch: bool) -> tuple[float, float, list]:
        generate.prompt_cache.clear()
        wall, cpu = time.perf_counter(), time.process_time()
        result = sheet.run_sheet(pipe, spec, batch=batch)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        by_index = sorted(result.cells, key=lambda done: done.cell.index)
        return wall, cpu, [done.image for done in by_index]

    times: dict[str, list[float]] = {"singles": [], "sheet": [], "sheet_batched": []}
    cpu_times: dict[str, list[float]] = {name: [] for name in times}
    identical = True
    batched_diff = 0
    for _ in range(args.rounds):
        images = {}
        for name, run in (
            ("singles", singles),
            ("sheet", lambda: sheet_run(False)),
            ("sheet_batched", lambda: sheet_run(True)),
        ):
            wall, cpu, images[name] = run()
            times[name].append(wall)
            cpu_times[name].append(cpu)
        single_images, sheet_images, batched_images = images["singles"], images["sheet"], images["sheet_batched"]
        identical &= all(max_pixel_difference(a, b) == 0 for a, b in zip(single_images, sheet_images, strict=True))
        batched_diff = max(
            batched_diff, *(max_pixel_difference(a, b) for a, b in zip(single_images, batched_images, strict=True))
        )

    median = {name: statistics.median(values) for name, values in times.items()}
    median_cpu = {name: statistics.median(values) for name, values in cpu_times.items()}
    report = {
        "model": args.model,
        "cells": len(cells),
        "size": f"{args.size}x{args.size}",
        "x": spec.x.text(),
        "y": spec.y.text() if spec.y is not None else None,
        "rounds": args.rounds,
        "wall_seconds": times,
        "cpu_seconds": cpu_times,
        "median_wall_seconds": median,
        "median_cpu_seconds": median_cpu,
        "speedup_sheet_vs_singles": median["singles"] / median["sheet"],
        "speedup_batched_vs_unbatched": median["sheet"] / median["sheet_batched"],
        "cpu_speedup_sheet_vs_singles": median_cpu["singles"] / median_cpu["sheet"],
        "cpu_speedup_batched_vs_unbatched": median_cpu["sheet"] / median_cpu["sheet_batched"],
        "sheet_identical_to_singles": identical,
        "batched_max_pixel_difference": batched_diff,
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
        "python": platform.python_version(),
        "torch": torch.__version__,
    }
    print(f"{'run':<34}{'wall s':>8}{'CPU s':>8}   wall s of every round")
    labels = {
        "singles": "16 x generate() (cache cleared)",
        "sheet": "run_sheet (batch=False)",
        "sheet_batched": "run_sheet (batch=True)",
    }
    for name, label in labels.items():
        rounds = ", ".join(f"{t:.2f}" for t in times[name])
        print(f"{label:<34}{median[name]:>8.2f}{median_cpu[name]:>8.2f}   {rounds}")
    print(
        f"sheet vs singles: {report['speedup_sheet_vs_singles']:.2f}x faster (wall), "
        f"{report['cpu_speedup_sheet_vs_singles']:.2f}x (CPU time)"
    )
    print(
        f"batched vs unbatched sheet: {report['speedup_batched_vs_unbatched']:.2f}x faster (wall), "
        f"{report['cpu_speedup_batched_vs_unbatched']:.2f}x (CPU time)"
    )
    print(f"sheet cells identical to generate(): {identical}; batched max pixel difference: {batched_diff}/255")
    print(f"load average during the run: {report['load_average']}")
    if args.json:
        args.json.write_text(json.dumps(report, indent=2))
    return report


if __name__ == "__main__":
    main()
