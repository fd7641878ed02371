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


def test_gpu_check_script_parses():
    subprocess.run(["bash", "-n", str(ROOT / "bench" / "gpu_check.sh")], check=True)
