"""Samplers, schedules and skip-layer guidance on the built-in trained tiny model: prompt adherence (the shipped
adherence metric), transformer calls and seconds per image, at a few step counts, through the app's own generation
service.

Adherence is deterministic (fixed seeds, CPU generator); seconds are medians over the images of a row, the variants
interleaved row by row, one torch thread.

    HF_HUB_OFFLINE=1 python bench/samplers.py --json bench-samplers.json
    HF_HUB_OFFLINE=1 python bench/samplers.py --variants "Euler,DPM++ 2M,Euler Karras,Euler SLG"
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

os.environ.setdefault("HF_HUB_OFFLINE", "1")


# Each variant's settings beside the defaults (Euler, the model's own schedule, no skip-layer guidance).
VARIANTS: dict[str, dict] = {
    "Euler": {},
    "Heun": {"sampler": "Heun"},
    "DPM++ 2M": {"sampler": "DPM++ 2M"},
    "Euler Karras": {"schedule": "Karras"},
    "Euler Exponential": {"schedule": "Exponential"},
    "Euler Beta": {"schedule": "Beta"},
    "Euler SLG": {"slg_scale": 2.5},  # the recommended window (1% to 20%) and the model's own layers
}


def run(
    steps_list: tuple[int, ...], seeds: tuple[int, ...], guidance: float, variants: tuple[str, ...] = ("Euler", "Heun")
) -> list[dict]:
    import numpy as np
    import torch

    from sd35ui.core.generate import generate
    from sd35ui.core.pipeline import LoadOptions, get_pipeline
    from sd35ui.core.settings import GenerationSettings
    from sd35ui.models import adherence, shapes

    torch.set_num_threads(1)
    pipe = get_pipeline(LoadOptions(model="tiny"))
    calls: list[int] = []
    pipe.transformer.register_forward_hook(lambda *_: calls.append(1))
    rows = []
    for steps in steps_list:
        for sampler in variants:  # interleaved: load from other programs hits all alike
            scores, seconds = [], []
            calls.clear()
            for label in adherence.EVAL_LABELS:
                for seed in seeds:
                    settings = GenerationSettings(
                        prompt=shapes.caption(*label),
                        steps=steps,
                        guidance=guidance,
                        width=64,
                        height=64,
                        seed=seed,
                        **VARIANTS[sampler],
                    )
                    result = generate(pipe, settings)
                    scores.append(adherence.score(np.asarray(result.image.convert("RGB")), label))
                    seconds.append(result.timings["total"])
            images = len(scores)
            row = {"sampler": sampler, "steps": steps, "guidance": guidance, "images": images}
            row |= adherence.mean_scores(scores)
            row |= {"transformer_calls_per_image": len(calls) / images, "seconds": statistics.median(seconds)}
            rows.append(row)
            print(
                f"| {sampler} | {steps} | {row['all']:.2f} | {row['transformer_calls_per_image']:.0f} | "
                f"{row['seconds']:.3f} |",
                flush=True,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", default="2,3,5,10", help="comma list of step counts")
    parser.add_argument("--seeds", type=int, default=2, help="seeds per caption")
    parser.add_argument("--guidance", type=float, default=4.5)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--variants", default="Euler,Heun", help=f"comma list of: {', '.join(VARIANTS)}")
    args = parser.parse_args()
    variants = tuple(v.strip() for v in args.variants.split(","))
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        parser.error(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
    print("| sampler | steps | adherence (all) | transformer calls | s/image |\n|---|---|---|---|---|")
    rows = run(tuple(int(s) for s in args.steps.split(",")), tuple(range(args.seeds)), args.guidance, variants)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
