"""What resume costs before the first cell: the cell index (`sd35ui.core.cells.CellIndex`: one small index per
folder, then one PNG read per reused cell) against reading every cell PNG's text chunks (what resume did before the
index, and still does once for a folder without one). `--cells` saved cells of 64 px with real metadata are laid out
in `--days` folders, a 16-cell sheet is looked up, in interleaved rounds (bench/rounds.py): medians and spreads.

    python bench/resume_lookup.py --cells 2000 --rounds 5
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=2000)
    parser.add_argument("--days", type=int, default=10)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from PIL import Image

    from bench.rounds import figure, interleave, ratio
    from sd35ui.core import cells, metadata
    from sd35ui.core.settings import GenerationSettings

    root = Path(tempfile.mkdtemp(prefix="sd35ui-resume-"))
    image = Image.new("RGB", (64, 64))
    keys = []
    for i in range(args.cells):
        settings = GenerationSettings(prompt=f"a red fox {i}", width=64, height=64, steps=2, seed=i)
        path = root / f"day{i % args.days}" / f"000000-sheet-{i}-abc-r1c1.png"
        path.parent.mkdir(exist_ok=True)
        image.save(path, pnginfo=metadata.png_info(settings, "tiny-random", None, {}))
        keys.append(cells.cell_key(settings, "tiny-random", {}))
        cells.remember(path, keys[-1])
    wanted = keys[:: max(1, args.cells // 16)][:16]

    def with_index() -> None:
        index = cells.CellIndex(root)
        assert all(index.get(key) is not None for key in wanted)

    def reading_every_png() -> None:
        found = {}
        for folder in sorted(p for p in root.iterdir() if p.is_dir()):
            for png in folder.glob("*.png"):
                key = cells.key_of(png)
                if key is not None:
                    found[key] = png
        assert all(key in found for key in wanted)

    def timed(fn):
        def run(_round: int) -> float:
            started = time.perf_counter()
            fn()
            return time.perf_counter() - started

        return run

    times = interleave({"index": timed(with_index), "scan": timed(reading_every_png)}, args.rounds)
    report = {
        "cells": args.cells,
        "days": args.days,
        "index_s": figure(times["index"]).to_dict(),
        "scan_s": figure(times["scan"]).to_dict(),
        "scan_over_index": ratio(times["scan"], times["index"]).to_dict(),
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
