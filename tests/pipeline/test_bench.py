"""The performance tooling on real models: the reduced random model (its FLOPs against torch's counter), the speed
options on the tiny model, and the benchmark's quick mode end to end (its JSON, not its speed). The counts that need
no model are in tests/unit/test_bench_unit.py."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bench import flops
from sd35ui.models import fullsize

ROOT = Path(__file__).resolve().parents[2]


# --- the reduced random model ----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def mini_pipe():
    return fullsize.build_pipeline("mini", device="cpu")


def test_flops_match_torch_flop_counter(mini_pipe):
    """The analytic count equals torch's FlopCounterMode on a real forward. CPU SDPA kernels are not counted by
    the flop counter in some torch builds, so it may equal the count without attention."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    transformer = mini_pipe.transformer
    cfg = transformer.config
    size, text = 64, 40
    inputs = dict(
        hidden_states=torch.randn(2, 16, size // 8, size // 8),
        encoder_hidden_states=torch.randn(2, text, cfg.joint_attention_dim),
        pooled_projections=torch.randn(2, cfg.pooled_projection_dim),
        timestep=torch.tensor([500.0, 500.0]),
        return_dict=False,
    )
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        transformer(**inputs)
    counted = counter.get_total_flops()
    total = flops.transformer_flops(cfg, size, size, text, batch=2)
    attention = flops.attention_flops(cfg, size, size, text, batch=2)
    assert counted in (total, total - attention)


def test_mini_model_makes_an_image(mini_pipe):
    from sd35ui.core import generate
    from sd35ui.core.settings import GenerationSettings

    shape = mini_pipe.sd35ui_shape
    assert mini_pipe.name_or_path == "fullsize-random-mini"
    assert len(mini_pipe.transformer.transformer_blocks) == shape.layers == 3
    assert mini_pipe.transformer.transformer_blocks[0].attn2 is not None  # dual attention in block 0
    assert mini_pipe.transformer.transformer_blocks[-1].context_pre_only
    settings = GenerationSettings(prompt="a red fox", width=64, height=64, steps=2, seed=3)
    result = generate.generate(mini_pipe, settings)
    assert result.image.size == (64, 64)
    pixels = np.asarray(result.image)
    assert pixels.std() > 0  # random weights: noise, but not a flat (NaN-cast) image


# --- speed options on the tiny model ---------------------------------------------------------------------------


def fresh_tiny():
    from sd35ui.core.pipeline import LoadOptions, load_pipeline

    return load_pipeline(LoadOptions(model="tiny-random"))  # not the cached one: speed options change it


def tiny_image(pipe) -> np.ndarray:
    from sd35ui.core import generate
    from sd35ui.core.settings import GenerationSettings

    settings = GenerationSettings(prompt="a red circle", width=64, height=64, steps=3, seed=7)
    generate.prompt_cache.clear()
    return np.asarray(generate.generate(pipe, settings).image, dtype=np.int16)


@pytest.fixture(scope="module")
def reference_image():
    return tiny_image(fresh_tiny())


@pytest.mark.parametrize("options", [dict(vae_channels_last=True), dict(attention="math")])
def test_speed_options_keep_the_image(options, reference_image):
    from sd35ui.core import speed

    pipe = fresh_tiny()
    applied = speed.apply_speed_options(pipe, **options)
    assert pipe.sd35ui_speed == applied
    assert np.abs(tiny_image(pipe) - reference_image).max() <= 2


@pytest.mark.slow
def test_regional_compile_traces_every_block_kind(reference_image):
    """Regional compile with fullgraph=True must trace each block kind (dual attention, context pre-only) without a
    graph break. The aot_eager backend checks the tracing without inductor's code generation (minutes on a busy
    2-core CPU); SD35UI_TEST_INDUCTOR=1 runs the real compiler in the next test."""
    import torch

    from sd35ui.core import speed

    pipe = fresh_tiny()
    speed.compile_transformer(pipe.transformer, "regional", backend="aot_eager")
    try:
        assert np.abs(tiny_image(pipe) - reference_image).max() <= 2
    finally:
        torch._dynamo.reset()


@pytest.mark.slow
@pytest.mark.skipif(
    not os.environ.get("SD35UI_TEST_INDUCTOR"),
    reason="inductor: about 80 s cold on 2 busy cores; set SD35UI_TEST_INDUCTOR=1",
)
@pytest.mark.parametrize("mode", ["regional", "full"])
def test_inductor_compile_keeps_the_image(mode, reference_image):
    import torch

    from sd35ui.core import speed

    pipe = fresh_tiny()
    speed.apply_speed_options(pipe, compile=mode)
    try:
        assert np.abs(tiny_image(pipe) - reference_image).max() <= 2
    finally:
        torch._dynamo.reset()


def test_speed_options_refuse_what_cannot_work(monkeypatch):
    from sd35ui.core import speed

    pipe = fresh_tiny()
    with pytest.raises(ValueError, match="compile must be one of"):
        speed.apply_speed_options(pipe, compile="fast")
    with pytest.raises(ValueError, match="CUDA GPU"):
        speed.apply_speed_options(pipe, offload_text_encoders=True)
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        speed.apply_speed_options(pipe, attention="cudnn")
    monkeypatch.setattr(speed, "on_zerogpu", lambda: True)
    with pytest.raises(ValueError, match="ZeroGPU"):
        speed.apply_speed_options(pipe, compile="regional")
    monkeypatch.undo()
    speed.apply_speed_options(pipe)
    with pytest.raises(ValueError, match="already applied"):
        speed.apply_speed_options(pipe, vae_channels_last=True)
    assert speed.default_compile() == "none"


@pytest.mark.gpu
def test_offloaded_text_encoders_give_the_same_embeddings():
    import torch

    from sd35ui.core import generate, speed
    from sd35ui.core.pipeline import LoadOptions, load_pipeline

    pipe = load_pipeline(LoadOptions(model="tiny-random", device="cuda"))
    before = generate.encode(pipe, "a red fox", "blurry", True)
    speed.apply_speed_options(pipe, offload_text_encoders=True)
    assert pipe.text_encoder_3.device.type in ("cpu", "meta")
    after = generate.encode(pipe, "a red fox", "blurry", True)
    assert after.prompt.device.type == "cuda"
    torch.testing.assert_close(after.prompt, before.prompt)
    torch.testing.assert_close(after.pooled, before.pooled)


# --- the benchmark -----------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_quick_bench_writes_sane_json(tmp_path):
    out = tmp_path / "bench.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "bench.py"), "--quick", "--json", str(out)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "x floor" in proc.stdout  # the table
    data = json.loads(out.read_text())
    meta = data["meta"]
    assert meta["device"] == "cpu" and meta["quick"] is True and meta["peak_tflops_measured"] > 0
    assert meta["torch_threads"] == 1  # one thread on a CPU unless --threads
    assert data["errors"] == []
    planned = [(m["model"], m["mode"]) for m in meta["planned_modes"]]
    assert [(m["mode"], m["status"]) for m in data["modes"]] == [(mode, "ok") for _, mode in planned]
    rows = {(r["model"], r["mode"]): r for r in data["results"]}
    assert set(rows) == {("tiny-random", "eager"), ("fullsize-random-mini", "eager")}
    for row in rows.values():
        for key in ("load_s", "s_per_image", "s_per_image_cached", "it_per_s", "peak_rss_gib", "floor_s", "x_floor"):
            assert math.isfinite(row[key]) and row[key] > 0, key
        assert row["s_per_image_cached"] <= row["s_per_image"]
        assert row["it_per_s"] == pytest.approx(row["steps"] / row["denoise_s"], rel=1e-3)
        assert sum(row["share"].values()) == pytest.approx(1.0, abs=1e-3)
        assert row["floor_fraction"] == pytest.approx(1 / row["x_floor"], rel=1e-3)
        assert row["peak_alloc_gib"] is None  # no CUDA here
        assert row["finite"] is True
        assert_figures_match_their_images(row)
    assert rows[("fullsize-random-mini", "eager")]["text_tokens"] == 333
    extras = data["extras"]
    for model in ("tiny-random", "fullsize-random-mini"):
        profile = extras[model]["profile"]
        assert profile["flops"] > profile["attention_flops"] > 0
        assert sum(profile["share_of_busy"].values()) == pytest.approx(1.0, abs=1e-3)
        layout = extras[model]["vae_layout"]
        assert layout["max_pixel_difference"] <= 2 and layout["figures"]["speedup"]["n"] == 3
    sheet = extras["tiny-random"]["sheet"]
    assert sheet["cells"] == 4 and sheet["rounds"] == 3 and sheet["sheet_identical_to_singles"] is True
    assert set(sheet["figures"]) == {  # two variants timed: the cells one by one and the sheet
        *("singles_s", "sheet_s", "singles_cpu_s", "sheet_cpu_s"),
        *("speedup_sheet_vs_singles", "cpu_speedup_sheet_vs_singles"),
    }
    assert sheet["figures"]["speedup_sheet_vs_singles"]["n"] == 3
    assert "sheet" not in extras["fullsize-random-mini"]  # on a CPU only when --modes asks for it


def assert_figures_match_their_images(row):
    """Every figure is the median of the timed images (3 by default) with spread (max - min) / median; x floor is
    each image against the matmul rate measured right after it."""
    images = row["per_image"]
    assert len(images) == 3
    cached = [r["denoise"] + r["decode"] for r in images]
    figures = row["figures"]
    assert figures["s_per_image_cached"]["values"] == pytest.approx(cached, rel=1e-3)
    assert row["s_per_image_cached"] == pytest.approx(sorted(cached)[1], rel=1e-3)
    x_floor = sorted(c * r["tflops"] * 1e12 / row["flops_per_image"] for c, r in zip(cached, images))
    assert row["x_floor"] == pytest.approx(x_floor[1], rel=1e-3)
    assert figures["x_floor"]["spread"] == pytest.approx((x_floor[2] - x_floor[0]) / x_floor[1], rel=1e-2, abs=1e-3)
    for name, figure in figures.items():
        assert figure["unstable"] == (figure["spread"] > 0.10), name
    assert row["unstable"] == [name for name, figure in figures.items() if figure["unstable"]]
