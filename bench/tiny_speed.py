"""Seconds per image of the built-in trained tiny model on the CPU, at its defaults (median of N).

Loads "tiny" through the app's own loader and makes images through `sd35ui.core.generate.generate` with the model's
declared defaults (sd35ui_model.json: size, steps, T5 length) and the app's default guidance. One warm-up image is
not counted (first-call allocations). Prompts cycle through the training captions with a new seed each time.

    HF_HUB_OFFLINE=1 python bench/tiny_speed.py --runs 10 --json outputs/tiny_speed.json
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

from bench import rounds  # noqa: E402  (after the path is set)

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="images timed (median reported)")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default 1: see bench/rounds.py)")
    parser.add_argument("--json", type=Path, default=Path("outputs/tiny_speed.json"), help="where to write results")
    args = parser.parse_args(argv)

    import torch

    rounds.set_threads(args.threads)

    from sd35ui.core.generate import generate
    from sd35ui.core.pipeline import LoadOptions, get_pipeline
    from sd35ui.core.settings import RANGES, GenerationSettings
    from sd35ui.models import shapes
    from sd35ui.models.tiny import tiny_model_info

    info = tiny_model_info("tiny")
    if not info:
        parser.error(
            "The trained tiny model is not in sd35ui/models/tiny-shapes; train it with python -m sd35ui.models.train."
        )
    start = time.perf_counter()
    pipe = get_pipeline(LoadOptions(model="tiny", device="cpu"))
    load_s = time.perf_counter() - start
    if not hasattr(pipe, "sd35ui_max_sequence_length"):  # the loader sets it once wired; match training if not
        pipe.sd35ui_max_sequence_length = info["max_sequence_length"]
    size, steps, guidance = info["default_size"], info["default_steps"], RANGES["guidance"].default

    def settings(i: int) -> GenerationSettings:
        prompt = shapes.PROMPTS[i % len(shapes.PROMPTS)]
        return GenerationSettings(prompt=prompt, steps=steps, guidance=guidance, width=size, height=size, seed=i)

    generate(pipe, settings(0))  # warm-up
    seconds = [generate(pipe, settings(i + 1)).timings["total"] for i in range(args.runs)]
    figure = rounds.figure(seconds)
    result = {
        "model": "tiny",
        "size": size,
        "steps": steps,
        "guidance": guidance,
        "runs": args.runs,
        "median_s_per_image": statistics.median(seconds),
        "min_s": min(seconds),
        "max_s": max(seconds),
        "figure": figure.to_dict(),  # median, spread = (max - min) / median, unstable when over 10%
        "load_s": load_s,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "load_average": os.getloadavg(),
    }
    print(
        f"tiny model, {size}x{size}, {steps} steps, guidance {guidance:g}: "
        f"{figure.text('.3f', ' s')} per image (median of {args.runs}; min {min(seconds):.3f}, "
        f"max {max(seconds):.3f}); load {load_s:.2f} s"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.json}")
    return result


if __name__ == "__main__":
    main()
