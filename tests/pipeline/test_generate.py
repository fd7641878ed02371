"""The generation service on the tiny SD3 pipeline: reproducibility, progress, stop, and the CLI."""

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from sd35ui.core import metadata
from sd35ui.core.generate import GenerationStopped, generate
from sd35ui.core.settings import GenerationSettings

BASE = GenerationSettings(prompt="a red circle on a blue background", steps=4, width=64, height=64, seed=11)


def pixels(image):
    return np.asarray(image, dtype=np.int16)


def test_same_seed_same_pixels_and_different_seeds_differ(tiny_pipe):
    a = generate(tiny_pipe, BASE)
    b = generate(tiny_pipe, BASE)
    c = generate(tiny_pipe, BASE.replace(seed=12))
    assert np.array_equal(pixels(a.image), pixels(b.image))
    assert np.abs(pixels(a.image) - pixels(c.image)).mean() > 1
    assert a.seed == 11 and a.settings == BASE


def test_matches_the_plain_diffusers_call(tiny_pipe):
    ours = generate(tiny_pipe, BASE)
    with torch.inference_mode():
        plain = tiny_pipe(
            BASE.prompt,
            num_inference_steps=4,
            guidance_scale=4.5,
            width=64,
            height=64,
            generator=torch.Generator("cpu").manual_seed(11),
        ).images[0]
    assert np.array_equal(pixels(ours.image), pixels(plain))


def test_random_seed_is_drawn_and_reported(tiny_pipe):
    result = generate(tiny_pipe, BASE.replace(seed=None))
    assert result.seed is not None
    again = generate(tiny_pipe, BASE.replace(seed=result.seed))
    assert np.array_equal(pixels(result.image), pixels(again.image))


def test_guidance_one_runs_without_cfg(tiny_pipe):
    result = generate(tiny_pipe, BASE.replace(guidance=1.0, negative_prompt="ignored"))
    assert result.image.size == (64, 64)


def test_progress_reports_every_step(tiny_pipe):
    seen = []
    generate(tiny_pipe, BASE.replace(steps=7), on_step=lambda i, n: seen.append((i, n)))
    assert seen == [(i, 7) for i in range(1, 8)]


def test_stop_ends_within_one_step_and_returns_no_image(tiny_pipe):
    stop = threading.Event()
    seen = []

    def on_step(i, n):
        seen.append(i)
        if i == 3:
            stop.set()

    with pytest.raises(GenerationStopped):
        generate(tiny_pipe, BASE.replace(steps=30), on_step=on_step, stop=stop)
    assert seen == [1, 2, 3]
    # the pipeline is usable again right after
    assert generate(tiny_pipe, BASE).image.size == (64, 64)


def test_timings_are_reported(tiny_pipe):
    result = generate(tiny_pipe, BASE)
    assert set(result.timings) == {"encode", "denoise", "decode", "total"}
    assert result.timings["total"] >= result.timings["denoise"] > 0


def test_cli_writes_the_same_image_as_the_service(tiny_pipe, tmp_path, cli):
    out = tmp_path / "cli.png"
    proc = cli(
        "generate",
        "--prompt",
        BASE.prompt,
        *"--steps 4 --seed 11 --width 64 --height 64 --out".split(),
        str(out),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert str(out) in proc.stdout and "seed: 11" in proc.stdout
    with Image.open(out) as image:
        assert metadata.read_png_metadata(image)["settings"] == BASE
        assert np.array_equal(pixels(image.convert("RGB")), pixels(generate(tiny_pipe, BASE).image))


def test_cli_bad_input_is_a_clear_error(tmp_path, cli):
    proc = cli("generate", *"--prompt x --width 100 --out".split(), str(tmp_path / "x.png"), timeout=120)
    assert proc.returncode == 2
    assert "multiple of 16" in proc.stderr and "Traceback" not in proc.stderr
