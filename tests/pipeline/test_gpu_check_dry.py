"""The GPU check end to end on a CPU: `bash bench/gpu_check.sh --dry` runs the same three steps as on a GPU (separate
processes on one inductor cache, a time limit per mode) on the mini model, and bench/report.py merges them. Checks
what the GPU run depends on: every mode in the planned order with a status, CUDA-only modes skipped with a reason,
the cold then second-process compile, the sheet's interleaved rounds, and the markdown table. Not its speed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLAN = [  # bench/gpu_check.sh's steps, most decisive first
    ("step1", "nf4_model_offload"),
    ("step1", "eager"),
    ("step1", "compile_regional"),
    ("step2", "compile_regional_warm"),
    ("step2", "sheet"),
    ("step3", "offload_text_encoders"),
    ("step3", "nf4_offload_text_encoders"),
    ("step3", "nf4"),
    ("step3", "model_offload"),
]
CUDA_ONLY = {"nf4_model_offload", "offload_text_encoders", "nf4_offload_text_encoders", "nf4", "model_offload"}


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu-check")
    env = {
        **os.environ,
        "OUT": str(out),
        "PYTHON": sys.executable,
        "BUNDLE": str(out / "no-bundle"),  # this environment has the packages; a local .whl/ is not installed
        "HF_HUB_OFFLINE": "1",
    }
    proc = subprocess.run(
        ["bash", str(ROOT / "bench" / "gpu_check.sh"), "--dry"],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    return out, proc.stdout


@pytest.mark.slow
def test_every_mode_runs_or_is_skipped_in_plan_order(dry_run):
    out, _ = dry_run
    merged = json.loads((out / "gpu-check.json").read_text())
    assert [(s["name"], s["exit"], s["ran"]) for s in merged["steps"]] == [
        ("step1", "0", True),
        ("step2", "0", True),
        ("step3", "0", True),
    ]
    assert [(m["step"], m["mode"]) for m in merged["modes"]] == PLAN
    for m in merged["modes"]:
        if m["mode"] in CUDA_ONLY:
            assert m["status"] == "skipped" and ("GPU" in m["why"] or "accelerator" in m["why"]), m
        else:
            assert m["status"] == "ok", m
            assert 0 < m["seconds"] <= m["limit_s"], m
    assert merged["errors"] == []
    assert merged["versions"]["diffusers"]["installed"] == merged["versions"]["diffusers"]["pin"]


@pytest.mark.slow
def test_compile_is_cold_in_the_first_process_and_rows_carry_spreads(dry_run):
    out, _ = dry_run
    merged = json.loads((out / "gpu-check.json").read_text())
    rows = {r["mode"]: r for r in merged["results"]}
    assert list(rows) == ["eager", "compile_regional", "compile_regional_warm"]
    assert rows["compile_regional"]["compile_cache"] == "cold"  # a fresh, empty inductor folder
    assert rows["compile_regional"]["compile_backend"] == "aot_eager"
    assert rows["compile_regional_warm"]["step"] == "step2"  # a second process, on the first one's cache
    for row in rows.values():
        figures = row["figures"]
        assert figures["s_per_image"]["n"] == 2 and len(row["per_image"]) == 2
        low, high, median = (figures["x_floor"][k] for k in ("min", "max", "median"))
        assert figures["x_floor"]["spread"] == pytest.approx((high - low) / median, rel=1e-2, abs=1e-3)
        assert row["unstable"] == [name for name, f in figures.items() if f["unstable"]]
    paired = rows["compile_regional"]["figures"]["speedup_paired"]
    assert paired["n"] == 2
    assert rows["compile_regional"]["max_pixel_difference_vs_reference"] <= 2  # compiled = uncompiled images
    sheet = merged["extras"]["fullsize-random-mini"]["sheet"]
    assert sheet["step"] == "step2" and sheet["cells"] == 4 and sheet["rounds"] == 2
    assert sheet["sheet_identical_to_singles"] is True
    singles, made = sheet["figures"]["singles_s"]["values"], sheet["figures"]["sheet_s"]["values"]
    speedups = sheet["figures"]["speedup_sheet_vs_singles"]["values"]
    assert speedups == pytest.approx([a / b for a, b in zip(singles, made)], rel=1e-3)  # per-round ratios


@pytest.mark.slow
def test_report_renders_the_table(dry_run):
    out, stdout = dry_run
    table = (out / "gpu-check.md").read_text()
    assert table in stdout.replace("\r", "")  # the device call's output ends with it
    lines = table.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("| device, date |"))
    rows = lines[header + 2 : header + 5]
    assert [row.split(" | ")[2] for row in rows] == ["eager", "compile_regional", "compile_regional_warm"]
    assert all(row.count(" | ") == lines[header].count(" | ") for row in rows)
    assert "(interleaved)" in rows[1]
    assert "Modes, in order: 1. nf4_model_offload skipped" in table
    assert "4 cells at 64 px" in table
    for name in ("step1.json", "step2.json", "step3.json", "gpu-check.log", "env.txt"):
        assert (out / name).stat().st_size > 0, name
