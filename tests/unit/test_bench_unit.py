"""The performance tooling without a model: exact FLOP and size counts of the full-size architecture (configs and
the meta device only), its shape checks, and the GPU check script's syntax. The models themselves are tested in
tests/pipeline/test_bench.py."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from bench import flops
from sd35ui.models import fullsize

ROOT = Path(__file__).resolve().parents[2]


# --- counts (no model weights) -------------------------------------------------------------------------------


def test_full_size_floor_matches_the_published_estimate():
    config = fullsize.transformer_config()
    per_pass = flops.transformer_flops(config, 1024, 1024, flops.text_tokens(), batch=1)
    assert 11.0e12 < per_pass < 11.5e12  # platform-facts: about 11.2 TFLOP at 1024x1024 (4096 + 333 tokens)
    image = flops.image_flops(config, 1024, 1024, steps=40, guided=True)
    assert image == 80 * per_pass
    assert 0.88e15 < image < 0.92e15  # about 0.9 PFLOP: 1.14 s at 790 TFLOP/s
    unguided = flops.image_flops(config, 1024, 1024, steps=40, guided=False)
    assert unguided * 2 == image
    attention = flops.attention_flops(config, 1024, 1024, flops.text_tokens())
    assert 0.25 < attention / per_pass < 0.4  # attention is about a third of a pass at 1024x1024


def test_full_size_configs_are_sd35_medium():
    t = fullsize.transformer_config()
    assert (t["num_layers"], t["num_attention_heads"] * t["attention_head_dim"], t["patch_size"]) == (24, 1536, 2)
    assert t["dual_attention_layers"] == tuple(range(13)) and t["qk_norm"] == "rms_norm"
    assert (t["in_channels"], t["joint_attention_dim"], t["pooled_projection_dim"]) == (16, 4096, 2048)
    assert fullsize.clip_l_config()["hidden_size"] == fullsize.clip_l_config()["projection_dim"] == 768
    g = fullsize.clip_g_config()
    assert (g["hidden_size"], g["projection_dim"], g["num_hidden_layers"]) == (1280, 1280, 32)
    t5 = fullsize.t5_config()
    assert (t5["d_model"], t5["num_layers"], t5["d_ff"], t5["num_heads"]) == (4096, 24, 10240, 64)
    assert flops.text_tokens() == 77 + 256


@pytest.mark.slow
def test_full_size_parameter_counts():
    counts = flops.parameter_counts()  # built on the meta device: no memory
    transformer = counts["transformer"] + counts["transformer_buffers"]  # the position table is saved too
    assert 2.40e9 < transformer < 2.55e9  # platform-facts: about 2.47B (4.9 GB in bf16)
    assert 4.6e9 < counts["text_encoder_3"] < 4.9e9  # T5-XXL encoder: about 4.7B
    assert 0.75e9 < counts["text_encoder"] + counts["text_encoder_2"] < 0.9e9  # CLIP-L + CLIP-G: 1.6 GB in bf16
    assert 0.07e9 < counts["vae"] < 0.1e9


@pytest.mark.parametrize("bad", [dict(width_divisor=3), dict(layers=0), dict(dual_layers=5, layers=3)])
def test_shape_checks(bad):
    with pytest.raises(ValueError):
        fullsize.FullSizeShape(**bad)


def test_unknown_shape_name():
    with pytest.raises(ValueError, match="mini"):
        fullsize.shape_named("huge")


# --- the benchmark -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("script", ["gpu_check.sh", "build_gpu_bundle.sh"])
def test_gpu_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / "bench" / script)], check=True)


def test_gpu_check_downloads_nothing():
    """The GPU machine reaches no package registry: the check installs from the carried bundle only."""
    text = (ROOT / "bench" / "gpu_check.sh").read_text()
    commands = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    installs = [line for line in commands if "pip install" in line or "pip download" in line]
    assert installs and all("--no-index" in line for line in installs), installs
    assert not any(word in line for line in commands for word in ("curl ", "wget ", "pip download"))


# --- interleaved rounds, spreads and time limits (bench/rounds.py, bench/bench.py, bench/report.py) ----------------


def test_interleave_rotates_the_order_each_round():
    from bench import rounds

    calls = []
    variants = {name: (lambda r, name=name: calls.append((r, name)) or f"{name}{r}") for name in "ABC"}
    results = rounds.interleave(variants, 4)
    assert [name for _, name in calls] == list("ABCBCACABABC")
    assert results == {"A": ["A0", "A1", "A2", "A3"], "B": ["B0", "B1", "B2", "B3"], "C": ["C0", "C1", "C2", "C3"]}
    with pytest.raises(ValueError):
        rounds.interleave(variants, 0)


def test_figure_median_spread_and_unstable():
    from bench import rounds

    steady = rounds.figure([1.1, 1.0, 1.05])
    assert steady.median == 1.05
    assert steady.spread == pytest.approx(0.1 / 1.05)
    assert not steady.unstable
    assert steady.to_dict()["values"] == [1.1, 1.0, 1.05]
    assert rounds.figure_text(steady.to_dict(), ".2f", " s") == "1.05 s ±10%"
    noisy = rounds.figure([1.0, 1.3, 1.1])
    assert noisy.unstable and noisy.text(".2f") == "1.10 ±27% unstable"
    single = rounds.figure([2.0])
    assert single.spread is None and single.unstable and single.text() == "2 (1 run)"
    with pytest.raises(ValueError):
        rounds.figure([])


def test_a_ratio_pairs_the_values_of_each_round():
    from bench import rounds

    # round 2 was slow for both variants: each round's own ratio is 2
    assert rounds.ratio([2.0, 8.0], [1.0, 4.0]).values == (2.0, 2.0)
    # rounds that disagree give a wide spread, where a ratio of medians (5 / 2.5) would hide it
    disagree = rounds.ratio([2.0, 8.0], [4.0, 1.0])
    assert disagree.values == (0.5, 8.0) and disagree.unstable
    with pytest.raises(ValueError, match="pair rounds"):
        rounds.ratio([1.0], [1.0, 2.0])


def test_mode_limits_are_parsed_and_checked():
    from bench import bench

    assert bench.parse_mode_limits("eager=60,sheet=90.5") == {"eager": 60.0, "sheet": 90.5}
    assert bench.parse_mode_limits(None) == {}
    for bad in ("eager", "warp=3", "eager=soon"):
        with pytest.raises(SystemExit):
            bench.parse_mode_limits(bad)


def test_a_mode_is_stopped_at_its_time_limit_and_the_budget_cuts_it():
    import time

    from bench import bench

    start = time.perf_counter()
    with pytest.raises(bench.ModeTimeout, match="limit of 0.05 s"):
        with bench.time_limit(0.05):
            while time.perf_counter() - start < 5:
                pass
    assert time.perf_counter() - start < 1
    with bench.time_limit(None):  # no limit: nothing armed
        time.sleep(0.01)
    limits = bench.RunLimits({"eager": 60.0}, deadline=time.perf_counter() + 10)
    assert 9 < limits.for_mode("eager") <= 10  # the budget's end comes first
    assert 9 < limits.for_mode("sheet") <= 10
    assert bench.RunLimits({"eager": 60.0}, deadline=None).for_mode("sheet") is None


def test_report_reads_pins_and_names_the_modes_a_killed_step_did_not_finish(tmp_path):
    from bench import report

    requirements = tmp_path / "requirements.txt"
    requirements.write_text("# pins\ntorch==2.13.0\ngradio[mcp]==6.31.0  # extra\nhuggingface-hub==2.4.0\nnumpy>=2\n")
    assert report.pins(requirements) == {"torch": "2.13.0", "gradio": "6.31.0", "huggingface_hub": "2.4.0"}
    planned = [{"model": "fullsize", "mode": m} for m in ("nf4_model_offload", "eager", "compile_regional")]
    data = {
        "meta": {"planned_modes": planned},
        "modes": [{"model": "fullsize-random", "mode": "nf4_model_offload", "status": "ok", "seconds": 50}],
    }
    step = {"name": "step1", "path": "step1.json", "exit": "124", "data": data}
    statuses = [(m["mode"], m["status"]) for m in report.step_modes(step)]
    assert statuses == [("nf4_model_offload", "ok"), ("eager", "killed"), ("compile_regional", "not started")]
    assert "time limit" in report.step_modes(step)[1]["why"]
    missing = report.step_modes({"name": "step3", "path": "step3.json", "exit": "skipped", "data": None})
    assert missing[0]["status"] == "missing" and "no time left" in missing[0]["why"]


def test_report_says_which_figures_a_second_run_reproduced():
    from bench import report, rounds

    def run(speedup, seconds):
        return {
            "figures": {"speedup": rounds.figure(speedup).to_dict()},
            "results": [{"model": "m", "mode": "eager", "figures": {"s": rounds.figure(seconds).to_dict()}}],
        }

    first, second = run([1.05, 1.06, 1.08], [10.0, 10.2, 10.4]), run([1.02, 1.04, 1.1], [11.0, 11.1, 11.2])
    paths = report.figures_by_path(first)
    assert set(paths) == {"figures/speedup", "results/m/eager/figures/s"}
    a, b = report.figures_by_path(first), report.figures_by_path(second)
    assert report.reproduced(a["figures/speedup"], b["figures/speedup"]) == "yes"  # 1.06 vs 1.04, spreads 3%, 8%
    assert report.reproduced(a["results/m/eager/figures/s"], b["results/m/eager/figures/s"]) == "no"  # 8% apart
    noisy = rounds.figure([1.0, 1.3, 1.1]).to_dict()
    assert report.reproduced(a["figures/speedup"], noisy) == "yes, unstable"
    assert report.reproduced(a["figures/speedup"], rounds.figure([1.06]).to_dict()) == "no"  # one run: no spread
    table = report.reproduction(first, second)
    assert "| figures/speedup | 1.06 ±3% | 1.04 ±8% | yes |" in table


def test_report_writes_the_sheet_line_from_the_sheet_modes_figures():
    from bench import report, rounds

    figures = {
        "singles_s": rounds.figure([2.0, 2.1, 2.2]).to_dict(),
        "sheet_s": rounds.figure([1.0, 1.05, 1.1]).to_dict(),
        "speedup_sheet_vs_singles": rounds.figure([2.0, 2.0, 2.0]).to_dict(),
    }
    sheet = {"cells": 4, "size": 64, "x": "3, 4.5", "y": "10, 20", "rounds": 3, "figures": figures}
    line = report.sheet_line("tiny-random", {**sheet, "sheet_identical_to_singles": True})
    assert line == (
        "- tiny-random sheet, 4 cells at 64 px (Guidance 3, 4.5 x Steps 10, 20), 3 interleaved rounds: one by one "
        "2.1 s ±10%, sheet 1.05 s ±10% (2.00x ±0%); sheet cells identical to single images: True"
    )
