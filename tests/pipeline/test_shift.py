"""Shift, the first setting added through the parameter table (issue 11's first part), on the real tiny pipeline:
its default changes nothing, other values change the image without leaking to the next job, and it works as a sheet
axis, in saved PNGs and through the CLI and library."""

from __future__ import annotations

import numpy as np
import pytest

import sd35ui
from sd35ui.core import generate, history, metadata, sheet, storage
from sd35ui.core.pipeline import get_pipeline, model_spec
from sd35ui.core.settings import GenerationSettings

TINY = model_spec("tiny-random")
BASE = GenerationSettings(prompt="a red fox", width=64, height=64, steps=4, guidance=4.5, seed=11)


@pytest.fixture(scope="module")
def pipe(tiny_options):
    return get_pipeline(tiny_options)


def pixels(image) -> np.ndarray:
    return np.asarray(image, dtype=np.int16)


def test_the_default_shift_is_the_models_own_and_swaps_nothing(pipe):
    loaded = pipe.scheduler
    assert loaded.config["shift"] == BASE.shift == 3.0
    with generate.scheduled(pipe, BASE) as scheduler:
        assert scheduler is loaded


def test_another_shift_changes_the_image_and_does_not_leak_to_the_next_job(pipe):
    loaded = pipe.scheduler
    before = generate.generate(pipe, BASE)
    shifted = generate.generate(pipe, BASE.replace(shift=1.0))
    assert pipe.scheduler is loaded and loaded.config["shift"] == 3.0
    assert np.abs(pixels(shifted.image) - pixels(before.image)).mean() > 1
    again = generate.generate(pipe, BASE)
    assert np.array_equal(pixels(again.image), pixels(before.image))


def test_a_shift_axis_gives_the_single_images(pipe):
    spec = sheet.make_spec(BASE, "Shift", "1, 3, 6", None, None, model=TINY)
    result = sheet.run_sheet(pipe, spec)
    assert [d.settings.shift for d in sorted(result.cells, key=lambda d: d.cell.index)] == [1.0, 3.0, 6.0]
    for done in result.cells:
        single = generate.generate(pipe, done.settings)
        assert np.array_equal(pixels(done.image), pixels(single.image)), done.cell


def test_a_png_made_with_a_shift_loads_back_and_makes_the_same_pixels(pipe, tmp_path):
    made = generate.generate(pipe, BASE.replace(shift=1.5))
    path = storage.save_png(made.image, metadata.result_png_info(made), tmp_path / "shift.png")
    loaded = history.load_settings(path, TINY)
    assert loaded.values["shift"] == 1.5 and loaded.notes == []
    settings = GenerationSettings.validated(TINY, **{k: v for k, v in loaded.values.items() if k != "randomize_seed"})
    assert np.array_equal(pixels(generate.generate(pipe, settings).image), pixels(made.image))
    assert "Shift: 1.5" in metadata.format_parameters(made.settings, made.model)


def test_the_library_and_cli_take_shift(pipe, cli, tmp_path):
    result = sd35ui.generate(pipe, prompt="a red fox", steps=4, width=64, height=64, seed=11, shift=1.0)
    assert result.settings.shift == 1.0
    out = tmp_path / "cli.png"
    done = cli(
        "generate",
        "--prompt",
        "a red fox",
        "--steps",
        "4",
        "--width",
        "64",
        "--height",
        "64",
        "--seed",
        "11",
        "--shift",
        "1",
        "--out",
        str(out),
    )
    assert done.returncode == 0, done.stderr
    assert metadata.read_png_metadata(str(out))["settings"].shift == 1.0
