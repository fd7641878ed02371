"""bench.py's JSON as the markdown table of README.md and PERF.md; the steps of bench/gpu_check.sh merged into one
JSON, with every planned mode's status in the order planned.

    python bench/report.py outputs/bench-quick.json                      # the table of one bench.py run
    python bench/report.py --reproduce run1.json run2.json               # which figures a second run reproduced
    python bench/report.py step1.json step2.json step3.json --step-status step1=0,step2=124,step3=skipped \\
        --json gpu-check.json --markdown gpu-check.md                      # what bench/gpu_check.sh runs

Figures are printed as bench.py measured them: the median with its spread, "unstable" when the spread is over 10%
(`bench/rounds.py`). A mode with no status in its step's JSON is "killed" (the step's process ended while it ran:
exit status 124 or 137 is the step's time limit) and the modes planned after it "not started". A figure is
reproduced when two runs' medians differ by no more than the larger of their spreads.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.rounds import figure_text  # noqa: E402  (after the path is set)

ROOT = Path(__file__).resolve().parents[1]
VERSIONS = ("torch", "diffusers", "transformers", "accelerate", "safetensors", "huggingface_hub", "bitsandbytes")
TABLE_HEADER = (
    "| device, date | model | mode | size | steps | load s | s/image | s/image, prompt cached | it/s "
    "| encode / denoise / decode | peak GPU alloc / reserved | peak RSS | x floor | vs eager |"
)


def pins(requirements: Path = ROOT / "requirements.txt") -> dict[str, str]:
    """name -> pinned version, from `name==version` lines (names as importlib.metadata spells them)."""
    found = {}
    for line in requirements.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+)(\[[^\]]*\])?==([^\s#;]+)", line.strip())
        if match:
            found[match.group(1).lower().replace("-", "_")] = match.group(3)
    return found


def parse_step_status(text: str | None) -> dict[str, str]:
    """'step1=0,step2=124' -> {'step1': '0', 'step2': '124'}."""
    return dict(item.split("=", 1) for item in (text or "").split(",") if "=" in item)


def load_step(path: Path, exit_status: str | None) -> dict[str, Any]:
    data = json.loads(path.read_text()) if path.exists() else None
    return {"name": path.stem, "path": str(path), "exit": exit_status, "data": data}


def step_modes(step: dict[str, Any]) -> list[dict[str, Any]]:
    """The step's planned modes, in order, each with its recorded status (or killed / not started / missing)."""
    name, data, exit_status = step["name"], step["data"], step["exit"]
    if data is None:
        why = "skipped: no time left" if exit_status == "skipped" else f"no JSON (exit status {exit_status})"
        return [{"step": name, "model": None, "mode": None, "status": "missing", "why": why}]
    recorded = data.get("modes", [])
    out = []
    for i, planned in enumerate(data["meta"].get("planned_modes", [])):
        if i < len(recorded):
            entry = dict(recorded[i])
            if entry["mode"] != planned["mode"]:
                raise ValueError(f"{step['path']}: mode {i} is {entry['mode']}, planned {planned['mode']}")
        else:
            limit = " (the step's time limit)" if exit_status in ("124", "137") else ""
            status = "killed" if i == len(recorded) else "not started"
            entry = {**planned, "status": status, "why": f"the step's process ended, exit status {exit_status}{limit}"}
        out.append({"step": name, **entry})
    return out


def merge(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """One JSON of several bench.py runs: statuses, rows, extras and errors in step order, the package versions of
    the first run against our pins."""
    runs = [s for s in steps if s["data"] is not None]
    merged: dict[str, Any] = {
        "steps": [
            {"name": s["name"], "path": s["path"], "exit": s["exit"], "ran": s["data"] is not None} for s in steps
        ],
        "meta": [s["data"]["meta"] for s in runs],
        "modes": [m for s in steps for m in step_modes(s)],
        "results": [{"step": s["name"], **row} for s in runs for row in s["data"]["results"]],
        "extras": {},
        "errors": [{"step": s["name"], **e} for s in runs for e in s["data"]["errors"]],
    }
    for s in runs:
        for model, extras in s["data"]["extras"].items():
            for name, value in extras.items():
                merged["extras"].setdefault(model, {})[name] = {"step": s["name"], **value}
    meta = runs[0]["data"]["meta"] if runs else {}
    pinned = pins()
    merged["versions"] = {name: {"installed": meta.get(name), "pin": pinned.get(name)} for name in VERSIONS}
    return merged


def device_label(meta: dict[str, Any]) -> str:
    date = str(meta.get("date", ""))[:10]
    if meta.get("device") == "cuda":
        return f"{meta.get('device_name')}, {date}"
    threads = meta.get("torch_threads")
    return f"CPU ({meta.get('device_name')}), {threads} thread{'' if threads == 1 else 's'}, {date}"


def gib(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def table_row(row: dict[str, Any], meta: dict[str, Any]) -> str:
    figures = row.get("figures", {})
    share = row.get("share", {})
    shares = " / ".join(f"{100 * share[k]:.0f}" for k in ("encode", "denoise", "decode")) + " %" if share else "-"
    if "speedup_paired" in figures:
        versus = figure_text(figures["speedup_paired"], ".2f", "x") + " (interleaved)"
    elif row.get("speedup_vs_eager") is not None:
        versus = f"{row['speedup_vs_eager']:.2f}x (separate runs)"
    else:
        versus = "-"
    gpu = f"{gib(row.get('peak_alloc_gib'))} / {gib(row.get('peak_reserved_gib'))} GiB"
    cells = [
        device_label(meta),
        row["model"],
        row["mode"],
        str(row["size"]),
        str(row["steps"]),
        f"{row['load_s']:.1f} (1 run)" if row.get("load_s") is not None else "-",
        figure_text(figures.get("s_per_image"), ".3g"),
        figure_text(figures.get("s_per_image_cached"), ".3g"),
        f"{row['it_per_s']:.3g}",
        shares,
        gpu if row.get("peak_alloc_gib") is not None else "-",
        f"{row['peak_rss_gib']:.1f} GiB",
        figure_text(figures.get("x_floor"), ".3g"),
        versus,
    ]
    return "| " + " | ".join(cells) + " |"


def compile_line(row: dict[str, Any]) -> str:
    payback = row.get("payback_images")
    return (
        f"- {row['model']} {row['mode']}: compile {row['compile_s']:.1f} s ({row.get('compile_cache')}, backend "
        f"{row.get('compile_backend')}), again after a reset in the same process {row['warm_cache_compile_s']:.1f} s; "
        f"pays back after {f'{payback:.0f} images' if payback else 'never (no gain in every round)'}; largest pixel "
        f"difference from the uncompiled images {row.get('max_pixel_difference_vs_reference')}/255"
    )


def sheet_line(model: str, sheet: dict[str, Any]) -> str:
    f = sheet["figures"]
    return (
        f"- {model} sheet, {sheet['cells']} cells at {sheet['size']} px (Guidance {sheet['x']} x Steps {sheet['y']}), "
        f"{sheet['rounds']} interleaved rounds: one by one {figure_text(f['singles_s'], '.3g', ' s')}, "
        f"sheet {figure_text(f['sheet_s'], '.3g', ' s')} ({figure_text(f['speedup_sheet_vs_singles'], '.2f', 'x')}); "
        f"sheet cells identical to single images: {sheet['sheet_identical_to_singles']}"
    )


def markdown(merged: dict[str, Any]) -> str:
    metas = merged["meta"]
    meta = metas[0] if metas else {}
    versions = ", ".join(
        f"{name} {v['installed'] or 'not installed'}"
        + (f" (pin {v['pin']})" if v["pin"] and v["pin"] != v["installed"] else "")
        for name, v in merged["versions"].items()
    )
    lines = [
        f"**{meta.get('device_name', 'no run')}**: {versions}; commands: "
        + "; ".join(f"`{m.get('command')}`" for m in metas),
        "",
        TABLE_HEADER,
        "|" + "---|" * TABLE_HEADER.count(" | ") + "---|",
    ]
    by_step = {s["name"]: m for s, m in zip([s for s in merged["steps"] if s["ran"]], metas)}
    lines += [table_row(row, by_step.get(row.get("step"), meta)) for row in merged["results"]]
    lines.append("")
    lines += [
        f"- {row['model']} {row['mode']}: matmul {row['matmul_tflops']:.3g} TFLOP/s measured after its images; "
        f"x floor at the issue's 790 TFLOP/s {row['x_floor_790']:.3g}"
        for row in merged["results"]
        if row.get("x_floor_790") is not None
    ]
    lines += [compile_line(row) for row in merged["results"] if "compile_s" in row]
    for model, extras in merged["extras"].items():
        if "figures" in extras.get("sheet", {}):
            lines.append(sheet_line(model, extras["sheet"]))
        if "vae_layout" in extras:
            lines.append(
                f"- {model} VAE channels_last: {figure_text(extras['vae_layout']['figures']['speedup'], '.2f', 'x')}"
            )
        if "attention_kernels" in extras:
            kernels = extras["attention_kernels"]
            lines.append(
                f"- {model} attention kernels, one forward (s): {kernels['forward_s']}; best {kernels['best']}"
            )
    lines.append("")
    lines.append(
        "Modes, in order: "
        + "; ".join(
            f"{i}. {m['mode'] or m['step']} {m['status']}"
            + (f" {m['seconds']:.0f} s" if m.get("seconds") is not None else "")
            + (f" (limit {m['limit_s']:.0f} s)" if m.get("limit_s") is not None else "")
            + (f": {m['why']}" if m.get("why") and m["status"] != "ok" else "")
            for i, m in enumerate(merged["modes"], 1)
        )
    )
    lines.append("")
    lines.append("Spread = (max - min) / median of the images or rounds; over 10% is marked unstable.")
    return "\n".join(lines) + "\n"


def figures_by_path(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Every figure (median, min, max, n: `rounds.Figure.to_dict()`) in a JSON of bench.py, report.py or
    sheet_bench.py, by a path that names it the same way in any run of the same command: rows by model and mode."""
    found: dict[str, dict[str, Any]] = {}

    def walk(value: Any, path: str) -> None:
        if isinstance(value, dict):
            if {"median", "min", "max", "n"} <= value.keys():
                found[path] = value
                return
            for key, item in value.items():
                if key != "meta":
                    walk(item, f"{path}/{key}" if path else key)
        elif isinstance(value, list):
            for item in value:
                if isinstance(item, dict) and "model" in item and "mode" in item:
                    walk(item, f"{path}/{item['model']}/{item['mode']}")

    walk(data, "")
    return found


def reproduced(first: dict[str, Any], second: dict[str, Any]) -> str:
    """ "yes" when two runs' medians differ by no more than the larger of their spreads (relative to their mean),
    "yes, unstable" when so but one run's spread is over 10%, else "no" (also when a run has no spread)."""
    spreads = [first["spread"], second["spread"]]
    if None in spreads:
        return "no"
    difference = abs(first["median"] - second["median"]) / ((first["median"] + second["median"]) / 2)
    if difference > max(spreads):
        return "no"
    return "yes, unstable" if first["unstable"] or second["unstable"] else "yes"


def reproduction(first: dict[str, Any], second: dict[str, Any]) -> str:
    """A markdown table of every figure two runs of one command share, and whether the second reproduced it."""
    a, b = figures_by_path(first), figures_by_path(second)
    lines = ["| figure | run 1 | run 2 | reproduced |", "|---|---|---|---|"]
    for path in (p for p in a if p in b):
        verdict = reproduced(a[path], b[path])
        lines.append(f"| {path} | {figure_text(a[path], '.3g')} | {figure_text(b[path], '.3g')} | {verdict} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="bench.py JSON files, in the order they ran")
    parser.add_argument("--step-status", help="exit status of each run by file stem: step1=0,step2=124")
    parser.add_argument("--json", type=Path, help="write the merged JSON here")
    parser.add_argument("--markdown", type=Path, help="write the markdown here (else print it)")
    parser.add_argument(
        "--reproduce",
        action="store_true",
        help="with two JSON files of one command: each figure of both, and whether the second run reproduced it",
    )
    args = parser.parse_args(argv)
    if args.reproduce:
        if len(args.runs) != 2:
            parser.error("--reproduce compares two runs: give two JSON files")
        first, second = (json.loads(path.read_text()) for path in args.runs)
        print(reproduction(first, second), end="")
        return {"first": first, "second": second}
    statuses = parse_step_status(args.step_status)
    merged = merge([load_step(path, statuses.get(path.stem)) for path in args.runs])
    text = markdown(merged)
    if args.json:
        args.json.write_text(json.dumps(merged, indent=1, default=str))
    if args.markdown:
        args.markdown.write_text(text)
    else:
        print(text, end="")
    return merged


if __name__ == "__main__":
    main()
